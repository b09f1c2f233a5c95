package core_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// handlerGateWait is how long strictBackplane's Publish, Send and Close
// wait for a handler call in progress before they call it a violation. The
// engine's handler only evicts and counts, so a call that lasts this long
// is one that waits for the very Publish, Send or Close waiting for it.
const handlerGateWait = 2 * time.Second

// strictBackplane is a memtransport transport that makes the most of what
// core.Handler allows a transport: it holds what its Publish, Send and
// Close need while a handler call runs. Each of them first waits until no
// handler call is in progress. A handler that called one of them, or
// waited for one, would wait for itself: after handlerGateWait the call is
// recorded as a violation (with the handler calls in progress at that
// moment) and goes on, so that the test reports it instead of hanging.
type strictBackplane struct {
	*memtransport.Transport
	// gate is held by every handler call; Publish, Send and Close take it
	// and give it back before they go on.
	gate chan struct{}
	// inHandler counts the handler calls in progress.
	inHandler atomic.Int32
	// calls counts the handler calls made.
	calls atomic.Int64

	mu         sync.Mutex
	violations []string
}

func newStrict(tr *memtransport.Transport) *strictBackplane {
	return &strictBackplane{Transport: tr, gate: make(chan struct{}, 1)}
}

// waitForHandler waits until no handler call is in progress, or records a
// violation of op after handlerGateWait.
func (s *strictBackplane) waitForHandler(op string) {
	select {
	case s.gate <- struct{}{}:
		<-s.gate
	case <-time.After(handlerGateWait):
		s.mu.Lock()
		s.violations = append(s.violations, fmt.Sprintf("%s waited %v for a handler call in progress (%d in progress)",
			op, handlerGateWait, s.inHandler.Load()))
		s.mu.Unlock()
	}
}

// handle runs one handler call holding the gate.
func (s *strictBackplane) handle(f func()) {
	s.gate <- struct{}{}
	s.inHandler.Add(1)
	s.calls.Add(1)
	defer func() {
		s.inHandler.Add(-1)
		<-s.gate
	}()
	f()
}

func (s *strictBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	return s.Transport.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { s.handle(func() { h.HandleMessage(p) }) },
		Event:   func(ev core.Event) { s.handle(func() { h.HandleEvent(ev) }) },
	})
}

func (s *strictBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	s.waitForHandler("Publish")
	return s.Transport.Publish(ctx, payloads...)
}

func (s *strictBackplane) Close() error {
	s.waitForHandler("Close")
	return s.Transport.Close()
}

func (s *strictBackplane) report() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

// strictSender is a strictBackplane that is also a core.Sender: Send
// publishes at once and confirm returns nil.
type strictSender struct {
	*strictBackplane
}

func (s strictSender) Send(ctx context.Context, payloads ...[]byte) (func(context.Context) error, error) {
	s.waitForHandler("Send")
	if err := s.Transport.Publish(ctx, payloads...); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return ctx.Err() }, nil
}

// TestHandlerNeverCallsItsBackplane checks the engine's side of
// core.Handler: its handler never calls Publish, Send or Close of the
// Backplane delivering to it, nor waits for one of them. Two instances
// invalidate, clear and exchange heartbeats over transports that hold
// Publish, Send and Close while a handler call runs, through a cut and a
// reconnect, and close; no call may wait for a handler call that does not
// return.
func TestHandlerNeverCallsItsBackplane(t *testing.T) {
	for _, sender := range []bool{false, true} {
		t.Run(fmt.Sprintf("sender=%v", sender), func(t *testing.T) {
			hub := memtransport.NewHub()
			t.Cleanup(func() { _ = hub.Close() })
			var strict []*strictBackplane
			var caches []*core.Cache
			for range 2 {
				s := newStrict(hub.New(ns))
				var bp core.Backplane = s
				if sender {
					bp = strictSender{s}
				}
				c, err := core.Open(context.Background(), newStore(t), bp,
					core.WithLogger(discard), core.WithHeartbeat(20*time.Millisecond, 500*time.Millisecond))
				if err != nil {
					t.Fatal(err)
				}
				strict = append(strict, s)
				caches = append(caches, c)
			}
			a, b := caches[0], caches[1]
			ctx := context.Background()
			for i := range 50 {
				k := fmt.Sprintf("k%d", i)
				_ = a.Set(k, []byte("v"))
				_ = b.Set(k, []byte("v"))
				c := caches[i%2]
				if err := c.Invalidate(ctx, k); err != nil {
					t.Fatalf("Invalidate: %v", err)
				}
				if i%10 == 0 {
					if err := c.Clear(ctx); err != nil {
						t.Fatalf("Clear: %v", err)
					}
				}
			}
			// Heartbeats both ways.
			received := func(c *core.Cache) uint64 { return c.Stats().Received }
			ra, rb := received(a), received(b)
			eventually(t, "heartbeats from the peer", func() bool { return received(a) > ra+3 && received(b) > rb+3 })
			// A cut and a reconnect: events reach the handler, and the
			// engine may flush and publish meanwhile.
			strict[0].Transport.Disconnect(errors.New("test: cut"))
			strict[0].Transport.Reconnect()
			if err := b.Invalidate(ctx, "after-cut"); err != nil {
				t.Fatalf("Invalidate after the cut: %v", err)
			}
			ra = received(a)
			eventually(t, "heartbeats after the reconnect", func() bool { return received(a) > ra+3 })
			for _, c := range caches {
				if err := c.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			for i, s := range strict {
				if s.calls.Load() == 0 {
					t.Errorf("instance %d: no handler call was made", i)
				}
				for _, v := range s.report() {
					t.Errorf("instance %d: %s", i, v)
				}
			}
		})
	}
}
