package core_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestDisconnectFlushesAndStopsCaching(t *testing.T) {
	hub := memtransport.NewHub()
	c, tr := open(t, hub, quiet)
	ctx := context.Background()
	_ = c.Set("k", []byte("v"))
	tr.Disconnect(errors.New("broker gone"))
	eventually(t, "degraded", func() bool { return c.Health().Degraded })
	if _, ok := c.Get("k"); ok {
		t.Fatal("entry survived the disconnect flush")
	}
	// Reads keep being served, through the loader, without caching.
	for i := range 3 {
		v, err := c.GetOrLoad(ctx, "k", load("db"))
		if err != nil || string(v) != "db" {
			t.Fatalf("read %d while disconnected: %q, %v", i, v, err)
		}
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("a value was cached while the link was down")
	}
	if err := c.Invalidate(ctx, "k"); !errors.Is(err, memtransport.ErrDisconnected) {
		t.Fatalf("Invalidate while disconnected: %v", err)
	}
	tr.Reconnect()
	eventually(t, "caching again", func() bool { return !c.Health().Degraded })
	if h := c.Health(); !h.Connected || h.LastFlushCause != "reconnect" {
		t.Fatalf("health after reconnect: %+v", h)
	}
	if _, err := c.GetOrLoad(ctx, "k", load("db2")); err != nil {
		t.Fatal(err)
	}
	mustGet(t, c, "k", "db2")
}

func TestDisconnectPolicyKeep(t *testing.T) {
	hub := memtransport.NewHub()
	c, tr := open(t, hub, quiet, core.WithPolicies(core.PolicyKeep, core.PolicyKeep, core.PolicyFlush))
	_ = c.Set("k", []byte("v"))
	tr.Disconnect(errors.New("gone"))
	eventually(t, "disconnected", func() bool { return !c.Health().Connected })
	mustGet(t, c, "k", "v")
	tr.Reconnect()
	eventually(t, "reconnected", func() bool { return c.Health().Connected })
	mustGet(t, c, "k", "v")
	if n := c.Stats().Flushes; n != 0 {
		t.Fatalf("flushes = %d under PolicyKeep", n)
	}
}

func TestBrokerRestartFlushesEveryone(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	_ = a.Set("k", []byte("v"))
	_ = b.Set("k", []byte("v"))
	hub.Restart()
	for _, c := range []*core.Cache{a, b} {
		eventually(t, "flush after restart", func() bool { return c.Health().LastFlushCause == "reconnect" && !c.Health().Degraded })
		if _, ok := c.Get("k"); ok {
			t.Fatal("entry survived a broker restart")
		}
	}
}

