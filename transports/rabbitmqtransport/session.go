// The session: one connection (dialled, or the one given to New) with its
// publishing channel in confirm mode and its consuming channel, and the
// declarations on them.

package rabbitmqtransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// session is one connection's worth of state. It is replaced as a whole on
// a reconnect.
type session struct {
	conn *amqp.Connection
	pub  *amqp.Channel // confirm mode; Publish and Send write on it
	sub  *amqp.Channel // the consumer's channel
	// loss consumes the loss queue: a channel of its own, so that its
	// delivery tags and acknowledgements never mix with sub's (an ack of
	// sub's with multiple set would ack a loss delivery too).
	loss *amqp.Channel

	// The close notifications the supervisor watches.
	connClosed chan *amqp.Error
	pubClosed  chan *amqp.Error
	subClosed  chan *amqp.Error
	lossClosed chan *amqp.Error
	cancelled  chan string
	blocked    chan amqp.Blocking // nil with a given connection

	// Set by consume, under Transport.mu.
	queue  string
	msgs   <-chan amqp.Delivery
	losses <-chan amqp.Delivery // nil without queue limits
	done   chan struct{}        // closed when the delivery goroutine ended; nil before consume
}

// dial opens a session: a connection (unless the Transport was given one),
// the two channels and the exchange. ctx bounds it all on a connection of
// its own; on a given connection, the channel calls wait for the broker
// (up to the connection's heartbeat timeout).
func (t *Transport) dial(ctx context.Context) (*session, error) {
	s := &session{}
	if t.given != nil {
		if t.given.IsClosed() {
			return nil, ErrConnectionClosed
		}
		s.conn = t.given
	} else {
		conn, err := t.dialConn(ctx)
		if err != nil {
			return nil, err
		}
		s.conn = conn
		s.blocked = conn.NotifyBlocked(make(chan amqp.Blocking, 4))
	}
	s.connClosed = s.conn.NotifyClose(make(chan *amqp.Error, 1))
	// The channel calls take no context: an owned connection is closed
	// when ctx ends, which ends them.
	stop := func() bool { return true }
	if t.given == nil {
		stop = context.AfterFunc(ctx, func() { _ = s.conn.Close() })
	}
	err := t.openChannels(s)
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = s.shutdown(t.given == nil)
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		return nil, err
	}
	return s, nil
}

// dialConn dials the broker, honouring ctx (amqp091-go's dial does not take
// one): the TCP dial stops when ctx ends, and the TLS and AMQP handshakes
// get ctx's deadline, or ConnectTimeout when that comes first.
func (t *Transport) dialConn(ctx context.Context) (*amqp.Connection, error) {
	deadline := time.Now().Add(t.opts.ConnectTimeout)
	ctxDeadline := false
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline, ctxDeadline = d, true
	}
	var stop func() bool
	var raw net.Conn
	props := amqp.NewConnectionProperties()
	props["connection_name"] = t.opts.ConnectionName
	cfg := amqp.Config{
		Properties:      props,
		TLSClientConfig: t.opts.TLSConfig,
		Dial: func(network, addr string) (net.Conn, error) {
			dctx, cancel := context.WithDeadline(ctx, deadline)
			defer cancel()
			c, err := (&net.Dialer{}).DialContext(dctx, network, addr)
			if err != nil {
				return nil, err
			}
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			// A cancelled ctx ends the handshakes too; amqp091-go clears
			// the deadline once the connection is open.
			stop = context.AfterFunc(ctx, func() { _ = c.Close() })
			raw = c
			return c, nil
		},
	}
	if t.opts.TLSConfig != nil {
		cfg.TLSClientConfig = t.opts.TLSConfig.Clone()
	}
	if t.opts.Heartbeat > 0 {
		cfg.Heartbeat = t.opts.Heartbeat
	} else {
		// Below a second amqp091-go takes the broker's proposal.
		cfg.Heartbeat = time.Millisecond
	}
	conn, err := amqp.DialConfig(t.url, cfg)
	if stop != nil && !stop() && err == nil {
		// ctx ended just as the handshake finished.
		_ = conn.Close()
		err = ctx.Err()
	}
	if err != nil {
		if raw != nil {
			_ = raw.Close() // a failed handshake leaves it open
		}
		switch cerr := ctx.Err(); {
		case cerr != nil && !errors.Is(err, cerr):
			err = fmt.Errorf("%w (%v)", cerr, err)
		case cerr == nil && !time.Now().Before(deadline):
			// The connection's deadline, which is ctx's or ConnectTimeout,
			// ended the handshake a moment before ctx itself ended.
			if ctxDeadline {
				err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
			} else {
				err = fmt.Errorf("no AMQP handshake within ConnectTimeout %v (is it a RabbitMQ broker, and is the scheme right: amqps:// for TLS?): %w", t.opts.ConnectTimeout, err)
			}
		}
		return nil, fmt.Errorf("dial %s: %w", redact(t.url), err)
	}
	return conn, nil
}

