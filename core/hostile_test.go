package core_test

import (
	"context"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// forge publishes envelopes, unsigned, from a transport of its own on hub.
func forge(t *testing.T, hub *memtransport.Hub, envs ...core.Envelope) {
	t.Helper()
	r := hub.New(ns)
	defer r.Close()
	for i := range envs {
		p, err := envs[i].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
}

// A forged own message published an hour ahead does not keep a blackholed
// link looking fresh: silence is detected as if it never arrived.
func TestForgedOwnEchoDoesNotHideSilence(t *testing.T) {
	hub := memtransport.NewHub()
	c, tr := open(t, hub, core.WithHeartbeat(10*time.Millisecond, 50*time.Millisecond))
	eventually(t, "own heartbeats flowing", func() bool { return c.Stats().IgnoredOwn > 0 })
	forge(t, hub, core.Envelope{Op: core.OpHeartbeat, Source: c.ID(), Seq: 1, Sent: time.Now().Add(time.Hour)})
	eventually(t, "the forgery arrived", func() bool { return c.Stats().Rejected > 0 })
	_ = c.Set("k", []byte("v"))
	tr.DropIncoming(1 << 30)
	eventually(t, "silence detected", func() bool { return c.Health().Silent })
	if _, ok := c.Get("k"); ok {
		t.Fatal("entry survived silence")
	}
}

// After a forged heartbeat announces the highest sequence number of a live
// peer, a real loss of that peer's messages is still detected.
func TestForgedSequenceNumberDoesNotHideRealLoss(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, btr := open(t, hub, quiet)
	ctx := context.Background()
	if err := a.Invalidate(ctx, "k0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b hears a", func() bool { return b.Health().Peers == 1 })
	forge(t, hub, core.Envelope{Op: core.OpHeartbeat, Source: a.ID(), Seq: math.MaxUint64, Sent: time.Now()})
	eventually(t, "the forgery counted as a gap", func() bool { return b.Stats().Gaps == 1 })
	for _, k := range []string{"k1", "k2"} { // they show the forged number wrong
		if err := a.Invalidate(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "a's numbering restarted", func() bool { return b.Stats().Gaps == 2 })
	_ = b.Set("x", []byte("v"))
	btr.DropIncoming(1) // a real loss
	if err := a.Invalidate(ctx, "k3"); err != nil {
		t.Fatal(err)
	}
	if err := a.Invalidate(ctx, "k4"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the real loss detected", func() bool { return b.Stats().Gaps == 3 })
	if _, ok := b.Get("x"); ok {
		t.Fatal("no flush after the real loss")
	}
}

// reordering declares that its messages may overtake one another, so that
// receivers wait for missing ones (the state a flood could grow).
type reordering struct{ *memtransport.Transport }

func (r reordering) Limits() core.Limits {
	l := r.Transport.Limits()
	l.ConcurrentPublish = 4
	return l
}

// Heartbeats from thousands of forged peers, each announcing a thousand
// messages that never come, leave the receiver's memory bounded.
func TestForgedPeerFloodKeepsMemoryBounded(t *testing.T) {
	hub := memtransport.NewHub()
	var clock atomic.Int64 // the engine's, so that the peer table is complete at once
	clock.Store(time.Now().UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	opts := []core.Option{core.WithLogger(discard), core.WithHeartbeat(time.Second, 10*time.Second),
		core.WithReorderWindow(time.Minute), core.WithClock(now)}
	c, err := core.Open(context.Background(), newStore(t), reordering{hub.New(ns)}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	clock.Add(int64(11 * time.Second))
	r := hub.New(ns)
	defer r.Close()
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	const forged = 5000
	for range forged {
		env := core.Envelope{Op: core.OpHeartbeat, Source: core.NewSourceID(), Seq: 1000, Sent: now()}
		p, _ := env.MarshalBinary()
		if err := r.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the flood delivered", func() bool { return c.Stats().Received >= forged })
	grown := int64(heap()) - int64(before)
	// Unbounded, each forged peer would hold its thousand missing numbers
	// (about 32 KiB) until it timed out: 160 MiB here.
	if grown > 16<<20 {
		t.Fatalf("the heap grew by %d MiB after %d forged peers", grown>>20, forged)
	}
	if h := c.Health(); h.Peers > core.DefaultOptions().MaxPeers {
		t.Fatalf("%d peers tracked", h.Peers)
	}
}
