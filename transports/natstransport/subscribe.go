// Subscribe and the handler calls: messages from nats.go's delivery
// goroutine, events from the watcher, one call at a time under hmu.

package natstransport

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
)

// Subscribe subscribes to the subject and returns once the server the
// connection is attached to has the interest (a round trip after the
// SUB). In a cluster, the interest reaches the other nodes over routes
// shortly after; see the package documentation. In the JetStream mode it
// creates the stream if needed and returns once the server has a consumer
// that starts after the last message the stream held: every message
// stored later is delivered.
//
// EventConnected is delivered from the Transport's goroutine, as the first
// handler call, right after Subscribe succeeded; never from within
// Subscribe, so a caller may hold a lock around Subscribe that its handler
// also takes.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return fmt.Errorf("%w: natstransport: nil handler", core.ErrInvalidOption)
	}
	if t.closed.Load() {
		return core.ErrClosed
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.subscribed {
		return core.ErrAlreadySubscribed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natstransport: subscribe: %w", err)
	}
	ctx, cancel := t.withTimeout(ctx)
	defer cancel()
	nc, err := t.conn(ctx)
	if err != nil {
		return fmt.Errorf("natstransport: subscribe: %w", err)
	}

	// Hold the handler lock until EventConnected went out, so that it
	// precedes every message. On success the watcher goroutine delivers
	// EventConnected and unlocks (a sync.Mutex may be unlocked by another
	// goroutine than the one that locked it).
	t.hmu.Lock()
	handedOver := false
	defer func() {
		if !handedOver {
			t.hmu.Unlock()
		}
	}()
	if t.closed.Load() {
		return core.ErrClosed
	}
	var connStatus chan nats.Status
	if !t.owned {
		connStatus = nc.StatusChanged(nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	}
	var sub *nats.Subscription
	var subStatus <-chan nats.SubStatus
	if t.js != nil {
		t.h = h
		err = t.js.subscribe(ctx, nc)
	} else {
		sub, subStatus, err = t.subscribeCore(ctx, nc)
	}
	if err != nil {
		if connStatus != nil {
			nc.RemoveStatusListener(connStatus)
		}
		return err
	}
	t.subscribed = true
	t.sub = sub
	t.connStatus = connStatus
	t.h, t.active = h, sub
	t.watching.Store(true)
	t.wg.Add(1)
	handedOver = true
	go t.watch(nc, sub, connStatus, subStatus)
	return nil
}

// subscribeCore makes the core NATS subscription and waits for the round
// trip that tells the server has it.
func (t *Transport) subscribeCore(ctx context.Context, nc *nats.Conn) (*nats.Subscription, <-chan nats.SubStatus, error) {
	sub, err := nc.Subscribe(t.subject, t.onMsg)
	if err != nil {
		return nil, nil, fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	msgs, bytes := t.opts.PendingMsgs, t.opts.PendingBytes
	if msgs == 0 {
		msgs = nats.DefaultSubPendingMsgsLimit
	}
	if bytes == 0 {
		bytes = nats.DefaultSubPendingBytesLimit
	}
	if err := sub.SetPendingLimits(msgs, bytes); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	subStatus := sub.StatusChanged(nats.SubscriptionSlowConsumer)
	if err := t.flush(ctx, nc); err != nil {
		_ = sub.Unsubscribe()
		return nil, nil, fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	return sub, subStatus, nil
}

func (t *Transport) onMsg(m *nats.Msg) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	// A message of a subscription whose Subscribe failed is dropped.
	if t.hclosed || m.Sub != t.active {
		return
	}
	defer t.recoverHandler()
	t.h.HandleMessage(m.Data)
}

// event delivers ev unless the Transport is closed.
func (t *Transport) event(ev core.Event) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.hclosed {
		return
	}
	t.callEvent(ev)
}

// callEvent calls the handler's HandleEvent, recovering a panic. hmu is
// held.
func (t *Transport) callEvent(ev core.Event) {
	defer t.recoverHandler()
	t.h.HandleEvent(ev)
}

// recoverHandler, deferred around a handler call, recovers and logs a
// panic.
func (t *Transport) recoverHandler() {
	if r := recover(); r != nil {
		t.opts.Logger.Error("natstransport: handler panicked", "subject", t.subject, "panic", r)
	}
}