// openChannels opens the publishing channel (confirm mode), declares the
// exchange on it, and opens the consuming channels (the loss queue's with
// queue limits).
func (t *Transport) openChannels(s *session) error {
	var err error
	if s.pub, err = s.conn.Channel(); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	s.pubClosed = s.pub.NotifyClose(make(chan *amqp.Error, 1))
	if err := s.pub.Confirm(false); err != nil {
		return fmt.Errorf("confirm mode: %w", err)
	}
	// Transient and auto-deleted: the broker removes it when the last
	// queue is unbound from it (the namespace's last instance left) and
	// at a restart; every Transport declares it again when it reconnects.
	if err := s.pub.ExchangeDeclare(t.exchange, amqp.ExchangeFanout, false, true, false, false, nil); err != nil {
		return fmt.Errorf("declare fanout exchange %q: %w", t.exchange, err)
	}
	if s.sub, err = s.conn.Channel(); err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	s.subClosed = s.sub.NotifyClose(make(chan *amqp.Error, 1))
	s.cancelled = s.sub.NotifyCancel(make(chan string, 1))
	if t.opts.QueueMaxLength > 0 || t.opts.QueueMaxBytes > 0 {
		if s.loss, err = s.conn.Channel(); err != nil {
			return fmt.Errorf("open channel: %w", err)
		}
		s.lossClosed = s.loss.NotifyClose(make(chan *amqp.Error, 1))
	}
	return nil
}

// consume declares the instance's queue (and, with queue limits, the loss
// queue its dropped messages go to), binds it to the exchange and starts
// consuming. It returns once the broker confirmed the consumer, so that a
// message published to the exchange afterwards reaches it.
func (t *Transport) consume(s *session) error {
	args := amqp.Table{}
	if n := t.opts.QueueMaxLength; n > 0 {
		args["x-max-length"] = int64(n)
	}
	if n := t.opts.QueueMaxBytes; n > 0 {
		args["x-max-length-bytes"] = int64(n)
	}
	if len(args) > 0 {
		// Dropped messages are dead-lettered, through the default
		// exchange, to a loss queue of one message: its deliveries tell
		// the Transport that the broker dropped something.
		lq, err := s.loss.QueueDeclare("", false, true, true, false, amqp.Table{
			"x-max-length": int64(1),
			"x-overflow":   "drop-head",
		})
		if err != nil {
			return fmt.Errorf("declare loss queue: %w", err)
		}
		if err := s.loss.Qos(1, 0, false); err != nil {
			return fmt.Errorf("qos: %w", err)
		}
		if s.losses, err = s.loss.Consume(lq.Name, "", false, true, false, false, nil); err != nil {
			return fmt.Errorf("consume loss queue %q: %w", lq.Name, err)
		}
		args["x-overflow"] = "drop-head"
		args["x-dead-letter-exchange"] = ""
		args["x-dead-letter-routing-key"] = lq.Name
	}
	q, err := s.sub.QueueDeclare(t.opts.QueueName, false, true, true, false, args)
	if err != nil {
		return fmt.Errorf("declare queue %q: %w", t.opts.QueueName, err)
	}
	if err := s.sub.QueueBind(q.Name, "", t.exchange, false, nil); err != nil {
		return fmt.Errorf("bind queue %q to exchange %q: %w", q.Name, t.exchange, err)
	}
	if err := s.sub.Qos(t.opts.Prefetch, 0, false); err != nil {
		return fmt.Errorf("qos: %w", err)
	}
	msgs, err := s.sub.Consume(q.Name, "", false, true, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume queue %q: %w", q.Name, err)
	}
	s.queue, s.msgs = q.Name, msgs
	s.done = make(chan struct{})
	return nil
}

// shutdown closes the session: the connection when owned, else the
// channels.
func (s *session) shutdown(owned bool) error {
	if owned {
		if s.conn == nil || s.conn.IsClosed() {
			return nil
		}
		return s.conn.Close()
	}
	var err error
	for _, ch := range []*amqp.Channel{s.loss, s.sub, s.pub} {
		if ch != nil && !ch.IsClosed() {
			err = errors.Join(err, ch.Close())
		}
	}
	return err
}

// broken reports why a session ended, waiting for it; nil when life ended
// first. It also follows connection.blocked.
func (t *Transport) broken(s *session) error {
	for {
		select {
		case <-t.life.Done():
			return nil
		case e := <-s.connClosed:
			return closeCause("connection", e)
		case e := <-s.pubClosed:
			return closeCause("publishing channel", e)
		case e := <-s.subClosed:
			return closeCause("consuming channel", e)
		case e := <-s.lossClosed:
			return closeCause("loss queue's channel", e)
		case tag, ok := <-s.cancelled:
			if !ok {
				s.cancelled = nil // the channel closed: subClosed says why
				continue
			}
			return fmt.Errorf("the broker cancelled consumer %s (was the queue deleted?)", tag)
		case b, ok := <-s.blocked:
			if !ok {
				s.blocked = nil
				continue
			}
			if b.Active {
				reason := b.Reason
				t.blocked.Store(&reason)
				t.log.Warn("rabbitmqtransport: the broker blocked the connection", "reason", reason)
			} else {
				t.blocked.Store(nil)
				t.log.Info("rabbitmqtransport: the broker unblocked the connection")
			}
		}
	}
}

// closeCause makes the error of a close notification (nil: closed by the
// client, or a connection that ended without a close frame).
func closeCause(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed: %w", what, amqp.ErrClosed)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}
