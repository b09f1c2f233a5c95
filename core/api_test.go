package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestBadInput(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet, func(o *core.Options) { o.MaxKeysPerCall = 3 })
	ctx := context.Background()
	long := strings.Repeat("x", core.MaxKeyLen+1)
	max := strings.Repeat("x", core.MaxKeyLen)
	cases := []struct {
		name string
		err  error
		call func() error
	}{
		{"Invalidate empty key", core.ErrEmptyKey, func() error { return c.Invalidate(ctx, "a", "") }},
		{"Invalidate long key", core.ErrKeyTooLong, func() error { return c.Invalidate(ctx, long) }},
		{"Invalidate too many", core.ErrTooManyKeys, func() error { return c.Invalidate(ctx, "a", "b", "c", "d") }},
		{"Set empty key", core.ErrEmptyKey, func() error { return c.Set("", nil) }},
		{"Set long key", core.ErrKeyTooLong, func() error { return c.Set(long, nil) }},
		{"SetWithTTL negative", core.ErrInvalidOption, func() error { return c.SetWithTTL("k", nil, -time.Second) }},
		{"Delete empty key", core.ErrEmptyKey, func() error { return c.Delete("") }},
		{"GetOrLoad empty key", core.ErrEmptyKey, func() error { _, err := c.GetOrLoad(ctx, "", load("v")); return err }},
		{"GetOrLoad long key", core.ErrKeyTooLong, func() error { _, err := c.GetOrLoad(ctx, long, load("v")); return err }},
		{"GetOrLoad nil loader", core.ErrNilLoader, func() error { _, err := c.GetOrLoad(ctx, "k", nil); return err }},
		{"typed nil loader", core.ErrNilLoader, func() error {
			_, err := core.NewTyped[int](c).GetOrLoad(ctx, "k", nil)
			return err
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, tc.err) {
				t.Fatalf("got %v, want %v", err, tc.err)
			}
		})
	}
	// The longest key is fine everywhere.
	if err := c.Invalidate(ctx, max); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(max, []byte("v")); err != nil {
		t.Fatal(err)
	}
	mustGet(t, c, max, "v")
	if err := c.Invalidate(ctx); err != nil {
		t.Fatalf("Invalidate with no keys: %v", err)
	}
}

