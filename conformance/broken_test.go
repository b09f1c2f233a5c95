package conformance_test

import (
	"bytes"
	"context"
	"errors"
	"hash/fnv"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// The self-tests below prove that the suites can fail: each runs a suite
// against a deliberately broken adapter and expects named cases to fail.
// A failing subtest would fail its parent on a real *testing.T, so the
// broken runs happen in a subprocess (this test binary, restricted to
// TestBroken and told which adapter to break through brokenEnv), and the
// parent asserts that the subprocess failed and names the expected cases.

// brokenEnv names the broken adapter TestBroken runs; TestBroken skips
// when it is unset.
const brokenEnv = "CONFORMANCE_SELFTEST_BROKEN"

// brokenBound is the delivery bound of the broken runs: short, since the
// broken cases wait for it to pass.
const brokenBound = time.Second

type brokenAdapter struct {
	// run runs a suite against the broken adapter.
	run func(t *testing.T)
	// wantFail lists cases (paths below TestBroken/) that must fail.
	wantFail []string
}

func brokenTransportRun(mode string) func(t *testing.T) {
	return func(t *testing.T) {
		groups := &consumerGroups{m: make(map[string]*consumerGroup)}
		conformance.RunBackplane(t, memHarness(t, brokenBound, func(ns string, tr *memtransport.Transport) core.Backplane {
			return &brokenTransport{tr: tr, ns: ns, mode: mode, groups: groups}
		}))
	}
}

func brokenStoreRun(cfg mapStoreConfig) func(t *testing.T) {
	return func(t *testing.T) {
		conformance.RunStore(t, func(testing.TB) core.LocalStore { return newMapStore(cfg) }, newMapStore(cfg).caps())
	}
}

var brokenAdapters = map[string]brokenAdapter{
	// A transport that loses every 10th message it should deliver,
	// without reporting anything.
	"drop-every-10th": {
		run:      brokenTransportRun("drop-every-10th"),
		wantFail: []string{"Backplane/FanOut", "Backplane/ConcurrentPublishers"},
	},
	// A transport that delivers each message to one subscriber of the
	// namespace only (a queue group instead of a broadcast).
	"competing-consumers": {
		run:      brokenTransportRun("competing-consumers"),
		wantFail: []string{"Backplane/FanOut"},
	},
	// A transport that does not deliver a publisher's own messages to it.
	"no-echo": {
		run:      brokenTransportRun("no-echo"),
		wantFail: []string{"Backplane/Echo"},
	},
	// A transport whose Subscribe returns before delivery is active.
	"late-subscribe": {
		run:      brokenTransportRun("late-subscribe"),
		wantFail: []string{"Backplane/PublishRightAfterSubscribe"},
	},
	// A transport that ends delivery when Subscribe's context ends.
	"subscription-bound-to-context": {
		run:      brokenTransportRun("subscription-bound-to-context"),
		wantFail: []string{"Backplane/SubscribeContextEnds"},
	},
	// A transport that publishes with a cancelled context.
	"ignores-context": {
		run:      brokenTransportRun("ignores-context"),
		wantFail: []string{"Backplane/CancelledContext"},
	},
	// A transport that sends identical payloads of one Publish call once.
	"dedupes-identical-payloads": {
		run:      brokenTransportRun("dedupes-identical-payloads"),
		wantFail: []string{"Backplane/IdenticalPayloads"},
	},
	// A transport that serialises Publish on a mutex and waits for it
	// whatever the context says.
	"publish-mutex-ignores-context": {
		run:      brokenTransportRun("publish-mutex-ignores-context"),
		wantFail: []string{"Backplane/ContextWhilePublishWaits"},
	},
	// A transport that says it is Durable and that every reconnect
	// resumed, but loses the first messages after each reconnect.
	"false-resume": {
		run:      brokenTransportRun("false-resume"),
		wantFail: []string{"Backplane/ResumeOrLoss"},
	},
	// A transport whose Close returns without waiting for the handler.
	"async-close": {
		run:      brokenTransportRun("async-close"),
		wantFail: []string{"Backplane/CloseDuringHandler"},
	},
	// A store that keeps the caller's slice instead of a copy.
	"store-aliases-on-set": {
		run:      brokenStoreRun(mapStoreConfig{aliasOnSet: true}),
		wantFail: []string{"LocalStore/NoAliasing/Set"},
	},
	// A store that declares TTL but never expires anything.
	"store-ignores-ttl": {
		run:      brokenStoreRun(mapStoreConfig{ttl: true, neverExpire: true}),
		wantFail: []string{"LocalStore/TTL"},
	},
	// A store that rejects oversize values with an error that does not
	// wrap core.ErrValueTooLarge.
	"store-unwrapped-size-error": {
		run:      brokenStoreRun(mapStoreConfig{maxValueLen: 1024, plainSizeError: true}),
		wantFail: []string{"LocalStore/ValueTooLarge"},
	},
	// A store that returns its own slice instead of a copy.
	"store-aliases-on-get": {
		run:      brokenStoreRun(mapStoreConfig{aliasOnGet: true}),
		wantFail: []string{"LocalStore/NoAliasing/Get"},
	},
}

// TestBroken runs one suite against the broken adapter named by brokenEnv.
// It is meant to fail; it only runs as a subprocess of
// TestSuiteCatchesBrokenAdapters.
func TestBroken(t *testing.T) {
	mode := os.Getenv(brokenEnv)
	if mode == "" {
		t.Skip("runs only as a subprocess of TestSuiteCatchesBrokenAdapters")
	}
	a, ok := brokenAdapters[mode]
	if !ok {
		t.Fatalf("unknown broken adapter %q", mode)
	}
	a.run(t)
}

// TestSuiteCatchesBrokenAdapters runs TestBroken in a subprocess for every
// broken adapter and checks that the suite failed, in the expected cases.
func TestSuiteCatchesBrokenAdapters(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		t.Skip("inside a broken run")
	}
	modes := make([]string, 0, len(brokenAdapters))
	for m := range brokenAdapters {
		modes = append(modes, m)
	}
	slices.Sort(modes)
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"-test.run=^TestBroken$", "-test.count=1", "-test.timeout=3m"}
			if testing.Short() {
				args = append(args, "-test.short")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), brokenEnv+"="+mode)
			out, err := cmd.CombinedOutput()
			var exitErr *exec.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("the suite passed (or did not run: %v) against the broken adapter %q; output:\n%s", err, mode, tail(out))
			}
			if bytes.Contains(out, []byte("\npanic: ")) || bytes.Contains(out, []byte("test timed out")) {
				t.Fatalf("the broken run crashed instead of failing cleanly; output:\n%s", tail(out))
			}
			for _, c := range brokenAdapters[mode].wantFail {
				if !bytes.Contains(out, []byte("--- FAIL: TestBroken/"+c+" ")) {
					t.Errorf("case %s did not fail against the broken adapter %q", c, mode)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", tail(out))
			}
		})
	}
}

