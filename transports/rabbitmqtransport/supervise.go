// The link: the first connect, the supervisor that replaces a broken
// session with backoff, and the events it reports.

package rabbitmqtransport

import (
	"context"
	"fmt"
	"time"

	"github.com/backplane-go/backplane/core"
)

// session returns the live session. The first call connects (bounded by
// ctx) and starts the supervisor; later, while the supervisor is
// replacing a broken session, it fails with ErrNotConnected.
func (t *Transport) session(ctx context.Context) (*session, error) {
	if s, err, ok := t.current(); ok {
		return s, err
	}
	select {
	case t.connect <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("connect: %w", ctx.Err())
	}
	defer func() { <-t.connect }()
	if s, err, ok := t.current(); ok {
		return s, err
	}
	dctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(t.life, cancel)
	defer stop()
	s, err := t.dial(dctx)
	if err != nil {
		if t.closed.Load() {
			return nil, core.ErrClosed
		}
		return nil, fmt.Errorf("connect: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		_ = s.shutdown(t.given == nil)
		return nil, core.ErrClosed
	}
	t.sess, t.running = s, true
	t.wg.Add(1)
	go t.supervise(s)
	return s, nil
}

// current returns the live session, or the error for its absence, with ok
// true; ok is false when the Transport has never connected.
func (t *Transport) current() (s *session, err error, ok bool) {
	if t.closed.Load() {
		return nil, core.ErrClosed, true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.sess != nil:
		return t.sess, nil, true
	case t.running && t.lastErr != nil:
		return nil, fmt.Errorf("%w: %w", ErrNotConnected, t.lastErr), true
	case t.running:
		return nil, ErrNotConnected, true
	}
	return nil, nil, false
}

// supervise watches s and, when it breaks, reports EventDisconnected (if
// subscribed), reconnects with backoff, subscribes again and reports
// EventReconnected; then it watches the new session. It ends at Close, or
// when the connection given to New closed.
func (t *Transport) supervise(s *session) {
	defer t.wg.Done()
	for {
		cause := t.broken(s)
		if cause == nil || t.life.Err() != nil {
			return
		}
		t.mu.Lock()
		if t.sess == s {
			t.sess = nil
		}
		t.lastErr = cause
		subscribed := t.subscribed
		t.mu.Unlock()
		t.blocked.Store(nil)
		_ = s.shutdown(t.given == nil)
		if s.done != nil {
			<-s.done
		}
		t.log.Warn("rabbitmqtransport: link down, reconnecting", "err", cause)
		if subscribed {
			t.event(core.Event{Kind: core.EventDisconnected, Err: cause, Time: time.Now()})
		}
		if s = t.reconnect(); s == nil {
			return
		}
	}
}

// reconnect replaces the session, waiting ReconnectBackoff (doubling up to
// MaxReconnectBackoff) before each attempt. It returns nil at Close, or
// when the connection given to New is closed for good.
func (t *Transport) reconnect() *session {
	backoff := t.opts.ReconnectBackoff
	for {
		if !t.sleep(backoff) {
			return nil
		}
		backoff = min(2*backoff, t.opts.MaxReconnectBackoff)
		if t.given != nil && t.given.IsClosed() {
			t.mu.Lock()
			t.lastErr = ErrConnectionClosed
			t.mu.Unlock()
			t.log.Error("rabbitmqtransport: the connection given to New is closed; the transport stays disconnected")
			return nil
		}
		ctx, cancel := context.WithTimeout(t.life, t.opts.ConnectTimeout)
		s, err := t.dial(ctx)
		cancel()
		if err == nil {
			if s, err = t.install(s); s != nil || err == nil {
				return s
			}
		}
		t.mu.Lock()
		t.lastErr = err
		t.mu.Unlock()
		t.log.Debug("rabbitmqtransport: reconnect failed", "err", err, "retry_in", backoff)
	}
}

// install makes s the live session, subscribing it first if the Transport
// is subscribed. It returns nil, nil after Close.
func (t *Transport) install(s *session) (*session, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		_ = s.shutdown(t.given == nil)
		return nil, nil
	}
	if t.subscribed {
		if err := t.consume(s); err != nil {
			_ = s.shutdown(t.given == nil)
			return nil, err
		}
		t.startDelivery(s, core.EventReconnected)
	}
	t.sess = s
	t.lastErr = nil
	return s, nil
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

// event delivers ev to the handler unless the Transport is closed.
func (t *Transport) event(ev core.Event) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.hclosed || t.closed.Load() {
		return
	}
	if ev.Err != nil {
		t.log.Warn("rabbitmqtransport: "+ev.Kind.String(), "err", ev.Err)
	} else {
		t.log.Info("rabbitmqtransport: " + ev.Kind.String())
	}
	defer t.recoverHandler("HandleEvent")
	t.h.HandleEvent(ev)
}

// message delivers one payload to the handler unless the Transport is
// closed.
func (t *Transport) message(p []byte) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.hclosed || t.closed.Load() {
		return
	}
	defer t.recoverHandler("HandleMessage")
	t.h.HandleMessage(p)
}

func (t *Transport) recoverHandler(method string) {
	if r := recover(); r != nil {
		t.log.Error("rabbitmqtransport: handler panicked", "method", method, "panic", r)
	}
}