func TestLifecycleErrors(t *testing.T) {
	hub := memtransport.NewHub()
	c, err := core.New(newStore(t), hub.New(ns), quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := c.Invalidate(ctx, "k"); !errors.Is(err, core.ErrNotStarted) {
		t.Fatalf("Invalidate before Start: %v", err)
	}
	if _, err := c.GetOrLoad(ctx, "k", load("v")); !errors.Is(err, core.ErrNotStarted) {
		t.Fatalf("GetOrLoad before Start: %v", err)
	}
	if err := c.Set("k", nil); !errors.Is(err, core.ErrNotStarted) {
		t.Fatalf("Set before Start: %v", err)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("hit before Start")
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err == nil {
		t.Fatal("second Start succeeded")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for name, err := range map[string]error{
		"Invalidate": c.Invalidate(ctx, "k"),
		"Clear":      c.Clear(ctx),
		"Set":        c.Set("k", nil),
		"Delete":     c.Delete("k"),
		"Start":      c.Start(ctx),
		"GetOrLoad":  func() error { _, err := c.GetOrLoad(ctx, "k", load("v")); return err }(),
	} {
		if !errors.Is(err, core.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	if h := c.Health(); h.Started {
		t.Fatal("health says started after Close")
	}
	// Close without Start closes the transport and store too.
	tr := hub.New(ns)
	c2, _ := core.New(newStore(t), tr, quiet)
	if err := c2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctx, []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("transport not closed with the cache: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	hub := memtransport.NewHub()
	cases := map[string]core.Option{
		"negative TTL":           core.WithTTL(-1, 0),
		"jitter 1":               core.WithTTL(time.Minute, 1),
		"negative jitter":        core.WithTTL(time.Minute, -0.1),
		"negative heartbeat":     core.WithHeartbeat(-time.Second, 0),
		"timeout below interval": core.WithHeartbeat(time.Second, time.Second),
		"negative timeout":       core.WithHeartbeat(time.Second, -1),
		"unknown policy":         core.WithPolicies(core.Policy(7), core.PolicyFlush, core.PolicyFlush),
		"zero queue":             core.WithQueueSize(0),
		"zero publish timeout":   core.WithPublishTimeout(0),
		"nil codec":              core.WithCodec(nil),
		"zero MaxKeysPerCall":    func(o *core.Options) { o.MaxKeysPerCall = 0 },
		"zero MaxBatchKeys":      func(o *core.Options) { o.MaxBatchKeys = 0 },
		"negative MaxPayload":    func(o *core.Options) { o.MaxPayload = -1 },
		"MaxPayload below a key": func(o *core.Options) { o.MaxPayload = 100 },
		"zero CloseTimeout":      func(o *core.Options) { o.CloseTimeout = 0 },
		"zero Options wholesale": core.WithOptions(core.Options{}),
	}
	for name, opt := range cases {
		t.Run(name, func(t *testing.T) {
			c, err := core.New(newStore(t), hub.New(ns), opt)
			if !errors.Is(err, core.ErrInvalidOption) {
				if c != nil {
					c.Close()
				}
				t.Fatalf("got %v, want ErrInvalidOption", err)
			}
		})
	}
	if _, err := core.New(nil, hub.New(ns)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil store: %v", err)
	}
	if _, err := core.New(newStore(t), nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("nil backplane: %v", err)
	}
	small := memtransport.NewHub(memtransport.WithMaxPayload(200))
	if _, err := core.New(newStore(t), small.New(ns)); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("transport limit below one key: %v", err)
	}
	good := core.DefaultOptions()
	if err := good.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

// gateBackplane holds Publish calls until released and records payloads.
type gateBackplane struct {
	core.Backplane
	mu         sync.Mutex
	gate       chan struct{}
	calls      int
	payloads   [][]byte
	entered    chan struct{}
	concurrent int // Limits.ConcurrentPublish
}

func (g *gateBackplane) Limits() core.Limits {
	l := g.Backplane.Limits()
	l.ConcurrentPublish = g.concurrent
	return l
}

func (g *gateBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	g.mu.Lock()
	g.calls++
	for _, p := range payloads {
		g.payloads = append(g.payloads, append([]byte(nil), p...))
	}
	gate := g.gate
	g.mu.Unlock()
	if gate != nil {
		select {
		case g.entered <- struct{}{}:
		default:
		}
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return g.Backplane.Publish(ctx, payloads...)
}

func (g *gateBackplane) stats() (calls int, payloads [][]byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls, append([][]byte(nil), g.payloads...)
}

func TestGroupCommitCoalescesAndDeduplicates(t *testing.T) {
	hub := memtransport.NewHub()
	gate := &gateBackplane{Backplane: hub.New(ns), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	a, err := core.Open(context.Background(), newStore(t), gate, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := open(t, hub, quiet)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() { _ = a.Invalidate(ctx, "first") })
	<-gate.entered // the first round is on the wire; everything else queues
	const callers = 100
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() { errs <- a.Invalidate(ctx, "dup", fmt.Sprintf("k%d", i)) })
	}
	eventually(t, "callers queued", func() bool { return a.Queued() == callers+1 })
	close(gate.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	calls, payloads := gate.stats()
	if calls != 2 || len(payloads) != 2 {
		t.Fatalf("%d publish calls with %d payloads for %d Invalidate calls; want 2 and 2", calls, len(payloads), callers+1)
	}
	if s := a.Stats(); s.KeysPublished != callers+2 {
		t.Fatalf("keys published %d, want %d (de-duplicated)", s.KeysPublished, callers+2)
	}
	eventually(t, "peer got every key", func() bool { return b.Stats().KeysEvicted == callers+2 })
}

func TestBatchesSplitToPayloadLimit(t *testing.T) {
	const limit = 2000
	hub := memtransport.NewHub(memtransport.WithMaxPayload(limit))
	gate := &gateBackplane{Backplane: hub.New(ns)}
	a, err := core.Open(context.Background(), newStore(t), gate, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := open(t, hub, quiet)
	keys := make([]string, 600)
	for i := range keys {
		keys[i] = fmt.Sprintf("product:%06d", i)
		_ = b.Set(keys[i], []byte("v"))
	}
	keys = append(keys, strings.Repeat("L", core.MaxKeyLen)) // one long key
	if err := a.Invalidate(context.Background(), keys...); err != nil {
		t.Fatal(err)
	}
	_, payloads := gate.stats()
	if len(payloads) < 5 {
		t.Fatalf("%d payloads for ~9 KB of keys under a %d-byte limit", len(payloads), limit)
	}
	for i, p := range payloads {
		if len(p) > limit {
			t.Fatalf("payload %d is %d bytes, over the limit %d", i, len(p), limit)
		}
	}
	eventually(t, "peer evicted all", func() bool { return b.Stats().KeysEvicted == uint64(len(keys)) })
	if s := b.Stats(); s.Gaps != 0 {
		t.Fatalf("split batch looked like a gap: %+v", s)
	}
}

func TestUndecodablePayloadsAreDropped(t *testing.T) {
	hub := memtransport.NewHub()
	b, _ := open(t, hub, quiet)
	_ = b.Set("k", []byte("v"))
	rogue := hub.New(ns)
	defer rogue.Close()
	for _, p := range [][]byte{nil, []byte("hello"), make([]byte, 100)} {
		if err := rogue.Publish(context.Background(), p); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "decode errors counted", func() bool { return b.Stats().DecodeErrors == 3 })
	mustGet(t, b, "k", "v")
	if h := b.Health(); !h.Healthy() {
		t.Fatalf("health after payloads that are no envelope: %+v", h)
	}
	// An envelope of another format version is a peer this instance
	// cannot hear: Health says so.
	future, err := (&core.Envelope{Op: core.OpInvalidate, Source: core.NewSourceID(), Seq: 1, Sent: time.Now(), Keys: []string{"k"}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	future[2] = 9 // the format version
	if err := rogue.Publish(context.Background(), future); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the envelope counted", func() bool { return b.Stats().DecodeErrors == 4 })
	mustGet(t, b, "k", "v")
	h := b.Health()
	if h.Healthy() || !h.Rejecting || !strings.Contains(h.RejectCause, "version") || h.Rejected != 4 {
		t.Fatalf("health after an envelope of another version: %+v", h)
	}
}

type product struct {
	ID    int
	Name  string
	Price float64
}

func TestTyped(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	products := core.NewTyped[product](c)
	ctx := context.Background()
	want := product{ID: 1, Name: "lamp", Price: 9.5}
	calls := 0
	loader := func(context.Context) (product, error) { calls++; return want, nil }
	for range 3 {
		got, err := products.GetOrLoad(ctx, "p:1", loader)
		if err != nil || got != want {
			t.Fatalf("GetOrLoad: %+v, %v", got, err)
		}
	}
	if calls != 1 {
		t.Fatalf("loader called %d times", calls)
	}
	got, ok, err := products.Get("p:1")
	if err != nil || !ok || got != want {
		t.Fatalf("Get: %+v %v %v", got, ok, err)
	}
	if err := products.Set("p:2", product{ID: 2}); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := products.Get("p:2"); !ok {
		t.Fatal("typed Set not kept")
	}
	// A cached value of another shape is an error, and is dropped.
	_ = c.Set("p:3", []byte("not json"))
	if _, _, err := products.Get("p:3"); err == nil {
		t.Fatal("undecodable cached value: no error")
	}
	if _, ok := c.Get("p:3"); ok {
		t.Fatal("undecodable cached value kept")
	}
	if _, err := core.NewTyped[chan int](c).GetOrLoad(ctx, "ch", func(context.Context) (chan int, error) { return make(chan int), nil }); err == nil {
		t.Fatal("unencodable value: no error")
	}
}

func TestPublishErrorReturnedAndCounted(t *testing.T) {
	hub := memtransport.NewHub()
	c, tr := open(t, hub, quiet, core.WithPolicies(core.PolicyKeep, core.PolicyFlush, core.PolicyFlush))
	tr.Disconnect(errors.New("cut"))
	err := c.Invalidate(context.Background(), "k")
	if !errors.Is(err, memtransport.ErrDisconnected) {
		t.Fatalf("got %v", err)
	}
	if n := c.Stats().PublishErrors; n != 1 {
		t.Fatalf("PublishErrors = %d", n)
	}
	tr.Reconnect()
	eventually(t, "reconnected", func() bool { return c.Health().Connected })
	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
}

func TestInvalidateHonoursContext(t *testing.T) {
	hub := memtransport.NewHub()
	gate := &gateBackplane{Backplane: hub.New(ns), gate: make(chan struct{}), entered: make(chan struct{}, 1)}
	c, err := core.Open(context.Background(), newStore(t), gate, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Invalidate(ctx, "k") }()
	<-gate.entered
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	close(gate.gate)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}

// Every Invalidate that returned nil before or during Close reached the
// peer: Close drains, it does not drop.
func TestCloseDrainsPendingPublishes(t *testing.T) {
	hub := memtransport.NewHub()
	a, err := core.Open(context.Background(), newStore(t), hub.New(ns), quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := open(t, hub, quiet)
	n := 20000
	if testing.Short() {
		n = 2000
	}
	var ok sync.Map
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				k := fmt.Sprintf("k%d", i)
				if a.Invalidate(context.Background(), k) == nil {
					ok.Store(k, true)
				}
			}
		})
	}
	eventually(t, "publishing under way", func() bool { return a.Stats().KeysPublished > 100 })
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	returned := 0
	ok.Range(func(any, any) bool { returned++; return true })
	eventually(t, "peer got every key that returned nil", func() bool { return b.Stats().KeysEvicted >= uint64(returned) })
	if s := a.Stats(); s.KeysPublished != uint64(returned) {
		t.Fatalf("published %d keys, %d calls returned nil", s.KeysPublished, returned)
	}
}

// shrinkingBackplane reports a smaller limit once subscribed, as a
// transport that learns the server's limit on connect does.
type shrinkingBackplane struct {
	core.Backplane
	after      int
	subscribed bool
}

func (s *shrinkingBackplane) Subscribe(ctx context.Context, h core.Handler) error {
	s.subscribed = true
	return s.Backplane.Subscribe(ctx, h)
}

func (s *shrinkingBackplane) Limits() core.Limits {
	if s.subscribed {
		return core.Limits{MaxPayload: s.after}
	}
	return s.Backplane.Limits()
}

func TestLimitReadAgainAfterSubscribe(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithMaxPayload(1500))
	gate := &gateBackplane{Backplane: &shrinkingBackplane{Backplane: hub.New(ns), after: 1500}}
	// The hub enforces 1500 bytes; the transport claims 1 MiB until
	// subscribed: the engine must split by the later, smaller limit.
	gate.Backplane.(*shrinkingBackplane).Backplane = &claimBackplane{Backplane: gate.Backplane.(*shrinkingBackplane).Backplane, max: 1 << 20}
	c, err := core.Open(context.Background(), newStore(t), gate, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	keys := make([]string, 300)
	for i := range keys {
		keys[i] = fmt.Sprintf("key-number-%04d", i)
	}
	if err := c.Invalidate(context.Background(), keys...); err != nil {
		t.Fatalf("the engine kept the limit read before Subscribe: %v", err)
	}
	_, payloads := gate.stats()
	for _, p := range payloads {
		if len(p) > 1500 {
			t.Fatalf("payload of %d bytes", len(p))
		}
	}

	tiny := &shrinkingBackplane{Backplane: hub.New(ns), after: 100}
	c2, err := core.New(newStore(t), tiny, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Start(context.Background()); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("a limit below one key after Subscribe: %v", err)
	}
}

// claimBackplane claims a limit of max bytes.
type claimBackplane struct {
	core.Backplane
	max int
}

func (c *claimBackplane) Limits() core.Limits { return core.Limits{MaxPayload: c.max} }

// cancellingBackplane's Publish takes a moment and honours its context.
type cancellingBackplane struct{ core.Backplane }

func (s cancellingBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(200 * time.Microsecond):
		return s.Backplane.Publish(ctx, payloads...)
	}
}

// A caller whose context ends during its own round ends that round only:
// the next caller's round, with a context that does not end, succeeds.
func TestCancelledRoundDoesNotFailTheNext(t *testing.T) {
	hub := memtransport.NewHub()
	c, err := core.Open(context.Background(), newStore(t), &cancellingBackplane{hub.New(ns)}, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%5)*50*time.Microsecond)
		_ = c.Invalidate(ctx, "cancelled")
		cancel()
		if err := c.Invalidate(context.Background(), "next"); err != nil {
			t.Fatalf("iteration %d: the round after a cancelled one failed: %v", i, err)
		}
	}
}

// gatedSender is a core.Sender over memtransport whose confirmations wait
// for a gate: Send delivers at once, confirm returns once the gate opens (or
// its context ends). Publish is Send and confirm. It declares concurrent as
// Limits.ConcurrentPublish.
type gatedSender struct {
	*memtransport.Transport
	gate       chan struct{}
	concurrent int
	sends      atomic.Int32
	waiting    atomic.Int32
	// hold, if not nil, holds every Send until it is closed.
	hold chan struct{}
}

func (g *gatedSender) Limits() core.Limits {
	l := g.Transport.Limits()
	l.ConcurrentPublish = g.concurrent
	return l
}

func (g *gatedSender) Publish(ctx context.Context, payloads ...[]byte) error {
	confirm, err := g.Send(ctx, payloads...)
	if err != nil {
		return err
	}
	return confirm(ctx)
}

func (g *gatedSender) Send(ctx context.Context, payloads ...[]byte) (func(context.Context) error, error) {
	g.sends.Add(1)
	if g.hold != nil {
		<-g.hold
	}
	if err := g.Transport.Publish(ctx, payloads...); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		g.waiting.Add(1)
		defer g.waiting.Add(-1)
		select {
		case <-g.gate:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}, nil
}

// openGated opens an instance over gs, without heartbeats, closed when the
// test ends.
func openGated(t *testing.T, gs *gatedSender) *core.Cache {
	t.Helper()
	a, err := core.Open(context.Background(), newStore(t), gs, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// With a Sender, an idle instance's next round goes out while the previous
// one waits for its confirmation; each caller returns once its own round is
// confirmed, and a caller whose context ends stops waiting without ending
// anyone else's round.
func TestSenderOverlapsRounds(t *testing.T) {
	hub := memtransport.NewHub()
	gs := &gatedSender{Transport: hub.New(ns), gate: make(chan struct{}), concurrent: 4}
	a := openGated(t, gs)
	b, _ := open(t, hub, quiet)
	_ = b.Set("k1", []byte("v"))
	_ = b.Set("k2", []byte("v"))
	_ = b.Set("k3", []byte("v"))

	first := make(chan error, 1)
	go func() { first <- a.Invalidate(context.Background(), "k1") }()
	eventually(t, "k1 evicted on the peer before its confirmation", func() bool { _, ok := b.Get("k1"); return !ok })
	eventually(t, "the first round waits for its confirmation", func() bool { return gs.waiting.Load() == 1 })

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- a.Invalidate(ctx, "k2") }()
	eventually(t, "k2 sent while the first round waits", func() bool { _, ok := b.Get("k2"); return !ok })
	eventually(t, "both rounds wait", func() bool { return gs.waiting.Load() == 2 })
	cancel()
	if err := <-second; !errors.Is(err, context.Canceled) {
		t.Fatalf("second caller: %v; want context.Canceled", err)
	}
	select {
	case err := <-first:
		t.Fatalf("the first caller returned (%v) before its confirmation", err)
	default:
	}

	third := make(chan error, 1)
	go func() { third <- a.Invalidate(context.Background(), "k3") }()
	eventually(t, "k3 sent", func() bool { _, ok := b.Get("k3"); return !ok })
	close(gs.gate)
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	if err := <-third; err != nil {
		t.Fatalf("third caller: %v", err)
	}
	// The cancelled round's message goes out again with the third round
	// (a failed round is sent again, so that no peer takes its number for
	// a loss): three messages confirmed, one round failed.
	if s := a.Stats(); s.Published != 3 || s.PublishErrors != 1 {
		t.Fatalf("published %d, errors %d; want 3 confirmed and 1 failed (the cancelled round)", s.Published, s.PublishErrors)
	}
}

// A Sender that declares Limits.ConcurrentPublish 1 gets one round at a
// time: a call that arrives while a round waits for its confirmation queues
// behind it instead of being sent.
func TestSenderOneRoundAtATime(t *testing.T) {
	hub := memtransport.NewHub()
	gs := &gatedSender{Transport: hub.New(ns), gate: make(chan struct{}), concurrent: 1}
	a := openGated(t, gs)
	ctx := context.Background()
	errs := make(chan error, 2)
	go func() { errs <- a.Invalidate(ctx, "k1") }()
	eventually(t, "the first round waits for its confirmation", func() bool { return gs.waiting.Load() == 1 })
	go func() { errs <- a.Invalidate(ctx, "k2") }()
	eventually(t, "k2 queued", func() bool { return a.Queued() == 2 })
	if n := gs.sends.Load(); n != 1 {
		t.Fatalf("%d rounds sent while the first waits for its confirmation; want 1", n)
	}
	close(gs.gate)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := gs.sends.Load(); n != 2 {
		t.Fatalf("%d rounds sent; want 2", n)
	}
}

// Over a Sender, rounds wait for their confirmations on a context they
// share, which a caller that leaves abandons: the other rounds wait again,
// and a caller that leaves after that still stops waiting at once.
func TestSenderCallerLeavesAfterAnotherLeft(t *testing.T) {
	hub := memtransport.NewHub()
	gs := &gatedSender{Transport: hub.New(ns), gate: make(chan struct{}), concurrent: 4}
	a := openGated(t, gs)
	actx, acancel := context.WithCancel(context.Background())
	bctx, bcancel := context.WithCancel(context.Background())
	defer acancel()
	defer bcancel()
	first, second := make(chan error, 1), make(chan error, 1)
	go func() { first <- a.Invalidate(actx, "k1") }()
	eventually(t, "the first round waits", func() bool { return gs.waiting.Load() == 1 })
	go func() { second <- a.Invalidate(bctx, "k2") }()
	eventually(t, "both rounds wait", func() bool { return gs.waiting.Load() == 2 })
	acancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v; want context.Canceled", err)
	}
	eventually(t, "the second round waits again", func() bool { return gs.waiting.Load() == 1 })
	select {
	case err := <-second:
		t.Fatalf("the second caller returned (%v) when the first left", err)
	default:
	}
	bcancel()
	select {
	case err := <-second:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("second caller: %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second caller still waits after it left")
	}
	close(gs.gate)
	if err := a.Invalidate(context.Background(), "k3"); err != nil {
		t.Fatal(err)
	}
}

// Calls that queue while a round is being sent go out together in the
// next round.
func TestCallsQueuedDuringASendGoOutTogether(t *testing.T) {
	hub := memtransport.NewHub()
	gs := &gatedSender{Transport: hub.New(ns), gate: make(chan struct{}), hold: make(chan struct{})}
	close(gs.gate) // confirmations do not wait
	a := openGated(t, gs)
	ctx := context.Background()
	errs := make(chan error, 3)
	go func() { errs <- a.Invalidate(ctx, "k1") }()
	eventually(t, "the first round is being sent", func() bool { return gs.sends.Load() == 1 })
	go func() { errs <- a.Invalidate(ctx, "k2") }()
	go func() { errs <- a.Invalidate(ctx, "k3") }()
	eventually(t, "k2 and k3 queued", func() bool { return a.Queued() == 3 })
	close(gs.hold)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := gs.sends.Load(); n != 2 {
		t.Fatalf("%d rounds sent; want 2 (k1, then k2 and k3 together)", n)
	}
}

// Many callers on a queue of one, without heartbeats (nothing else wakes
// the publisher): every call completes. A caller that finds the publish
// token free but others queued must make sure someone publishes them;
// otherwise their callers wait until their contexts end, and Close waits
// for them forever.
func TestSmallQueueNeverStalls(t *testing.T) {
	hub := memtransport.NewHub()
	// Not closed by a cleanup: with the stall, Close would never return.
	c, err := core.Open(context.Background(), newStore(t), hub.New(ns), quiet, core.WithQueueSize(1), core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var stalled atomic.Int64
	// Load for two seconds: the stall needs an unlucky interleaving.
	end := time.Now().Add(2 * time.Second)
	for g := range 16 {
		wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				if err := c.Invalidate(ctx, fmt.Sprintf("k%d-%d", g, i%7)); err != nil {
					stalled.Add(1)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	if n := stalled.Load(); n > 0 {
		t.Fatalf("%d calls failed: requests sat in the queue with nobody publishing them", n)
	}
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Close did not return: a request was left in the queue")
	}
}

// Keys repeated within a call and across calls of a round are published
// once.
func TestRoundDeduplicatesKeys(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	if err := a.Invalidate(context.Background(), "x", "y", "x", "z", "y"); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.KeysPublished != 3 || s.Published != 1 {
		t.Fatalf("published %d keys in %d messages; want 3 in 1", s.KeysPublished, s.Published)
	}
}

// openHeld opens an instance without heartbeats over bp, with a publish
// timeout far longer than the test holds any Publish call of bp.
func openHeld(t *testing.T, bp core.Backplane) *core.Cache {
	t.Helper()
	c, err := core.Open(context.Background(), newStore(t), bp, quiet, core.WithLogger(discard), core.WithPublishTimeout(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Over a transport that publishes on several connections, an idle
// instance's next round does not wait for the round in flight; beyond
// Limits.ConcurrentPublish rounds, calls queue and coalesce as usual.
func TestConcurrentRoundsOverlap(t *testing.T) {
	hub := memtransport.NewHub()
	g := &gateBackplane{Backplane: hub.New(ns), gate: make(chan struct{}), entered: make(chan struct{}, 8), concurrent: 2}
	a := openHeld(t, g)
	ctx := context.Background()
	errs := make(chan error, 3)
	for _, k := range []string{"k1", "k2"} {
		go func() { errs <- a.Invalidate(ctx, k) }()
		select {
		case <-g.entered:
		case <-time.After(10 * time.Second):
			t.Fatalf("the round of %s did not start while the one before it was in flight", k)
		}
	}
	go func() { errs <- a.Invalidate(ctx, "k3") }()
	eventually(t, "k3 queued", func() bool { return a.Queued() == 3 })
	if calls, _ := g.stats(); calls != 2 {
		t.Fatalf("%d Publish calls with two rounds in flight; want 2 (a third waits)", calls)
	}
	close(g.gate)
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if calls, _ := g.stats(); calls != 3 {
		t.Fatalf("%d Publish calls; want 3", calls)
	}
}

// stepBackplane holds each Publish call until the test releases that call
// (numbered from 1 in the order the calls start).
type stepBackplane struct {
	core.Backplane
	concurrent int
	mu         sync.Mutex
	gates      []chan struct{}
	started    chan int
}

func (s *stepBackplane) Limits() core.Limits {
	l := s.Backplane.Limits()
	l.ConcurrentPublish = s.concurrent
	return l
}

func (s *stepBackplane) gate(n int) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.gates) < n {
		s.gates = append(s.gates, make(chan struct{}))
	}
	return s.gates[n-1]
}

func (s *stepBackplane) Publish(ctx context.Context, payloads ...[]byte) error {
	s.mu.Lock()
	n := len(s.gates) + 1
	s.mu.Unlock()
	g := s.gate(n)
	s.started <- n
	select {
	case <-g:
	case <-ctx.Done():
		return ctx.Err()
	}
	return s.Backplane.Publish(ctx, payloads...)
}

// steps drives an instance over a stepBackplane: each call in a goroutine
// of its own, and the Publish calls they start, one at a time.
type steps struct {
	t    *testing.T
	s    *stepBackplane
	c    *core.Cache
	errs chan error
}

func newSteps(t *testing.T, concurrent int) *steps {
	s := &stepBackplane{Backplane: memtransport.NewHub().New(ns), concurrent: concurrent, started: make(chan int, 16)}
	return &steps{t: t, s: s, c: openHeld(t, s), errs: make(chan error, 16)}
}

// invalidate calls Invalidate of key in a goroutine of its own.
func (x *steps) invalidate(key string) {
	go func() { x.errs <- x.c.Invalidate(context.Background(), key) }()
}

// started waits for Publish call number want to start.
func (x *steps) started(want int) {
	x.t.Helper()
	select {
	case n := <-x.s.started:
		if n != want {
			x.t.Fatalf("Publish call %d started; want %d", n, want)
		}
	case <-time.After(10 * time.Second):
		x.t.Fatalf("Publish call %d did not start", want)
	}
}

// fill starts a call for each of keys, each once the previous one's
// Publish call started (they are Publish calls 1 to len(keys)).
func (x *steps) fill(keys ...string) {
	x.t.Helper()
	for i, k := range keys {
		x.invalidate(k)
		x.started(i + 1)
	}
}

// returned waits for n calls to return nil.
func (x *steps) returned(n int) {
	x.t.Helper()
	for range n {
		if err := <-x.errs; err != nil {
			x.t.Fatal(err)
		}
	}
}

// Calls that queued behind a round go out in a round of their own that
// overlaps the rounds in flight, as an idle caller's would, when fewer
// than Limits.ConcurrentPublish rounds are in flight.
func TestQueuedRoundsOverlap(t *testing.T) {
	x := newSteps(t, 3)
	x.fill("k1", "k2", "k3") // two overlapping rounds and the token holder's
	x.invalidate("k4")
	x.invalidate("k5")
	eventually(t, "k4 and k5 queued", func() bool { return x.c.Queued() == 5 })
	close(x.s.gate(1)) // k1's round ends: two in flight
	x.returned(1)
	close(x.s.gate(3)) // the token holder's ends: k4 and k5 go out, overlapping k2's
	x.started(4)
	// The round of k4 and k5 released the token: the next caller does
	// not wait for it.
	x.invalidate("k6")
	x.started(5)
	close(x.s.gate(2))
	close(x.s.gate(4))
	close(x.s.gate(5))
	x.returned(5)
}

// A caller that cancels its overlapping round ends that round only: the
// round of another caller, in flight at the same time, goes on.
func TestCancelledOverlappingRoundEndsOnlyItself(t *testing.T) {
	x := newSteps(t, 3)
	cctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- x.c.Invalidate(cctx, "k1") }()
	x.started(1)
	x.invalidate("k2")
	x.started(2)
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v; want context.Canceled", err)
	}
	close(x.s.gate(2))
	x.returned(1) // the other caller's round went on
}

// Calls that queue while the publisher's own round is in flight go out as
// soon as fewer rounds than the limit are in flight, not when the
// publisher's round ends.
func TestQueuedCallDoesNotWaitForThePublishersRound(t *testing.T) {
	x := newSteps(t, 3)
	x.fill("k1", "k2", "k3")
	x.invalidate("k4")
	eventually(t, "k4 queued", func() bool { return x.c.Queued() == 4 })
	close(x.s.gate(1))
	x.returned(1)
	close(x.s.gate(3)) // the publisher takes k4, in a round of its own
	x.returned(1)
	x.started(4)
	x.invalidate("k5") // the idle path: holds the token, a third round
	x.started(5)
	x.invalidate("k6")
	eventually(t, "k6 queued", func() bool { return x.c.Queued() == 4 }) // k2, k4, k5, k6
	close(x.s.gate(5))
	x.returned(1)
	// Two rounds in flight (k2's and the publisher's k4), three allowed.
	x.started(6)
	close(x.s.gate(2))
	close(x.s.gate(4))
	close(x.s.gate(6))
	x.returned(3)
}