// tail returns the last 60 lines of out.
func tail(out []byte) string {
	lines := strings.Split(string(out), "\n")
	if len(lines) > 60 {
		lines = lines[len(lines)-60:]
	}
	return strings.Join(lines, "\n")
}

// brokenTransport wraps a memtransport transport and breaks one part of
// the Backplane contract, chosen by mode.
type brokenTransport struct {
	tr     *memtransport.Transport
	ns     string
	mode   string
	groups *consumerGroups

	subscribed atomic.Bool
	mu         sync.Mutex
	published  map[string]bool // no-echo: payloads this transport sent
	pubMu      sync.Mutex      // publish-mutex-ignores-context: held by Publish
	member     *groupMember    // competing-consumers
}

func (b *brokenTransport) inner() *memtransport.Transport { return b.tr }

func (b *brokenTransport) Limits() core.Limits {
	l := b.tr.Limits()
	if b.mode == "false-resume" {
		l.Durable = true
	}
	return l
}

func (b *brokenTransport) Publish(ctx context.Context, payloads ...[]byte) error {
	switch b.mode {
	case "ignores-context":
		ctx = context.WithoutCancel(ctx)
	case "dedupes-identical-payloads":
		seen := make(map[string]bool, len(payloads))
		kept := payloads[:0:0]
		for _, p := range payloads {
			if !seen[string(p)] {
				seen[string(p)] = true
				kept = append(kept, p)
			}
		}
		payloads = kept
	case "publish-mutex-ignores-context":
		b.pubMu.Lock()
		defer b.pubMu.Unlock()
	case "no-echo":
		b.mu.Lock()
		if b.published == nil {
			b.published = make(map[string]bool)
		}
		for _, p := range payloads {
			b.published[string(p)] = true
		}
		b.mu.Unlock()
	}
	return b.tr.Publish(ctx, payloads...)
}

