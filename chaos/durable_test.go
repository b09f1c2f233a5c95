package chaos_test

import (
	"context"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
)

// TestDurableFailedRoundIsNoLoss: over a durable transport, a publish round
// that failed (its instance was cut off from the broker, so the message
// never got into the log) is no loss for anyone: no peer missed anything
// the log holds. The peers must not flush: the failed round's number is
// used up, and the round goes out again ahead of the next one (the
// heartbeat that announces the number).
func TestDurableFailedRoundIsNoLoss(t *testing.T) {
	for _, name := range []string{"redis-stream", "jetstream"} {
		t.Run(name, func(t *testing.T) {
			a, pa, b := durablePair(t, name, time.Second)
			// Cut a off the broker: its Invalidate fails, the message
			// never reaches the log.
			pa.SetRefuse(true)
			pa.Reset()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := a.Invalidate(ctx, "k")
			cancel()
			if err == nil {
				t.Fatal("Invalidate succeeded while the instance was cut off from the broker")
			}
			pa.Heal()
			expectNoFlushAfterReturn(t, a, b, "a message that never got into the log")
		})
	}
}

// TestDurablePeerBackIsNoLoss: over a durable transport, a peer that went
// quiet for longer than HeartbeatTimeout (it was cut off from the broker)
// is forgotten without a flush (Stats.PeersLost); when it is back, its
// messages continue the log where they stopped, and nothing was lost. The
// other instance must not flush: what it kept of the peer (its highest
// number) lets the peer's numbers go on where they stopped.
func TestDurablePeerBackIsNoLoss(t *testing.T) {
	for _, name := range []string{"redis-stream", "jetstream"} {
		t.Run(name, func(t *testing.T) {
			const timeout = 500 * time.Millisecond
			a, pa, b := durablePair(t, name, timeout)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.Invalidate(ctx, "k") // b has a's number 1
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			// Cut a off, without any call of its own, until b forgot it.
			pa.SetRefuse(true)
			pa.Reset()
			if !eventually(30*time.Second, func() bool { return b.Stats().PeersLost > 0 }) {
				t.Fatal("b did not notice that a went quiet")
			}
			pa.Heal()
			expectNoFlushAfterReturn(t, a, b, "a peer whose messages the log kept")
		})
	}
}

// durablePair opens two instances over a fresh broker of the named kind,
// a behind a fault proxy, and waits until they see each other.
func durablePair(t *testing.T, name string, timeout time.Duration) (a *core.Cache, pa *faultproxy.Proxy, b *core.Cache) {
	var kind *brokerKind
	for i := range brokers {
		if brokers[i].name == name {
			kind = &brokers[i]
		}
	}
	brk := kind.start(t)
	ns := "pair-" + name
	open := func() (*core.Cache, *faultproxy.Proxy) {
		p, err := faultproxy.New(brk.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		c, err := core.New(newStore(t), brk.open(t, p.Addr(), ns),
			core.WithHeartbeat(100*time.Millisecond, timeout),
			core.WithPublishTimeout(300*time.Millisecond),
			core.WithLogger(discard))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Start(ctx); err != nil {
			t.Fatalf("Start: %v", err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c, p
	}
	a, pa = open()
	b, _ = open()
	if !eventually(30*time.Second, func() bool { return a.Health().Peers == 1 && b.Health().Peers == 1 }) {
		t.Fatal("the instances did not see each other")
	}
	if !b.Health().Connected || b.Stats().Flushes != 0 {
		t.Fatalf("b before the fault: %+v, %d flushes", b.Health(), b.Stats().Flushes)
	}
	return a, pa, b
}

// expectNoFlushAfterReturn waits until a is back and b heard from it
// again, then checks that b did not flush.
func expectNoFlushAfterReturn(t *testing.T, a, b *core.Cache, what string) {
	t.Helper()
	if !eventually(30*time.Second, func() bool { h := a.Health(); return h.Healthy() && !h.Suspended }) {
		t.Fatalf("a did not recover: %+v", a.Health())
	}
	// a's heartbeats since its return announce its numbers.
	since := b.Stats().Received
	if !eventually(30*time.Second, func() bool { return b.Stats().Received >= since+5 }) {
		t.Fatal("b hears nothing of a after its return")
	}
	if st := b.Stats(); st.Flushes != 0 {
		h := b.Health()
		t.Errorf("b flushed %d times (last cause %q, gaps %d) for %s", st.Flushes, h.LastFlushCause, st.Gaps, what)
	}
}
