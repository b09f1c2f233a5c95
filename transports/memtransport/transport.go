package memtransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Transport is one instance's connection to a Hub on a namespace. It
// implements core.Backplane and is safe for concurrent use.
//
// A subscribed transport owns one delivery goroutine and a bounded queue of
// Hub's queue size: publishers append to the queue, the goroutine calls the
// handler one message or event at a time. Close stops the goroutine.
type Transport struct {
	hub *Hub
	ns  string

	// pubSem serialises this transport's Publish calls, so that every
	// subscriber sees its messages in one order.
	pubSem chan struct{}
	// closing is closed by Close.
	closing chan struct{}
	// wake tells the delivery goroutine that the queue or state changed.
	wake chan struct{}

	closeOnce sync.Once

	mu     sync.Mutex
	closed bool
	// done is non-nil once subscribed and closed when the delivery
	// goroutine exits.
	done chan struct{}
	// cause is non-nil while the transport is cut from the hub.
	cause error
	// up is closed when a cut transport reconnects.
	up chan struct{}
	// stalled is non-nil while Stall holds this transport's publishing,
	// and closed by Resume.
	stalled chan struct{}
	// drop is how many incoming messages to drop silently.
	drop int
	// queue holds messages and events for the delivery goroutine; msgs
	// counts its messages, which are bounded by the hub's queue size.
	queue []item
	head  int
	msgs  int
	// space, when non-nil, is closed as soon as a message leaves the queue;
	// publishers waiting for room wait on it.
	space chan struct{}
	// missed holds, on a durable hub, the messages published while the
	// transport is cut; overflowed is set once more than the retention
	// were.
	missed     [][]byte
	overflowed bool
}

// item is a message or an event waiting for delivery.
type item struct {
	payload []byte
	event   *core.Event
}

var _ core.Backplane = (*Transport)(nil)

