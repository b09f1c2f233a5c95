// Subscribe and the delivery goroutine: messages, acknowledgements and
// the loss queue, one handler call at a time.

package rabbitmqtransport

import (
	"context"
	"fmt"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// Subscribe declares the instance's exclusive queue, binds it to the
// namespace's exchange and starts consuming; it returns once the broker
// confirmed the consumer, so that any Publish that starts afterwards
// reaches h. ctx bounds the call: on a connection of its own, a ctx that
// ends during the declarations closes the connection, which the Transport
// then replaces; on a connection given to New, the declarations wait for
// the broker (at worst until the heartbeat gives up). A failed Subscribe
// may be retried.
//
// EventConnected is the first handler call, made from the Transport's
// delivery goroutine right after Subscribe succeeded, never from within
// Subscribe.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return transportopt.Invalid(pkg, "nil handler")
	}
	if t.closed.Load() {
		return core.ErrClosed
	}
	t.mu.Lock()
	subscribed := t.subscribed
	t.mu.Unlock()
	if subscribed {
		return core.ErrAlreadySubscribed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rabbitmqtransport: subscribe: %w", err)
	}
	s, err := t.session(ctx)
	if err != nil {
		return subscribeErr(err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed.Load():
		return core.ErrClosed
	case t.subscribed:
		return core.ErrAlreadySubscribed
	case t.sess != s:
		return fmt.Errorf("rabbitmqtransport: subscribe: %w: the connection dropped during the call", ErrNotConnected)
	}
	// Bound the declarations by ctx too: a broker that stops answering
	// would otherwise hold them until the heartbeat gives up.
	var stop func() bool
	if t.given == nil {
		stop = context.AfterFunc(ctx, func() { _ = s.conn.Close() })
	}
	err = t.consume(s)
	if stop != nil && !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
		// The consuming channel may be half set up: the supervisor
		// replaces the session.
		_ = s.sub.Close()
		return fmt.Errorf("rabbitmqtransport: subscribe to %s: %w", t.exchange, err)
	}
	t.h = h
	t.subscribed = true
	t.startDelivery(s, core.EventConnected)
	return nil
}

func subscribeErr(err error) error {
	if err == core.ErrClosed {
		return err
	}
	return fmt.Errorf("rabbitmqtransport: subscribe: %w", err)
}

// startDelivery starts the delivery goroutine of s, whose first handler
// call reports first. t.mu is held.
func (t *Transport) startDelivery(s *session, first core.EventKind) {
	t.wg.Add(1)
	go t.deliver(s, core.Event{Kind: first, Time: time.Now()})
}

// deliver hands what s's consumers receive to the handler, one call at a
// time, and acknowledges messages in batches: after every half of the
// prefetch, and whenever nothing more is waiting. It ends when the
// consumer's delivery channel closes (the channel or connection closed,
// the consumer was cancelled) or at Close.
func (t *Transport) deliver(s *session, first core.Event) {
	defer t.wg.Done()
	defer close(s.done)
	t.event(first)
	msgs, losses := s.msgs, s.losses
	ackEvery := max(1, t.opts.Prefetch/2)
	var last uint64 // the delivery tag of the last unacknowledged message
	n := 0
	ack := func() {
		if n > 0 {
			_ = s.sub.Ack(last, true)
			n = 0
		}
	}
	loss := func(l amqp.Delivery) {
		_ = l.Ack(false)
		t.event(core.Event{Kind: core.EventLoss, Err: fmt.Errorf("%w (queue %s, limits %d messages, %d bytes)", ErrOverflow, s.queue, t.opts.QueueMaxLength, t.opts.QueueMaxBytes), Time: time.Now()})
	}
	for {
		var d, l amqp.Delivery
		var ok, fromLosses bool
		select {
		case d, ok = <-msgs:
		case l, ok = <-losses:
			fromLosses = true
		default:
			ack()
			select {
			case d, ok = <-msgs:
			case l, ok = <-losses:
				fromLosses = true
			case <-t.life.Done():
				return
			}
		}
		if fromLosses {
			if !ok {
				losses = nil
			} else {
				loss(l)
			}
			continue
		}
		if !ok {
			return
		}
		t.message(d.Body)
		last = d.DeliveryTag
		n++
		if n >= ackEvery {
			ack()
		}
	}
}
