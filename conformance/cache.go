package conformance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// RunCache runs the engine end to end over the harness's store and
// transport: invalidation of keys and of tags reaches every instance,
// clear-all, the
// fill/invalidate race, flush on reconnect (with h.Backplane.Disconnect) and
// a randomized multi-instance consistency check, with injected disconnects
// and broker restarts where the harness offers them; and what a hostile
// publisher on the channel can and cannot do (see runHostile).
//
// The consistency check: writers update a shared source of truth and then
// call Invalidate (or, for the half of the keys cached under a tag,
// InvalidateTags) on a random instance; readers call GetOrLoad on every
// instance. Once an Invalidate has returned and h.StaleBound has passed, no
// instance may return a value older than that write; once an
// InvalidateAcked (or InvalidateTagsAcked) has returned nil, at once. A
// violation fails the test and prints the history of the key that shows
// it.
func RunCache(t *testing.T, h CacheHarness) {
	t.Helper()
	if h.Backplane.New == nil || h.NewStore == nil {
		t.Fatal("conformance: CacheHarness needs Backplane.New and NewStore")
	}
	s := &cacheSuite{h: h}
	t.Run("InvalidateReachesEveryInstance", s.caseReachesEveryInstance)
	t.Run("InvalidateTagsReachesEveryInstance", s.caseTagsReachEveryInstance)
	t.Run("ClearAll", s.caseClearAll)
	t.Run("FillInvalidateRace", s.caseFillRace)
	t.Run("OwnMessagesIgnored", s.caseOwnIgnored)
	t.Run("FlushOnReconnect", s.caseFlushOnReconnect) // or, over a Durable transport, suspend
	t.Run("Consistency", func(t *testing.T) { s.caseConsistency(t, false, false, false) })
	t.Run("ConsistencyAcrossDisconnects", func(t *testing.T) { s.caseConsistency(t, true, false, false) })
	t.Run("ConsistencyAcrossBrokerRestart", func(t *testing.T) { s.caseConsistency(t, false, true, false) })
	t.Run("AckedConsistency", func(t *testing.T) { s.caseConsistency(t, false, false, true) })
	t.Run("AckedConsistencyAcrossDisconnects", func(t *testing.T) { s.caseConsistency(t, true, false, true) })
	t.Run("AckedMutePeer", s.caseAckedMutePeer)
	t.Run("Hostile", s.runHostile)
}

type cacheSuite struct{ h CacheHarness }

// open starts n Caches on a fresh namespace; they are closed at the end of
// the test. It returns the caches and their backplanes.
func (s *cacheSuite) open(t *testing.T, n int) ([]*core.Cache, []core.Backplane) {
	t.Helper()
	ns := newNamespace(t)
	caches := make([]*core.Cache, n)
	bps := make([]core.Backplane, n)
	for i := range n {
		caches[i], bps[i] = s.openOn(t, ns, i)
	}
	return caches, bps
}

// openOn starts Cache number i on namespace ns with the suite's options,
// the harness's and extra, in that order; it is closed at the end of the
// test.
func (s *cacheSuite) openOn(t *testing.T, ns string, i int, extra ...core.Option) (*core.Cache, core.Backplane) {
	t.Helper()
	bp := s.h.Backplane.New(t, ns)
	opts := append([]core.Option{
		core.WithHeartbeat(100*time.Millisecond, 500*time.Millisecond),
		core.WithPublishTimeout(2 * time.Second),
		core.WithLogger(slog.New(slog.DiscardHandler)),
	}, s.h.Options...)
	opts = append(opts, extra...)
	ctx, cancel := context.WithTimeout(context.Background(), s.h.Backplane.bound())
	c, err := core.Open(ctx, s.h.NewStore(t), bp, opts...)
	cancel()
	if err != nil {
		t.Fatalf("conformance: open cache %d: %v", i, err)
	}
	t.Cleanup(func() {
		if err := closeWithin(c, 10*time.Second); err != nil {
			t.Errorf("conformance: close cache %d: %v", i, err)
		}
	})
	return c, bp
}

func (s *cacheSuite) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !eventually(s.h.Backplane.bound(), cond) {
		t.Fatalf("conformance: timed out after %v waiting for %s", s.h.Backplane.bound(), what)
	}
}

func constLoader(v string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(v), nil }
}