func newTransport(h *Hub, ns string) *Transport {
	return &Transport{
		hub:     h,
		ns:      ns,
		pubSem:  make(chan struct{}, 1),
		closing: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
}

// Limits reports the hub's maximum payload, and whether it is durable
// (WithDurable).
func (t *Transport) Limits() core.Limits {
	return core.Limits{MaxPayload: t.hub.opts.maxPayload, Durable: t.hub.opts.retention > 0}
}

// Publish delivers each payload, in order, to every transport subscribed to
// the same namespace on the same hub, this one included. It copies the
// payloads, so the caller may reuse them once Publish returns. It returns
// once every payload is in every subscriber's queue; while a queue is full it
// waits for room, until ctx ends. Messages to a transport that is cut, or
// that was told to DropIncoming, are lost.
//
// A payload over the hub's maximum fails with core.ErrPayloadTooLarge before
// anything is sent. Publish on a cut transport fails with an error wrapping
// ErrDisconnected and the cause of the cut, after Close with core.ErrClosed.
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	select {
	case <-t.closing:
		return fmt.Errorf("memtransport: publish: %w", core.ErrClosed)
	default:
	}
	max := t.hub.opts.maxPayload
	for i, p := range payloads {
		if len(p) > max {
			return fmt.Errorf("memtransport: payload %d is %d bytes, at most %d: %w", i, len(p), max, core.ErrPayloadTooLarge)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case t.pubSem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.closing:
		return fmt.Errorf("memtransport: publish: %w", core.ErrClosed)
	}
	defer func() { <-t.pubSem }()

	subs := t.hub.subscribers(t.ns)
	for _, p := range payloads {
		if err := t.waitStalled(ctx); err != nil {
			return err
		}
		if err := t.publishable(); err != nil {
			return err
		}
		msg := make([]byte, len(p))
		copy(msg, p)
		for _, s := range subs {
			if err := s.enqueue(ctx, t, msg); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitStalled waits while Stall holds t's publishing, until Resume, ctx
// ends or Close.
func (t *Transport) waitStalled(ctx context.Context) error {
	t.mu.Lock()
	stalled := t.stalled
	t.mu.Unlock()
	if stalled == nil {
		return nil
	}
	select {
	case <-stalled:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("memtransport: publish: %w", ctx.Err())
	case <-t.closing:
		return fmt.Errorf("memtransport: publish: %w", core.ErrClosed)
	}
}

// publishable reports why t cannot publish now, if it cannot.
func (t *Transport) publishable() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return fmt.Errorf("memtransport: publish: %w", core.ErrClosed)
	case t.cause == nil:
		return nil
	case errors.Is(t.cause, ErrDisconnected):
		return fmt.Errorf("memtransport: publish: %w", t.cause)
	default:
		return fmt.Errorf("memtransport: publish: %w: %w", ErrDisconnected, t.cause)
	}
}

// enqueue appends msg to t's queue for delivery, waiting for room while the
// queue is full. A message to a closed or cut transport, or one of the
// messages DropIncoming asked for, is not queued. from is the publisher.
func (t *Transport) enqueue(ctx context.Context, from *Transport, msg []byte) error {
	t.mu.Lock()
	for {
		switch {
		case t.closed:
			t.mu.Unlock()
			return nil
		case t.cause != nil:
			if r := t.hub.opts.retention; r > 0 && t.done != nil {
				if len(t.missed) < r {
					t.missed = append(t.missed, msg)
				} else {
					t.missed, t.overflowed = nil, true
				}
			}
			t.mu.Unlock()
			return nil
		case t.drop > 0:
			t.drop--
			t.mu.Unlock()
			return nil
		case t.msgs < t.hub.opts.queueSize:
			t.push(item{payload: msg})
			t.msgs++
			t.mu.Unlock()
			return nil
		}
		if t.space == nil {
			t.space = make(chan struct{})
		}
		space := t.space
		t.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			return ctx.Err()
		case <-from.closing:
			return fmt.Errorf("memtransport: publish: %w", core.ErrClosed)
		}
		t.mu.Lock()
	}
}

// push appends it to the queue and wakes the delivery goroutine. The caller
// holds t.mu.
func (t *Transport) push(it item) {
	if t.head > 0 && len(t.queue) == cap(t.queue) {
		n := copy(t.queue, t.queue[t.head:])
		clear(t.queue[n:])
		t.queue = t.queue[:n]
		t.head = 0
	}
	t.queue = append(t.queue, it)
	t.signal()
}

// pop removes the oldest item. The caller holds t.mu and checked that the
// queue is not empty.
func (t *Transport) pop() item {
	it := t.queue[t.head]
	t.queue[t.head] = item{}
	t.head++
	if t.head == len(t.queue) {
		t.queue = t.queue[:0]
		t.head = 0
	}
	if it.event == nil {
		t.msgs--
		t.freed()
	}
	return it
}

// discardMessages drops every queued message and keeps the events. The
// caller holds t.mu.
func (t *Transport) discardMessages() {
	if t.msgs == 0 {
		return
	}
	kept := t.queue[:0]
	for _, it := range t.queue[t.head:] {
		if it.event != nil {
			kept = append(kept, it)
		}
	}
	clear(t.queue[len(kept):])
	t.queue = kept
	t.head = 0
	t.msgs = 0
	t.freed()
}

// freed wakes publishers waiting for room. The caller holds t.mu.
func (t *Transport) freed() {
	if t.space != nil {
		close(t.space)
		t.space = nil
	}
}

// signal wakes the delivery goroutine without blocking.
func (t *Transport) signal() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// pushEvent queues an event of kind k if t is subscribed. The caller holds
// t.mu.
func (t *Transport) pushEvent(k core.EventKind, err error) {
	if t.done == nil || t.closed {
		return
	}
	t.push(item{event: &core.Event{Kind: k, Err: err, Time: time.Now()}})
}

// Subscribe starts delivery to h and returns once delivery is active: a
// Publish on the namespace that starts after Subscribe returns reaches h.
// The first thing h receives is EventConnected. A transport that is cut
// waits for Reconnect first, until ctx ends; ctx bounds only this wait.
// A second Subscribe fails with core.ErrAlreadySubscribed, Subscribe after
// Close with core.ErrClosed.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return errors.New("memtransport: subscribe: nil handler")
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		t.hub.mu.Lock()
		t.mu.Lock()
		switch {
		case t.closed:
			t.mu.Unlock()
			t.hub.mu.Unlock()
			return fmt.Errorf("memtransport: subscribe: %w", core.ErrClosed)
		case t.done != nil:
			t.mu.Unlock()
			t.hub.mu.Unlock()
			return fmt.Errorf("memtransport: subscribe: %w", core.ErrAlreadySubscribed)
		case t.cause != nil:
			up := t.up
			t.mu.Unlock()
			t.hub.mu.Unlock()
			select {
			case <-up:
				continue
			case <-ctx.Done():
				return ctx.Err()
			case <-t.closing:
				return fmt.Errorf("memtransport: subscribe: %w", core.ErrClosed)
			}
		}
		t.done = make(chan struct{})
		t.pushEvent(core.EventConnected, nil)
		t.hub.subscribeLocked(t)
		t.mu.Unlock()
		t.hub.mu.Unlock()
		go t.deliver(h)
		return nil
	}
}