func TestSequenceGapFlushes(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, tb := open(t, hub, quiet)
	ctx := context.Background()
	_ = b.Set("unrelated", []byte("v"))
	if err := a.Invalidate(ctx, "first"); err != nil { // introduces a to b
		t.Fatal(err)
	}
	eventually(t, "b hears a", func() bool { return b.Stats().Received == 1 })
	tb.DropIncoming(1)
	if err := a.Invalidate(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	if err := a.Invalidate(ctx, "after"); err != nil {
		t.Fatal(err)
	}
	flushedForGap(t, b)
}

// flushedForGap waits until b counted one gap, and checks that b flushed
// for it (its entry "unrelated" is gone).
func flushedForGap(t *testing.T, b *core.Cache) {
	t.Helper()
	eventually(t, "gap detected", func() bool { return b.Stats().Gaps == 1 })
	if _, ok := b.Get("unrelated"); ok {
		t.Fatal("no flush after a gap")
	}
	if h := b.Health(); h.LastFlushCause != "gap" {
		t.Fatalf("flush cause %q", h.LastFlushCause)
	}
}

func TestGapPolicyKeep(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, tb := open(t, hub, quiet, core.WithPolicies(core.PolicyFlush, core.PolicyFlush, core.PolicyKeep))
	ctx := context.Background()
	_ = b.Set("unrelated", []byte("v"))
	_ = a.Invalidate(ctx, "first")
	eventually(t, "b hears a", func() bool { return b.Stats().Received == 1 })
	tb.DropIncoming(1)
	_ = a.Invalidate(ctx, "lost")
	_ = a.Invalidate(ctx, "after")
	eventually(t, "gap detected", func() bool { return b.Stats().Gaps == 1 })
	mustGet(t, b, "unrelated", "v")
}

// A lost last message is noticed through the next heartbeat.
func TestHeartbeatRevealsLostTail(t *testing.T) {
	hub := memtransport.NewHub()
	hb := core.WithHeartbeat(10*time.Millisecond, time.Second)
	a, _ := open(t, hub, hb)
	b, tb := open(t, hub, hb)
	ctx := context.Background()
	eventually(t, "b knows a", func() bool { return b.Health().Peers == 1 })
	_ = b.Set("unrelated", []byte("v"))
	tb.DropIncoming(1)
	if err := a.Invalidate(ctx, "lost"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "lost tail detected", func() bool { return b.Stats().Gaps >= 1 })
	if _, ok := b.Get("unrelated"); ok {
		t.Fatal("no flush after a lost tail")
	}
}

// When the instance's own heartbeats stop coming back, the link is silent:
// flush and stop caching; when traffic resumes, flush again and cache.
func TestSilentLinkDetected(t *testing.T) {
	hub := memtransport.NewHub()
	c, tr := open(t, hub, core.WithHeartbeat(10*time.Millisecond, 50*time.Millisecond))
	eventually(t, "own heartbeats flowing", func() bool { return c.Stats().IgnoredOwn > 0 })
	_ = c.Set("k", []byte("v"))
	tr.DropIncoming(1 << 30) // a one-way blackhole: the connection looks fine
	eventually(t, "silence detected", func() bool { return c.Health().Silent })
	if h := c.Health(); !h.Degraded || h.Healthy() || h.LastFlushCause != "silence" {
		t.Fatalf("health while silent: %+v", h)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("entry survived silence")
	}
	tr.StopDropping()
	eventually(t, "link resumes", func() bool { h := c.Health(); return !h.Silent && !h.Degraded })
	if h := c.Health(); h.LastFlushCause != "resumed" || !h.Healthy() {
		t.Fatalf("health after resume: %+v", h)
	}
}

// A peer first heard of with a high sequence number, after the peer table
// should be complete, had messages that were lost; a peer first heard of at
// its first message had none.
func TestUnknownPeerWithHistory(t *testing.T) {
	for _, drop := range []int{0, 1} {
		t.Run(fmt.Sprintf("dropped=%d", drop), func(t *testing.T) {
			hub := memtransport.NewHub()
			now := time.Unix(1_000_000, 0)
			var mu sync.Mutex
			clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
			// Heartbeats every hour: none happen during the test, but the
			// peer table counts as complete after the 3-hour timeout.
			b, tb := open(t, hub, core.WithHeartbeat(time.Hour, 0), core.WithClock(clock))
			mu.Lock()
			now = now.Add(4 * time.Hour)
			mu.Unlock()
			a, _ := open(t, hub, quiet)
			_ = b.Set("unrelated", []byte("v"))
			tb.DropIncoming(drop)
			ctx := context.Background()
			_ = a.Invalidate(ctx, "one")
			_ = a.Invalidate(ctx, "two")
			eventually(t, "b hears a", func() bool { return b.Stats().Received == uint64(2-drop) })
			if got := b.Stats().Gaps; got != uint64(drop) {
				t.Fatalf("gaps = %d, want %d", got, drop)
			}
			_, kept := b.Get("unrelated")
			if kept != (drop == 0) {
				t.Fatalf("unrelated entry kept = %v with %d lost messages", kept, drop)
			}
		})
	}
}

func TestTransportLossEventFlushes(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	_ = c.Set("k", []byte("v"))
	// A harness Backplane that reports a loss.
	lossy := &eventBackplane{Backplane: hub.New(ns)}
	l, err := core.Open(context.Background(), newStore(t), lossy, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_ = l.Set("k", []byte("v"))
	lossy.emit(core.Event{Kind: core.EventLoss, Err: errors.New("slow consumer")})
	if h := l.Health(); h.LastFlushCause != "loss" {
		t.Fatalf("flush cause %q", h.LastFlushCause)
	}
	if _, ok := l.Get("k"); ok {
		t.Fatal("entry survived a loss event")
	}
	mustGet(t, c, "k", "v")
}

// eventBackplane records its handler so a test can inject events.
type eventBackplane struct {
	core.Backplane
	h core.Handler
}

func (e *eventBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	e.h = h
	return e.Backplane.Subscribe(ctx, h)
}

func (e *eventBackplane) emit(ev core.Event) { e.h.HandleEvent(ev) }

func TestTTLEnforcedByEngine(t *testing.T) {
	hub := memtransport.NewHub()
	var mu = make(chan struct{}, 1)
	now := time.Unix(1_000_000, 0)
	clock := func() time.Time { mu <- struct{}{}; defer func() { <-mu }(); return now }
	advance := func(d time.Duration) { mu <- struct{}{}; now = now.Add(d); <-mu }
	c, _ := open(t, hub, quiet, core.WithTTL(100*time.Second, 0.5), core.WithClock(clock))
	for i := range 100 {
		_ = c.Set(string(rune('a'+i%26))+string(rune('0'+i/26)), []byte("v"))
	}
	_ = c.SetWithTTL("forever", []byte("v"), 0)
	_ = c.SetWithTTL("short", []byte("v"), time.Second)
	count := func() int {
		n := 0
		for i := range 100 {
			if _, ok := c.Get(string(rune('a'+i%26)) + string(rune('0'+i/26))); ok {
				n++
			}
		}
		return n
	}
	advance(49 * time.Second) // below TTL*(1-jitter)
	if n := count(); n != 100 {
		t.Fatalf("%d of 100 entries left before the jittered TTL could expire any", n)
	}
	if _, ok := c.Get("short"); ok {
		t.Fatal("an entry outlived its own TTL")
	}
	advance(102 * time.Second) // beyond TTL*(1+jitter)
	if n := count(); n != 0 {
		t.Fatalf("%d entries outlived TTL*(1+jitter)", n)
	}
	mustGet(t, c, "forever", "v")
}

func TestTTLJitterSpreads(t *testing.T) {
	hub := memtransport.NewHub()
	now := time.Unix(1_000_000, 0)
	var mu = make(chan struct{}, 1)
	clock := func() time.Time { mu <- struct{}{}; defer func() { <-mu }(); return now }
	c, _ := open(t, hub, quiet, core.WithTTL(100*time.Second, 0.5), core.WithClock(clock))
	for i := range 200 {
		_ = c.Set("k"+string(rune(i+'0')), []byte("v"))
	}
	mu <- struct{}{}
	now = now.Add(100 * time.Second)
	<-mu
	n := 0
	for i := range 200 {
		if _, ok := c.Get("k" + string(rune(i+'0'))); ok {
			n++
		}
	}
	// Expiries are uniform in [50s, 150s): at 100s about half are left.
	if n == 0 || n == 200 {
		t.Fatalf("%d of 200 entries left at TTL: jitter does not spread expiries", n)
	}
}

// slowBackplane makes its subscriber slow: each message waits before the
// engine sees it, so a backlog builds while the connection looks fine.
type slowBackplane struct {
	core.Backplane
	delay atomic.Int64
}

func (s *slowBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	return s.Backplane.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			time.Sleep(time.Duration(s.delay.Load())) // the fault itself, not synchronisation
			h.HandleMessage(p)
		},
		Event: h.HandleEvent,
	})
}