// fill caches key on c through GetOrLoad. An instance that does not cache
// for a moment (its own heartbeats came back late on a loaded machine, or
// a durable transport has not confirmed delivery yet) is asked again until
// it does.
func (s *cacheSuite) fill(t *testing.T, c *core.Cache, key, v string) {
	t.Helper()
	deadline := time.Now().Add(s.h.Backplane.bound())
	for {
		got, err := c.GetOrLoad(context.Background(), key, constLoader(v))
		if err != nil || string(got) != v {
			t.Fatalf("GetOrLoad(%q) = %q, %v; want %q", key, got, err, v)
		}
		cached, ok := c.Get(key)
		if ok && string(cached) == v {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after GetOrLoad, Get(%q) = %q, %v; want %q cached (health %+v)", key, cached, ok, v, c.Health())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func absent(c *core.Cache, key string) bool { _, ok := c.Get(key); return !ok }

func (s *cacheSuite) caseReachesEveryInstance(t *testing.T) {
	t.Parallel()
	caches, _ := s.open(t, 3)
	for _, c := range caches {
		s.fill(t, c, "k", "v1")
		s.fill(t, c, "other", "o")
	}
	if err := caches[0].Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	if !absent(caches[0], "k") {
		t.Fatal("the invalidating instance still has the key when Invalidate returns")
	}
	for i, c := range caches[1:] {
		s.waitFor(t, fmt.Sprintf("instance %d to evict k", i+1), func() bool { return absent(c, "k") })
		if v, ok := c.Get("other"); !ok || string(v) != "o" {
			t.Fatalf("instance %d lost an unrelated key: %q, %v", i+1, v, ok)
		}
	}
}

// caseTagsReachEveryInstance: InvalidateTags evicts, on every instance,
// the entries carrying the tag, and no other.
func (s *cacheSuite) caseTagsReachEveryInstance(t *testing.T) {
	t.Parallel()
	caches, _ := s.open(t, 3)
	ctx := context.Background()
	for i, c := range caches {
		for _, e := range []struct{ key, tag string }{{"list:a", "t:a"}, {"list:b", "t:b"}} {
			if _, err := c.GetOrLoadWithTags(ctx, e.key, []string{e.tag}, constLoader("v")); err != nil {
				t.Fatalf("GetOrLoadWithTags on instance %d: %v", i, err)
			}
			if _, ok := c.Get(e.key); !ok {
				t.Fatalf("instance %d did not cache %s", i, e.key)
			}
		}
	}
	if err := caches[0].InvalidateTags(ctx, "t:a"); err != nil {
		t.Fatalf("InvalidateTags: %v", err)
	}
	for i, c := range caches {
		s.waitFor(t, fmt.Sprintf("instance %d to stop serving the tagged entry", i), func() bool { return absent(c, "list:a") })
		if v, ok := c.Get("list:b"); !ok || string(v) != "v" {
			t.Fatalf("instance %d lost an entry of another tag: %q, %v", i, v, ok)
		}
	}
}

func (s *cacheSuite) caseClearAll(t *testing.T) {
	t.Parallel()
	caches, _ := s.open(t, 3)
	for _, c := range caches {
		for i := range 20 {
			s.fill(t, c, "k"+strconv.Itoa(i), "v")
		}
	}
	if err := caches[1].Clear(context.Background()); err != nil {
		t.Fatalf("Clear: %v", err)
	}
	for i, c := range caches {
		s.waitFor(t, fmt.Sprintf("instance %d to clear", i), func() bool {
			for k := range 20 {
				if !absent(c, "k"+strconv.Itoa(k)) {
					return false
				}
			}
			return true
		})
	}
}

func (s *cacheSuite) caseFillRace(t *testing.T) {
	t.Parallel()
	caches, _ := s.open(t, 2)
	a, b := caches[0], caches[1]
	started, release := make(chan struct{}), make(chan struct{})
	got := make(chan string, 1)
	go func() {
		v, _ := b.GetOrLoad(context.Background(), "k", func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("old"), nil
		})
		got <- string(v)
	}()
	<-started
	before := b.Stats().KeysEvicted
	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatalf("Invalidate: %v", err)
	}
	s.waitFor(t, "b to receive the invalidation", func() bool { return b.Stats().KeysEvicted > before })
	close(release)
	if v := <-got; v != "old" {
		t.Fatalf("the overlapping load should still be returned to its caller, got %q", v)
	}
	if v, ok := b.Get("k"); ok {
		t.Fatalf("a load that overlapped a remote invalidation was cached: %q", v)
	}
}

func (s *cacheSuite) caseOwnIgnored(t *testing.T) {
	t.Parallel()
	caches, _ := s.open(t, 2)
	a, b := caches[0], caches[1]
	s.fill(t, a, "mine", "v")
	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "a to hear its own message back", func() bool { return a.Stats().IgnoredOwn > 0 })
	s.waitFor(t, "b to hear it", func() bool { return b.Stats().KeysEvicted > 0 })
	if a.Stats().KeysEvicted != 0 {
		t.Fatal("an instance evicted keys on behalf of its own message")
	}
}