// deliver is the delivery goroutine: it hands queued items to h one at a
// time until Close.
func (t *Transport) deliver(h core.Handler) {
	defer close(t.done)
	buf := make([]byte, 0, 512)
	for {
		t.mu.Lock()
		for !t.closed && t.head == len(t.queue) {
			t.mu.Unlock()
			<-t.wake
			t.mu.Lock()
		}
		if t.closed {
			t.mu.Unlock()
			return
		}
		it := t.pop()
		t.mu.Unlock()
		if it.event != nil {
			t.call(func() { h.HandleEvent(*it.event) }, "event", it.event.Kind.String())
			continue
		}
		// Each subscriber gets its own copy, reused from call to call:
		// the payload is only valid during the call.
		buf = append(buf[:0], it.payload...)
		t.call(func() { h.HandleMessage(buf) }, "message", "")
	}
}

// call runs f and recovers and logs a panic.
func (t *Transport) call(f func(), what, kind string) {
	defer func() {
		if r := recover(); r != nil {
			args := []any{"namespace", t.ns, "call", what, "panic", r}
			if kind != "" {
				args = append(args, "event", kind)
			}
			t.hub.opts.logger.Error("memtransport: handler panicked", args...)
		}
	}()
	f()
}

// Disconnect cuts this transport from its hub, as a dropped connection
// would: the handler gets EventDisconnected with Err cause (ErrDisconnected
// when cause is nil), messages queued for it and not yet delivered are
// discarded, messages published to it while it is cut are lost, and its
// Publish fails with an error wrapping ErrDisconnected. Disconnect on a cut
// or closed transport does nothing.
func (t *Transport) Disconnect(cause error) {
	if cause == nil {
		cause = ErrDisconnected
	}
	t.disconnect(cause)
}

// disconnect cuts t and reports whether it was connected.
func (t *Transport) disconnect(cause error) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.cause != nil {
		return false
	}
	t.cause = cause
	t.up = make(chan struct{})
	if t.hub.opts.retention == 0 {
		t.discardMessages()
	}
	t.pushEvent(core.EventDisconnected, cause)
	return true
}

// Reconnect ends a cut: the handler gets EventReconnected and messages
// published from now on are delivered again; on a durable hub
// (WithDurable) the messages published while it was cut come first, or
// the event says they were lost. Reconnect on a connected or closed
// transport does nothing.
func (t *Transport) Reconnect() {
	t.reconnect()
}

func (t *Transport) reconnect() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed || t.cause == nil {
		return
	}
	t.cause = nil
	close(t.up)
	t.up = nil
	if t.hub.opts.retention == 0 {
		t.pushEvent(core.EventReconnected, nil)
		return
	}
	resumed := !t.overflowed
	if t.done != nil && !t.closed {
		t.push(item{event: &core.Event{Kind: core.EventReconnected, Time: time.Now(), Resumed: resumed}})
	}
	for _, m := range t.missed {
		t.push(item{payload: m})
		t.msgs++
	}
	t.missed, t.overflowed = nil, false
}

// Stall holds this transport's publishing as a broker that stopped
// answering would, with the connection still up and no event: a Publish
// under way waits before its next payload, and a later one before its
// first, until Resume, until its context ends or until Close. Its other
// Publish calls wait behind it as usual, until their contexts end.
// Delivery to this transport goes on. Stall on a stalled transport does
// nothing.
func (t *Transport) Stall() {
	t.mu.Lock()
	if t.stalled == nil {
		t.stalled = make(chan struct{})
	}
	t.mu.Unlock()
}

// Resume ends a Stall: the waiting Publish calls go on. Resume on a
// transport that is not stalled does nothing.
func (t *Transport) Resume() {
	t.mu.Lock()
	if t.stalled != nil {
		close(t.stalled)
		t.stalled = nil
	}
	t.mu.Unlock()
}

// DropIncoming silently drops the next n messages addressed to this
// transport, its own echoes included, with no event: an undetected loss.
// Calls add up; n <= 0 does nothing.
func (t *Transport) DropIncoming(n int) {
	if n <= 0 {
		return
	}
	t.mu.Lock()
	t.drop += n
	t.mu.Unlock()
}

// StopDropping cancels the drops DropIncoming asked for that have not
// happened yet: delivery resumes with the next message.
func (t *Transport) StopDropping() {
	t.mu.Lock()
	t.drop = 0
	t.mu.Unlock()
}

// Close detaches the transport from its hub and stops delivery. It is
// idempotent and returns nil. After it returns no handler call starts and
// Publish fails with core.ErrClosed. Close waits for a handler call in
// progress to return (a handler never calls Close, core.Handler says).
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.closing)
		t.queue, t.head, t.msgs = nil, 0, 0
		t.freed()
		t.mu.Unlock()
		t.signal()
		// After closed is set, so that a racing Subscribe either failed or
		// registered before this removal.
		t.hub.remove(t)
	})
	t.mu.Lock()
	done := t.done
	t.mu.Unlock()
	if done != nil {
		<-done
	}
	return nil
}