// A slow subscriber receives everything, late. Its own heartbeats come back
// older and older: past HeartbeatTimeout the link counts as silent.
func TestSlowSubscriberDetected(t *testing.T) {
	hub := memtransport.NewHub()
	slow := &slowBackplane{Backplane: hub.New(ns)}
	c, err := core.Open(context.Background(), newStore(t), slow, core.WithHeartbeat(10*time.Millisecond, 60*time.Millisecond), core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eventually(t, "own heartbeats flowing", func() bool { return c.Stats().IgnoredOwn > 0 })
	_ = c.Set("k", []byte("v"))
	// Each message waits longer than the timeout: no own message can come
	// back fresh while the fault lasts.
	slow.delay.Store(int64(100 * time.Millisecond))
	eventually(t, "backlog detected as silence", func() bool { return c.Health().Silent })
	if h := c.Health(); !h.Degraded || h.LastFlushCause != "silence" {
		t.Fatalf("health of a slow subscriber: %+v", h)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("entry survived")
	}
	slow.delay.Store(0)
	eventually(t, "caught up", func() bool { h := c.Health(); return !h.Silent && !h.Degraded })
}

// A peer that closes says goodbye: the others forget it without flushing.
func TestPeerLeavesCleanly(t *testing.T) {
	hub := memtransport.NewHub()
	hb := core.WithHeartbeat(10*time.Millisecond, 200*time.Millisecond)
	a, err := core.Open(context.Background(), newStore(t), hub.New(ns), hb, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := open(t, hub, hb)
	eventually(t, "b knows a", func() bool { return b.Health().Peers == 1 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b forgets a", func() bool { return b.Health().Peers == 0 })
	// Well past the heartbeat timeout: a's absence was no loss.
	deadline := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if s := b.Stats(); s.Gaps != 0 {
			t.Fatalf("b counted a clean leave as a loss: %+v (last flush %q)", s, b.Health().LastFlushCause)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A peer that goes quiet without leaving (it crashed, or cannot reach this
// instance although this instance's own link works) may have published
// invalidations that never arrived: flush.
func TestPeerLostFlushes(t *testing.T) {
	hub := memtransport.NewHub()
	hb := core.WithHeartbeat(10*time.Millisecond, 100*time.Millisecond)
	crashing := hub.New(ns)
	a, err := core.Open(context.Background(), newStore(t), crashing, hb, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := open(t, hub, hb)
	eventually(t, "b knows a", func() bool { return b.Health().Peers == 1 })
	_ = b.Set("k", []byte("v"))
	crashing.Disconnect(errors.New("crash")) // a's messages stop; b's own link is fine
	eventually(t, "b counts the lost peer", func() bool { return b.Stats().Gaps == 1 })
	if _, ok := b.Get("k"); ok {
		t.Fatal("entry survived a lost peer")
	}
	if h := b.Health(); h.Peers != 0 {
		t.Fatalf("b still lists the lost peer: %+v", h)
	}
}

// TestTTLAfterIdleClock reads after the read path's clock went to sleep
// (no reads for a while): the read must use the current time, not the time
// the clock stopped at.
func TestTTLAfterIdleClock(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet, core.WithTTL(time.Hour, 0))
	eventually(t, "the clock to sleep without reads", c.ClockAsleep)
	if err := c.SetWithTTL("k", []byte("v"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	set := time.Now()
	mustGet(t, c, "k", "v") // wakes the clock
	if c.ClockAsleep() {
		t.Fatal("a read did not wake the clock")
	}
	// Falling asleep again takes longer than the TTL.
	eventually(t, "the clock to sleep again", c.ClockAsleep)
	if time.Since(set) <= 50*time.Millisecond {
		t.Fatal("the clock fell asleep before the entry's TTL passed")
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("an entry outlived its TTL: the read used a clock that had stopped")
	}
	// Reads keep the clock running: an entry still expires.
	_ = c.SetWithTTL("k2", []byte("v"), 50*time.Millisecond)
	eventually(t, "an entry read continuously to expire", func() bool { _, ok := c.Get("k2"); return !ok })
}

// reorderBackplane is a memtransport Transport that declares publishing on
// several connections (so that an instance's messages may overtake one
// another), and that can hold back the delivery of one invalidation so
// that the next one overtakes it.
type reorderBackplane struct {
	*memtransport.Transport
	mu   sync.Mutex
	h    core.Handler
	hold string // the key whose invalidation to hold back
	held []byte
	// declares, when set, says so with Limits.Reorders instead of several
	// calls in flight.
	declares bool
}

func (r *reorderBackplane) Limits() core.Limits {
	l := r.Transport.Limits()
	if r.declares {
		l.Reorders = true
	} else {
		l.ConcurrentPublish = 4
	}
	return l
}

func (r *reorderBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	r.h = h
	return r.Transport.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			r.mu.Lock()
			defer r.mu.Unlock()
			if env, err := core.DecodeEnvelope(p); err == nil && r.hold != "" && slices.Contains(env.Keys, r.hold) {
				r.held, r.hold = slices.Clone(p), ""
				return
			}
			h.HandleMessage(p)
		},
		Event: h.HandleEvent,
	})
}

// holdBack holds back the invalidation of key.
func (r *reorderBackplane) holdBack(key string) { r.mu.Lock(); r.hold = key; r.mu.Unlock() }

// release delivers the message held back.
func (r *reorderBackplane) release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.h.HandleMessage(r.held)
}

// openReordering opens an instance over a reorderBackplane of hub.
func openReordering(t *testing.T, hub *memtransport.Hub, opts ...core.Option) (*core.Cache, *reorderBackplane) {
	t.Helper()
	rb := &reorderBackplane{Transport: hub.New(ns)}
	c, err := core.Open(context.Background(), newStore(t), rb, append([]core.Option{quiet, core.WithLogger(discard)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, rb
}

// introduce has a publish a first invalidation and waits until b has it:
// b then knows a as a peer.
func introduce(t *testing.T, a, b *core.Cache) {
	t.Helper()
	if err := a.Invalidate(context.Background(), "first"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b hears a", func() bool { return b.Stats().Received == 1 })
}

// overtake has a invalidate key, then "after", with b's delivery of key
// held back (rb is b's transport) so that "after" overtakes it; it returns
// once "after" has arrived.
func overtake(t *testing.T, a, b *core.Cache, rb *reorderBackplane, key string) {
	t.Helper()
	ctx := context.Background()
	received := b.Stats().Received
	rb.holdBack(key)
	_ = a.Invalidate(ctx, key)
	_ = a.Invalidate(ctx, "after")
	eventually(t, "the later message arrives", func() bool { return b.Stats().Received == received+1 })
}

// A message overtaken by the next one of the same instance, as happens when
// it publishes on several connections, is not a gap when it arrives within
// the reorder window; its keys are evicted when it does.
func TestOvertakenMessageIsNoGap(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := openReordering(t, hub)
	b, rb := openReordering(t, hub, core.WithReorderWindow(time.Hour))
	_ = b.Set("unrelated", []byte("v"))
	_ = b.Set("held", []byte("v"))
	introduce(t, a, b)
	overtake(t, a, b, rb, "held")
	rb.release()
	if s := b.Stats(); s.Received != 3 || s.Gaps != 0 {
		t.Fatalf("received %d, gaps %d; want 3 and none", s.Received, s.Gaps)
	}
	if _, ok := b.Get("held"); ok {
		t.Fatal("the overtaken message's key was not evicted")
	}
	mustGet(t, b, "unrelated", "v")
}

// A transport that declares Limits.Reorders (one call in flight, messages
// that still overtake one another, as over transports.Dual) gets the
// reorder window too.
func TestDeclaredReorderingIsNoGap(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := openReordering(t, hub)
	rb := &reorderBackplane{Transport: hub.New(ns), declares: true}
	b, err := core.Open(context.Background(), newStore(t), rb, quiet, core.WithLogger(discard), core.WithReorderWindow(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	introduce(t, a, b)
	overtake(t, a, b, rb, "held")
	rb.release()
	if s := b.Stats(); s.Received != 3 || s.Gaps != 0 {
		t.Fatalf("received %d, gaps %d; want 3 and none", s.Received, s.Gaps)
	}
}

// An overtaken message that does not arrive within the reorder window is
// lost: the receiver flushes.
func TestOvertakenMessageLostAfterWindow(t *testing.T) {
	hub := memtransport.NewHub()
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	a, _ := openReordering(t, hub)
	b, rb := openReordering(t, hub, core.WithReorderWindow(20*time.Millisecond), core.WithClock(clock))
	_ = b.Set("unrelated", []byte("v"))
	introduce(t, a, b)
	overtake(t, a, b, rb, "lost")
	// b's clock stands still: the window has not passed, whatever the
	// timers do. Let the timer look twice (it finds the window open and
	// waits again).
	eventually(t, "the reorder timer looks again", func() bool { return b.ReorderChecks() >= 2 })
	if g := b.Stats().Gaps; g != 0 {
		t.Fatalf("%d gaps before the reorder window passed", g)
	}
	mu.Lock()
	now = now.Add(20 * time.Millisecond)
	mu.Unlock()
	flushedForGap(t, b)
}

// A new peer's first message, overtaken by its second at a receiver whose
// peer table is complete, is waited for like any other.
func TestNewPeerOvertakenIsNoGap(t *testing.T) {
	hub := memtransport.NewHub()
	now := time.Unix(1_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, rb := openReordering(t, hub, core.WithHeartbeat(time.Hour, 0), core.WithReorderWindow(time.Hour), core.WithClock(clock))
	a, _ := openReordering(t, hub)
	mu.Lock()
	now = now.Add(4 * time.Hour) // b's peer table is complete
	mu.Unlock()
	_ = b.Set("unrelated", []byte("v"))
	overtake(t, a, b, rb, "held")
	rb.release()
	if g := b.Stats().Gaps; g != 0 {
		t.Fatalf("%d gaps: the overtaken first message of a new peer counted as lost", g)
	}
	mustGet(t, b, "unrelated", "v")
}

// A message still missing when the link comes back is lost, also when the
// reconnect itself does not flush (OnReconnect=keep).
func TestMissingAtReconnectIsAGap(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := openReordering(t, hub)
	b, rb := openReordering(t, hub, core.WithReorderWindow(time.Hour),
		core.WithPolicies(core.PolicyKeep, core.PolicyKeep, core.PolicyFlush))
	_ = b.Set("unrelated", []byte("v"))
	introduce(t, a, b)
	overtake(t, a, b, rb, "lost")
	rb.h.HandleEvent(core.Event{Kind: core.EventDisconnected, Time: time.Now()})
	rb.h.HandleEvent(core.Event{Kind: core.EventReconnected, Time: time.Now()})
	if g := b.Stats().Gaps; g != 1 {
		t.Fatalf("%d gaps; want 1: the missing message was forgotten at the reconnect", g)
	}
	flushedForGap(t, b)
}

// A peer that says goodbye while one of its messages is missing: the
// message cannot be waited for any more, so it is lost.
func TestLeaveWithMissingIsAGap(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := openReordering(t, hub, core.WithHeartbeat(time.Hour, 0)) // heartbeats on: a says goodbye
	b, rb := openReordering(t, hub, core.WithReorderWindow(time.Hour))
	_ = b.Set("unrelated", []byte("v"))
	introduce(t, a, b)
	rb.holdBack("lost")
	_ = a.Invalidate(context.Background(), "lost")
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the goodbye arrives", func() bool { return b.Stats().Received == 2 })
	flushedForGap(t, b)
}

// failingBackplane fails the next Publish without sending anything, as a
// broker that did not take a round would.
type failingBackplane struct {
	*memtransport.Transport
	failNext atomic.Bool
}

func (f *failingBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	if f.failNext.Swap(false) {
		return errors.New("broker did not take it")
	}
	return f.Transport.Publish(ctx, payloads...)
}

// A round that failed is sent again ahead of the next one: its peers do
// not take its number for a loss, and its keys still reach them.
func TestFailedRoundIsSentAgain(t *testing.T) {
	hub := memtransport.NewHub()
	fb := &failingBackplane{Transport: hub.New(ns)}
	a, err := core.Open(context.Background(), newStore(t), fb, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, _ := open(t, hub, quiet)
	introduce(t, a, b)
	_ = b.Set("lost", []byte("v"))
	_ = b.Set("other", []byte("v"))
	fb.failNext.Store(true)
	if err := a.Invalidate(context.Background(), "lost"); err == nil {
		t.Fatal("the failed round returned nil")
	}
	if err := a.Invalidate(context.Background(), "next"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the failed round's key evicted on the peer", func() bool { _, ok := b.Get("lost"); return !ok })
	if s := b.Stats(); s.Gaps != 0 || s.Flushes != 0 {
		t.Fatalf("the peer counted %d gaps and %d flushes for a round sent again", s.Gaps, s.Flushes)
	}
	mustGet(t, b, "other", "v")
}