func (s *cacheSuite) caseFlushOnReconnect(t *testing.T) {
	if s.h.Backplane.Disconnect == nil {
		t.Skip("harness cannot disconnect an instance (BackplaneHarness.Disconnect is nil)")
	}
	t.Parallel()
	caches, bps := s.open(t, 2)
	a, b := caches[0], caches[1]
	s.fill(t, b, "k", "v")
	before := b.Stats()
	s.h.Backplane.Disconnect(t, bps[1])
	if bps[1].Limits().Durable {
		// Over a log the store is suspended instead, and served again
		// once delivery has caught up; a log that lost the position
		// flushes.
		s.waitFor(t, "b to suspend its store (or flush, if its log was lost) after its connection was cut", func() bool {
			st := b.Stats()
			return st.Suspensions > before.Suspensions || st.Flushes > before.Flushes
		})
	} else {
		s.waitFor(t, "b to flush after its connection was cut", func() bool { return b.Stats().Flushes > before.Flushes })
		if !absent(b, "k") {
			t.Fatal("entry survived the disconnect")
		}
	}
	s.waitFor(t, "b to be healthy again", func() bool { h := b.Health(); return h.Healthy() && !h.Degraded })
	// Delivery works again: an invalidation from a reaches b.
	s.waitFor(t, "invalidation to reach b after reconnect", func() bool {
		s.fill(t, b, "k2", "v")
		_ = a.Invalidate(context.Background(), "k2")
		return eventually(200*time.Millisecond, func() bool { return absent(b, "k2") })
	})
}

// history records what the consistency check saw, per key.
type history struct {
	mu     sync.Mutex
	start  time.Time
	events map[string][]string
	// done[key] are completed writes: version and when Invalidate returned.
	done map[string][]write
}

type write struct {
	version  int64
	returned time.Time
	acked    bool // an acknowledged call returned nil: every read after it sees it
}

func (h *history) log(key, format string, args ...any) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events[key] = append(h.events[key], fmt.Sprintf("%9.3fms ", float64(time.Since(h.start).Microseconds())/1000)+fmt.Sprintf(format, args...))
}

// mustHave returns the newest version that a read starting at t must
// see: whose Invalidate returned more than bound before t, or whose
// acknowledged call returned before t.
func (h *history) mustHave(key string, t time.Time, bound time.Duration) (int64, time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var v int64
	var at time.Time
	for _, w := range h.done[key] {
		cut := t.Add(-bound)
		if w.acked {
			cut = t
		}
		if w.returned.Before(cut) && w.version > v {
			v, at = w.version, w.returned
		}
	}
	return v, at
}

func (h *history) dump(key string) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	ev := h.events[key]
	if len(ev) > 60 {
		ev = append([]string{fmt.Sprintf("... %d earlier events", len(ev)-60)}, ev[len(ev)-60:]...)
	}
	return strings.Join(ev, "\n")
}

