package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// Over a durable transport a disconnect suspends the store instead of
// flushing it: nothing is served from it while the link is down; what was
// invalidated meanwhile arrives after the reconnect, and the rest is
// served again, warm.
func TestDurableDisconnectKeepsStoreWarm(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithDurable(1000))
	hb := core.WithHeartbeat(20*time.Millisecond, 200*time.Millisecond)
	a, _ := open(t, hub, hb)
	b, btr := open(t, hub, hb)
	eventually(t, "b hears a", func() bool { return b.Health().Peers == 1 })
	for _, k := range []string{"changed", "kept"} {
		if err := b.Set(k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	btr.Disconnect(nil)
	eventually(t, "b suspended", func() bool { return b.Health().Suspended })
	if _, ok := b.Get("kept"); ok {
		t.Fatal("a suspended store served an entry")
	}
	if err := a.Invalidate(context.Background(), "changed"); err != nil {
		t.Fatal(err)
	}
	btr.Reconnect()
	eventually(t, "b caught up", func() bool { h := b.Health(); return !h.Suspended && !h.Degraded })
	if _, ok := b.Get("changed"); ok {
		t.Fatal("the invalidation published while b was cut was not applied")
	}
	mustGet(t, b, "kept", "v")
	if st := b.Stats(); st.Flushes != 0 || st.Suspensions != 1 || st.Gaps != 0 {
		t.Fatalf("after a resumed disconnect: %d flushes, %d suspensions, %d gaps; want 0, 1, 0", st.Flushes, st.Suspensions, st.Gaps)
	}
}

// A durable transport that cannot resume (its log no longer holds what was
// missed) makes the engine count the loss and flush.
func TestDurableLostLogFlushes(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithDurable(2))
	a, _ := open(t, hub, quiet)
	b, btr := open(t, hub, quiet)
	if err := b.Set("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	btr.Disconnect(nil)
	eventually(t, "b suspended", func() bool { return b.Health().Suspended })
	for i := range 5 {
		if err := a.Invalidate(context.Background(), "x"+string(rune('0'+i))); err != nil {
			t.Fatal(err)
		}
	}
	btr.Reconnect()
	eventually(t, "b flushed", func() bool { return b.Stats().Flushes == 1 })
	if st, h := b.Stats(), b.Health(); st.Gaps != 1 || h.Suspended || h.LastFlushCause != "reconnect" {
		t.Fatalf("after a lost log: %d gaps, suspended %v, cause %q", st.Gaps, h.Suspended, h.LastFlushCause)
	}
	if _, ok := b.Get("k"); ok {
		t.Fatal("an entry survived a lost log")
	}
}

// Over a durable transport a peer that goes quiet without leaving costs no
// flush: what it got into the log has been delivered.
func TestDurablePeerLostNoFlush(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithDurable(1000))
	hb := core.WithHeartbeat(20*time.Millisecond, 100*time.Millisecond)
	_, atr := open(t, hub, hb)
	b, _ := open(t, hub, hb)
	eventually(t, "b hears a", func() bool { return b.Health().Peers == 1 })
	if err := b.Set("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	atr.Disconnect(nil) // a's heartbeats stop reaching anyone
	eventually(t, "b gave a up", func() bool { return b.Stats().PeersLost == 1 })
	mustGet(t, b, "k", "v")
	if st := b.Stats(); st.Flushes != 0 {
		t.Fatalf("%d flushes for a lost peer over a durable transport", st.Flushes)
	}
}
