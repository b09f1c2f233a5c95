// listen.go: the subscription: the listener connection (dialled with the
// pool's configuration, pinged when silent, redialled with backoff), the
// bounded queue between it and the handler, and the delivery goroutine.

package pgtransport

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"

	"github.com/backplane-go/backplane/core"
)

// Subscribe starts delivery to h. It returns once the server confirmed
// the LISTEN on the listener connection, so that any Publish that starts
// afterwards reaches h; ctx bounds the dial and the LISTEN. The first
// event h sees is EventConnected.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return invalid("nil handler")
	}
	if t.closed.Load() {
		return core.ErrClosed
	}
	t.mu.Lock()
	if t.subscribed {
		t.mu.Unlock()
		return core.ErrAlreadySubscribed
	}
	t.subscribed = true
	// EventConnected comes first, before any notification the LISTEN's
	// reply brings along.
	t.queue = make(chan item, t.opts.PendingMessages)
	t.queue <- eventItem(core.EventConnected, nil)
	t.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.life, cancel)
	conn, err := t.listen(ctx)
	stop()
	if err != nil {
		t.mu.Lock()
		t.subscribed = false
		t.mu.Unlock()
		if t.closed.Load() {
			return core.ErrClosed
		}
		return fmt.Errorf("pgtransport: subscribe to %s: %w", t.channel, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		t.closeConn(conn)
		return core.ErrClosed
	}
	t.wg.Add(2)
	go t.deliver(h)
	go t.read(conn)
	return nil
}

// listen dials the listener connection and runs LISTEN on it.
func (t *Transport) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg := t.connConfig.Copy()
	// Notifications go straight to the delivery queue, from the goroutine
	// that reads the connection, also while a ping runs.
	cfg.OnNotification = t.onNotification
	// A deadline (not a cancel request) ends a wait for a notification,
	// leaving the connection usable for the ping that follows.
	cfg.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	if cfg.ConnectTimeout == 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	if t.beforeConnect != nil {
		if err := t.beforeConnect(ctx, cfg); err != nil {
			return nil, fmt.Errorf("BeforeConnect: %w", err)
		}
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if t.afterConnect != nil {
		if err := t.afterConnect(ctx, conn); err != nil {
			t.closeConn(conn)
			return nil, fmt.Errorf("AfterConnect: %w", err)
		}
	}
	keepAlive(conn.PgConn().Conn())
	if _, err := conn.PgConn().Exec(ctx, t.listenSQL).ReadAll(); err != nil {
		t.closeConn(conn)
		return nil, err
	}
	t.pid.Store(conn.PgConn().PID())
	return conn, nil
}

// keepAlive turns on TCP keepalive probes of the listener connection, so
// that the kernel too notices a peer that vanished.
func keepAlive(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 15 * time.Second, Interval: 5 * time.Second, Count: 3})
	}
}

func (t *Transport) closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Close(ctx)
}

// onNotification queues a notification of the channel for the handler. It
// never blocks: when the queue is full the notification is dropped and
// counted, and deliver reports core.EventLoss, so that a slow handler does
// not stop the reading of the connection (see the package documentation:
// a listener that does not read holds back the server's queue for every
// listener).
func (t *Transport) onNotification(_ *pgconn.PgConn, n *pgconn.Notification) {
	if n.Channel != t.channel {
		return
	}
	payload, err := base64.StdEncoding.DecodeString(n.Payload)
	if err != nil {
		t.log.Warn("pgtransport: ignoring a notification that is not base64", "from_pid", n.PID, "err", err)
		return
	}
	select {
	case t.queue <- item{payload: payload}:
	default:
		if t.dropped.Add(1) == 1 {
			t.log.Warn("pgtransport: handler too slow, dropping notifications", "pending", len(t.queue))
		}
		t.loss.Add(1)
	}
}

func eventItem(kind core.EventKind, err error) item {
	return item{ev: &core.Event{Kind: kind, Err: err, Time: time.Now()}}
}

// enqueue queues an event for the handler, waiting for room; it reports
// false after Close.
func (t *Transport) enqueue(kind core.EventKind, err error) bool {
	select {
	case t.queue <- eventItem(kind, err):
		return true
	case <-t.life.Done():
		return false
	}
}

