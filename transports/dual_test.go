package transports_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// events records what a Handler gets.
type events struct {
	mu   sync.Mutex
	msgs []string
	evs  []core.Event
}

func (e *events) HandleMessage(p []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.msgs = append(e.msgs, string(p))
}

func (e *events) HandleEvent(ev core.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
}

func (e *events) count(msg string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for _, m := range e.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func (e *events) kinds() []core.EventKind {
	e.mu.Lock()
	defer e.mu.Unlock()
	var ks []core.EventKind
	for _, ev := range e.evs {
		ks = append(ks, ev.Kind)
	}
	return ks
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func subscribed(t *testing.T, bp core.Backplane) *events {
	t.Helper()
	e := &events{}
	if err := bp.Subscribe(context.Background(), e); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { _ = bp.Close() })
	return e
}

// An instance on Dual hears, and is heard by, instances on either side.
func TestDualBridgesBothSides(t *testing.T) {
	hubA, hubB := memtransport.NewHub(memtransport.WithMaxPayload(100)), memtransport.NewHub(memtransport.WithMaxPayload(50))
	t.Cleanup(func() { _ = hubA.Close(); _ = hubB.Close() })
	dual := transports.Dual(hubA.New("ns"), hubB.New("ns"))
	onA, onB := hubA.New("ns"), hubB.New("ns")
	d, a, b := subscribed(t, dual), subscribed(t, onA), subscribed(t, onB)

	if l := dual.Limits(); l.MaxPayload != 50 || !l.Reorders || l.Durable {
		t.Errorf("Limits = %+v, want MaxPayload 50 (the smaller side), Reorders, not Durable", l)
	}
	ctx := context.Background()
	if err := dual.Publish(ctx, make([]byte, 51)); !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Errorf("Publish of 51 bytes: %v, want ErrPayloadTooLarge", err)
	}
	if err := dual.Publish(ctx, []byte("from-dual")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := onA.Publish(ctx, []byte("from-a")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := onB.Publish(ctx, []byte("from-b")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	waitUntil(t, "every message everywhere", func() bool {
		return a.count("from-dual") == 1 && b.count("from-dual") == 1 && d.count("from-a") == 1 &&
			d.count("from-b") == 1 && d.count("from-dual") == 2
	})
	if err := dual.Subscribe(ctx, d); !errors.Is(err, core.ErrAlreadySubscribed) {
		t.Errorf("second Subscribe: %v, want ErrAlreadySubscribed", err)
	}
}

// A disconnect of either side is one disconnect; the pair is back, never
// resumed, once both sides are.
func TestDualEvents(t *testing.T) {
	hubA, hubB := memtransport.NewHub(memtransport.WithDurable(100)), memtransport.NewHub(memtransport.WithDurable(100))
	t.Cleanup(func() { _ = hubA.Close(); _ = hubB.Close() })
	sideA, sideB := hubA.New("ns"), hubB.New("ns")
	spyB := &spy{Backplane: sideB}
	e := subscribed(t, transports.Dual(sideA, spyB))
	waitUntil(t, "connected", func() bool { return len(e.kinds()) == 1 })
	if k := e.kinds()[0]; k != core.EventConnected {
		t.Fatalf("first event %v, want connected", k)
	}
	base := 1

	sideA.Disconnect(errors.New("cut a"))
	waitUntil(t, "the disconnect", func() bool { return len(e.kinds()) == base+1 })
	sideB.Disconnect(errors.New("cut b"))
	waitUntil(t, "side B's disconnect handled", func() bool { return spyB.events.Load() == 2 })
	sideA.Reconnect()
	// Side A delivers again while B is cut: the pair is still down.
	if err := hubA.New("ns").Publish(context.Background(), []byte("a-is-back")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "side A delivering", func() bool { return e.count("a-is-back") == 1 })
	if n := len(e.kinds()); n != base+1 {
		t.Fatalf("events %v while side B is still cut, want only the disconnect", e.kinds())
	}
	sideB.Reconnect()
	waitUntil(t, "the reconnect", func() bool { return len(e.kinds()) == base+2 })
	got := e.kinds()[base:]
	if got[0] != core.EventDisconnected || got[1] != core.EventReconnected {
		t.Fatalf("events %v, want disconnected, reconnected", got)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if last := e.evs[len(e.evs)-1]; last.Resumed {
		t.Error("the pair's reconnect claims a resume: one side's log does not cover the other")
	}
	if err := e.evs[base].Err; err == nil || !strings.Contains(err.Error(), "primary transport") {
		t.Errorf("disconnect cause %v, want it to name the primary transport", err)
	}
}

// spy counts the events its Backplane delivered and the handler returned
// from.
type spy struct {
	core.Backplane
	events atomic.Int32
}

func (s *spy) Subscribe(ctx context.Context, h core.Handler) error {
	return s.Backplane.Subscribe(ctx, core.HandlerFuncs{
		Message: h.HandleMessage,
		Event:   func(ev core.Event) { h.HandleEvent(ev); s.events.Add(1) },
	})
}

// Publish fails when either side fails, naming it.
func TestDualPublishNamesTheFailedSide(t *testing.T) {
	hubA, hubB := memtransport.NewHub(), memtransport.NewHub()
	t.Cleanup(func() { _ = hubA.Close(); _ = hubB.Close() })
	sideB := hubB.New("ns")
	dual := transports.Dual(hubA.New("ns"), sideB)
	subscribed(t, dual)
	_ = sideB.Close()
	err := dual.Publish(context.Background(), []byte("x"))
	if !errors.Is(err, core.ErrClosed) || !strings.Contains(err.Error(), "secondary transport") {
		t.Fatalf("Publish with the secondary closed: %v, want ErrClosed naming the secondary transport", err)
	}
}