// caseConsistency is the consistency check; with acked, writers use the
// acknowledged calls, and a read that starts after one returned nil must
// see its write (a zero bound).
func (s *cacheSuite) caseConsistency(t *testing.T, disconnects, restarts, acked bool) {
	switch {
	case disconnects && s.h.Backplane.Disconnect == nil:
		t.Skip("harness cannot disconnect an instance (BackplaneHarness.Disconnect is nil)")
	case restarts && s.h.Backplane.RestartBroker == nil:
		t.Skip("harness cannot restart the broker (BackplaneHarness.RestartBroker is nil)")
	}
	if !restarts {
		t.Parallel()
	}
	const nInstances, nKeys = 3, 16
	duration := 4 * time.Second
	if testing.Short() {
		duration = 2 * time.Second
	}
	bound := s.h.staleBound()
	caches, bps := s.open(t, nInstances)

	var srcMu sync.Mutex
	source := make(map[string]int64) // the source of truth
	hist := &history{start: time.Now(), events: map[string][]string{}, done: map[string][]write{}}
	key := func(r *rand.Rand) string { return "item:" + strconv.Itoa(r.IntN(nKeys)) }
	// The upper half of the keys are cached under a tag (one of four),
	// and invalidated by it.
	tagOf := func(k string) []string {
		if i, _ := strconv.Atoi(strings.TrimPrefix(k, "item:")); i >= nKeys/2 {
			return []string{"group:" + strconv.Itoa(i%4)}
		}
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var violations atomic.Int64
	var reads, writes atomic.Int64
	var wg sync.WaitGroup
	// Writers: update the source of truth, then invalidate through the
	// key's owner instance, retrying until it returns nil. The other
	// instances learn of the write only through the backplane.
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				k := key(r)
				srcMu.Lock()
				source[k]++
				v := source[k]
				srcMu.Unlock()
				hist.log(k, "write v%d", v)
				i, _ := strconv.Atoi(strings.TrimPrefix(k, "item:"))
				i %= nInstances
				for {
					var err error
					tags := tagOf(k)
					switch {
					case acked && tags != nil:
						err = caches[i].InvalidateTagsAcked(context.Background(), tags...)
					case acked:
						err = caches[i].InvalidateAcked(context.Background(), k)
					case tags != nil:
						err = caches[i].InvalidateTags(context.Background(), tags...)
					default:
						err = caches[i].Invalidate(context.Background(), k)
					}
					if errors.Is(err, core.ErrNotAcknowledged) {
						// Published, not confirmed by every peer (one
						// cut off): the ordinary bound applies.
						hist.mu.Lock()
						hist.done[k] = append(hist.done[k], write{version: v, returned: time.Now()})
						hist.mu.Unlock()
						hist.log(k, "invalidate v%d on instance %d not acknowledged: %v", v, i, err)
						writes.Add(1)
						break
					}
					if err == nil {
						now := time.Now()
						hist.mu.Lock()
						hist.done[k] = append(hist.done[k], write{version: v, returned: now, acked: acked})
						hist.mu.Unlock()
						hist.log(k, "invalidate v%d returned on instance %d", v, i)
						writes.Add(1)
						break
					}
					hist.log(k, "invalidate v%d on instance %d failed: %v", v, i, err)
					if errors.Is(err, core.ErrClosed) {
						return
					}
					time.Sleep(10 * time.Millisecond) // retry pacing, not synchronisation
				}
				time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
			}
		})
	}
	// Readers: GetOrLoad on every instance; the loader reads the source.
	for i, c := range caches {
		for rdr := range 2 {
			wg.Go(func() {
				r := rand.New(rand.NewPCG(uint64(100+i*10+rdr), uint64(time.Now().UnixNano())))
				for ctx.Err() == nil {
					k := key(r)
					start := time.Now()
					b, err := c.GetOrLoadWithTags(context.Background(), k, tagOf(k), func(context.Context) ([]byte, error) {
						srcMu.Lock()
						defer srcMu.Unlock()
						return []byte(strconv.FormatInt(source[k], 10)), nil
					})
					if err != nil {
						t.Errorf("GetOrLoad on instance %d: %v", i, err)
						return
					}
					reads.Add(1)
					if reads.Load()%64 == 0 {
						time.Sleep(100 * time.Microsecond) // pacing: leave the writers CPU
					}
					got, _ := strconv.ParseInt(string(b), 10, 64)
					want, at := hist.mustHave(k, start, bound)
					if got < want {
						hist.log(k, "STALE read on instance %d: v%d, but v%d was invalidated at %.3fms (bound %v)",
							i, got, want, float64(at.Sub(hist.start).Microseconds())/1000, bound)
						if violations.Add(1) == 1 {
							t.Errorf("stale read on instance %d of %s: got v%d, want >= v%d\nhistory of %s:\n%s\nhealth: %+v",
								i, k, got, want, k, hist.dump(k), c.Health())
						}
					}
				}
			})
		}
	}
	// Faults.
	if disconnects || restarts {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
			tick := time.NewTicker(duration / 4)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				if restarts {
					for k := range nKeys {
						hist.log("item:"+strconv.Itoa(k), "BROKER RESTART")
					}
					s.h.Backplane.RestartBroker(t)
					continue
				}
				i := r.IntN(nInstances)
				for k := range nKeys {
					hist.log("item:"+strconv.Itoa(k), "DISCONNECT instance %d", i)
				}
				s.h.Backplane.Disconnect(t, bps[i])
			}
		})
	}
	wg.Wait()
	var flushes uint64
	for _, c := range caches {
		flushes += c.Stats().Flushes
	}
	what := fmt.Sprint(bound)
	if acked {
		what += " (0 after an acknowledged call)"
	}
	t.Logf("consistency: %d reads, %d writes, %d flushes, %d stale reads past %s", reads.Load(), writes.Load(), flushes, violations.Load(), what)
	if violations.Load() > 0 {
		t.Fatalf("%d stale reads", violations.Load())
	}
	if reads.Load() == 0 || writes.Load() == 0 {
		t.Fatalf("the check did nothing: %d reads, %d writes", reads.Load(), writes.Load())
	}
	// After the run, every instance converges on the latest values.
	for k := range nKeys {
		k := "item:" + strconv.Itoa(k)
		srcMu.Lock()
		want := source[k]
		srcMu.Unlock()
		for i, c := range caches {
			s.waitFor(t, fmt.Sprintf("instance %d to converge on %s", i, k), func() bool {
				b, err := c.GetOrLoad(context.Background(), k, func(context.Context) ([]byte, error) {
					return []byte(strconv.FormatInt(want, 10)), nil
				})
				return err == nil && string(b) == strconv.FormatInt(want, 10)
			})
		}
	}
}