// read owns the listener connection: it waits for notifications, pings
// the server after PingInterval of silence, and replaces the connection
// when it fails, reporting EventDisconnected and then EventReconnected.
func (t *Transport) read(conn *pgx.Conn) {
	defer t.wg.Done()
	for {
		err := t.serve(conn)
		t.pid.Store(0)
		t.closeConn(conn)
		if t.life.Err() != nil {
			return
		}
		if !t.enqueue(core.EventDisconnected, err) {
			return
		}
		if conn = t.reconnect(); conn == nil {
			return
		}
		if !t.enqueue(core.EventReconnected, nil) {
			t.closeConn(conn)
			return
		}
	}
}

// errSilent cancels a wait for notifications after PingInterval of
// silence.
var errSilent = errors.New("pgtransport: listener silent")

// serve waits for notifications on conn until it fails, and returns why
// (nil after Close). After PingInterval without a notification it pings
// the server. The wait's context lives as long as notifications keep
// coming (a timer, reset by each one, cancels it): a context per wait
// would cost every notification a timer and its cancellation.
func (t *Transport) serve(conn *pgx.Conn) error {
	pg := conn.PgConn()
	for {
		ctx, cancel := context.WithCancelCause(t.life)
		var silence *time.Timer
		if t.opts.PingInterval > 0 {
			silence = time.AfterFunc(t.opts.PingInterval, func() { cancel(errSilent) })
		}
		var err error
		for {
			if err = pg.WaitForNotification(ctx); err != nil {
				break
			}
			// onNotification queued it.
			if silence != nil {
				silence.Reset(t.opts.PingInterval)
			}
		}
		if silence != nil {
			silence.Stop()
		}
		silent := errors.Is(context.Cause(ctx), errSilent)
		cancel(nil)
		switch {
		case t.life.Err() != nil:
			return nil
		case !silent || pg.IsClosed():
			return err
		}
		// Silent for PingInterval: make the server answer.
		pctx, pcancel := context.WithTimeout(t.life, t.opts.PingTimeout)
		err = pg.Ping(pctx)
		pcancel()
		if t.life.Err() != nil {
			return nil
		}
		if err != nil {
			if pgconn.Timeout(err) {
				return fmt.Errorf("%w (%v): %w", ErrPing, t.opts.PingTimeout, err)
			}
			return err
		}
	}
}

// reconnect dials the listener connection again until it succeeds, with
// backoff; it returns nil after Close.
func (t *Transport) reconnect() *pgx.Conn {
	backoff := time.Duration(0)
	for {
		conn, err := t.listen(t.life)
		if err == nil {
			return conn
		}
		if t.life.Err() != nil {
			return nil
		}
		if backoff == 0 {
			backoff = t.opts.ReconnectBackoff
		} else {
			backoff = min(2*backoff, t.opts.MaxReconnectBackoff)
		}
		t.log.Debug("pgtransport: listener reconnect failed", "err", err, "retry_in", backoff)
		if !t.sleep(backoff) {
			return nil
		}
	}
}

// sleep waits d or until Close; it reports false after Close.
func (t *Transport) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.life.Done():
		return false
	}
}

// deliver calls the handler with what read queued, one call at a time,
// until Close.
func (t *Transport) deliver(h core.Handler) {
	defer t.wg.Done()
	for {
		select {
		case <-t.life.Done():
			return
		case it := <-t.queue:
			if t.life.Err() != nil {
				return
			}
			if n := t.dropped.Swap(0); n > 0 {
				t.report(h, core.Event{Kind: core.EventLoss, Time: time.Now(),
					Err: fmt.Errorf("%w: %d notifications (Options.PendingMessages %d)", ErrPendingLimit, n, t.opts.PendingMessages)})
			}
			if it.ev != nil {
				t.report(h, *it.ev)
			} else {
				t.message(h, it.payload)
			}
		}
	}
}

func (t *Transport) message(h core.Handler, payload []byte) {
	defer t.recoverHandler("HandleMessage")
	h.HandleMessage(payload)
}

func (t *Transport) report(h core.Handler, ev core.Event) {
	defer t.recoverHandler("HandleEvent")
	if ev.Kind == core.EventDisconnected || ev.Err != nil {
		t.log.Warn("pgtransport: listener "+ev.Kind.String(), "err", ev.Err)
	} else {
		t.log.Info("pgtransport: listener " + ev.Kind.String())
	}
	h.HandleEvent(ev)
}

func (t *Transport) recoverHandler(method string) {
	if r := recover(); r != nil {
		t.log.Error("pgtransport: handler panicked", "method", method, "panic", r)
	}
}