func (b *brokenTransport) Subscribe(ctx context.Context, h core.Handler) error {
	switch b.mode {
	case "drop-every-10th":
		h = &dropper{h: h}
	case "false-resume":
		h = &falseResume{h: h}
	case "no-echo":
		inner := h
		h = core.HandlerFuncs{
			Message: func(p []byte) {
				b.mu.Lock()
				own := b.published[string(p)]
				b.mu.Unlock()
				if !own {
					inner.HandleMessage(p)
				}
			},
			Event: inner.HandleEvent,
		}
	case "competing-consumers":
		b.mu.Lock()
		b.member = b.groups.join(b.ns, h)
		h = b.member
		b.mu.Unlock()
	case "subscription-bound-to-context":
		inner := h
		h = core.HandlerFuncs{
			Message: func(p []byte) {
				// ctx.Err is set by cancel itself, so no delivery after
				// cancel returns can slip through.
				if ctx.Err() == nil {
					inner.HandleMessage(p)
				}
			},
			Event: inner.HandleEvent,
		}
	case "late-subscribe":
		if !b.subscribed.CompareAndSwap(false, true) {
			return core.ErrAlreadySubscribed
		}
		// Return at once; the real subscription follows later.
		time.AfterFunc(2*time.Second, func() { _ = b.tr.Subscribe(context.Background(), h) })
		return nil
	}
	return b.tr.Subscribe(ctx, h)
}

func (b *brokenTransport) Close() error {
	b.mu.Lock()
	if b.member != nil {
		b.member.leave()
	}
	b.mu.Unlock()
	if b.mode == "async-close" {
		go func() { _ = b.tr.Close() }()
		return nil
	}
	return b.tr.Close()
}

// dropper passes on every message but every 10th.
// falseResume claims every reconnect resumed, and drops the next five
// messages after it.
type falseResume struct {
	h    core.Handler
	skip int // only touched by the transport's delivery goroutine
}

func (f *falseResume) HandleMessage(p []byte) {
	if f.skip > 0 {
		f.skip--
		return
	}
	f.h.HandleMessage(p)
}

func (f *falseResume) HandleEvent(ev core.Event) {
	if ev.Kind == core.EventReconnected {
		ev.Resumed, f.skip = true, 5
	}
	f.h.HandleEvent(ev)
}

type dropper struct {
	h core.Handler
	n int // only touched by the transport's delivery goroutine
}

func (d *dropper) HandleMessage(p []byte) {
	d.n++
	if d.n%10 == 0 {
		return
	}
	d.h.HandleMessage(p)
}

func (d *dropper) HandleEvent(ev core.Event) { d.h.HandleEvent(ev) }

// consumerGroups turns memtransport's broadcast into competing consumers:
// every member of a namespace's group receives every message, but only
// the member a hash of the payload picks passes it on.
type consumerGroups struct {
	mu sync.Mutex
	m  map[string]*consumerGroup
}

type consumerGroup struct {
	mu      sync.Mutex
	members []*groupMember
}

type groupMember struct {
	g *consumerGroup
	h core.Handler
}

func (gs *consumerGroups) join(ns string, h core.Handler) *groupMember {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	g := gs.m[ns]
	if g == nil {
		g = &consumerGroup{}
		gs.m[ns] = g
	}
	m := &groupMember{g: g, h: h}
	g.mu.Lock()
	g.members = append(g.members, m)
	g.mu.Unlock()
	return m
}

func (m *groupMember) leave() {
	m.g.mu.Lock()
	defer m.g.mu.Unlock()
	m.g.members = slices.DeleteFunc(m.g.members, func(x *groupMember) bool { return x == m })
}

func (m *groupMember) HandleMessage(p []byte) {
	h := fnv.New32a()
	h.Write(p)
	m.g.mu.Lock()
	chosen := len(m.g.members) > 0 && m.g.members[int(h.Sum32())%len(m.g.members)] == m
	m.g.mu.Unlock()
	if chosen {
		m.h.HandleMessage(p)
	}
}

func (m *groupMember) HandleEvent(ev core.Event) { m.h.HandleEvent(ev) }
