package otterstore_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"github.com/maypok86/otter/v2"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// The read and write benchmarks use 16384 keys with 256 byte values, every
// store with its DefaultConfig, and compare in one run: otter itself, the
// store over it, the engine (core.Cache) over the store, and the same three
// for bigcache. Run them with
//
//	go test -run '^$' -bench 'GetHit|Set|HitRatio' -benchtime 200ms -count 3 ./stores/otterstore
const (
	benchKeys  = 1 << 14
	benchValue = 256
)

func benchKeyNames() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// rawOtter is otter configured as otterstore.DefaultConfig configures it:
// bounded by weight, entries expiring after a write, a coarse clock of one
// second.
func rawOtter(b *testing.B) *otter.Cache[string, []byte] {
	clock := otter.NewCoarseClock(time.Second)
	c := otter.Must(&otter.Options[string, []byte]{
		MaximumWeight: 256 << 20,
		Weigher: func(k string, v []byte) uint32 {
			return uint32(otterstore.EntryOverhead + len(k) + len(v))
		},
		ExpiryCalculator: otter.ExpiryWriting[string, []byte](10 * time.Minute),
		Clock:            clock,
	})
	b.Cleanup(func() {
		c.StopAllGoroutines()
		clock.Stop()
	})
	return c
}

func rawBigcache(b *testing.B) *bigcache.BigCache {
	c, err := bigcache.New(context.Background(), bigcachestore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

func newOtterstore(b *testing.B) *otterstore.Store {
	s, err := otterstore.New(otterstore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

func newBigcachestore(b *testing.B) *bigcachestore.Store {
	s, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// newEngine opens a Cache over store and an in-process hub, with the
// engine's default options (TTL 10m).
func newEngine(b *testing.B, store core.LocalStore) *core.Cache {
	c, err := core.Open(context.Background(), store, memtransport.NewHub().New("bench"),
		core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() })
	return c
}

// benchOp is one operation on the i-th key; false is a failure (a miss
// where a hit was expected).
type benchOp func(i int) bool

// subject is one thing benchmarked: setup fills it (for reads) and returns
// the operation.
type subject struct {
	name  string
	setup func(b *testing.B, keys []string, value []byte) benchOp
}

// runOp runs op b.N times in total on g goroutines, each on its own run of
// keys.
func runOp(b *testing.B, g int, op benchOp) {
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := max(b.N/g, 1)
	for w := range g {
		wg.Go(func() {
			start := w * 7919
			for i := range per {
				if !op(start + i) {
					b.Error("miss")
					return
				}
			}
		})
	}
	wg.Wait()
}

func runSubjects(b *testing.B, subjects []subject) {
	keys := benchKeyNames()
	value := make([]byte, benchValue)
	for _, s := range subjects {
		b.Run(s.name, func(b *testing.B) {
			for _, g := range []int{1, 2} {
				b.Run("g"+strconv.Itoa(g), func(b *testing.B) {
					op := s.setup(b, keys, value)
					runOp(b, g, op)
				})
			}
		})
	}
}

// BenchmarkGetHit reads cached values. raw-otter returns otter's own slice;
// raw-otter-copy copies it, as the LocalStore contract requires of a store
// (Get returns a slice the caller owns); raw-bigcache copies by itself.
func BenchmarkGetHit(b *testing.B) {
	runSubjects(b, []subject{
		{"raw-otter", func(b *testing.B, keys []string, value []byte) benchOp {
			c := rawOtter(b)
			for _, k := range keys {
				c.Set(k, append([]byte(nil), value...))
			}
			return func(i int) bool { _, ok := c.GetIfPresent(keys[i%benchKeys]); return ok }
		}},
		{"raw-otter-copy", func(b *testing.B, keys []string, value []byte) benchOp {
			c := rawOtter(b)
			for _, k := range keys {
				c.Set(k, append([]byte(nil), value...))
			}
			return func(i int) bool {
				v, ok := c.GetIfPresent(keys[i%benchKeys])
				out := make([]byte, len(v))
				copy(out, v)
				return ok && len(out) == benchValue
			}
		}},
		{"otterstore", func(b *testing.B, keys []string, value []byte) benchOp {
			s := newOtterstore(b)
			for _, k := range keys {
				_ = s.Set(k, value, 0)
			}
			return func(i int) bool { _, ok := s.Get(keys[i%benchKeys]); return ok }
		}},
		{"engine-otter", func(b *testing.B, keys []string, value []byte) benchOp {
			c := newEngine(b, newOtterstore(b))
			for _, k := range keys {
				_ = c.Set(k, value)
			}
			return func(i int) bool { _, ok := c.Get(keys[i%benchKeys]); return ok }
		}},
		{"raw-bigcache", func(b *testing.B, keys []string, value []byte) benchOp {
			c := rawBigcache(b)
			for _, k := range keys {
				_ = c.Set(k, value)
			}
			return func(i int) bool { _, err := c.Get(keys[i%benchKeys]); return err == nil }
		}},
		{"bigcachestore", func(b *testing.B, keys []string, value []byte) benchOp {
			s := newBigcachestore(b)
			for _, k := range keys {
				_ = s.Set(k, value, 0)
			}
			return func(i int) bool { _, ok := s.Get(keys[i%benchKeys]); return ok }
		}},
		{"engine-bigcache", func(b *testing.B, keys []string, value []byte) benchOp {
			c := newEngine(b, newBigcachestore(b))
			for _, k := range keys {
				_ = c.Set(k, value)
			}
			return func(i int) bool { _, ok := c.Get(keys[i%benchKeys]); return ok }
		}},
	})
}

// BenchmarkSet overwrites cached values (after the first pass over the
// keys). raw-otter stores a copy of the value, as the store must.
func BenchmarkSet(b *testing.B) {
	runSubjects(b, []subject{
		{"raw-otter", func(b *testing.B, keys []string, value []byte) benchOp {
			c := rawOtter(b)
			return func(i int) bool { c.Set(keys[i%benchKeys], append([]byte(nil), value...)); return true }
		}},
		{"otterstore", func(b *testing.B, keys []string, value []byte) benchOp {
			s := newOtterstore(b)
			return func(i int) bool { return s.Set(keys[i%benchKeys], value, 0) == nil }
		}},
		{"engine-otter", func(b *testing.B, keys []string, value []byte) benchOp {
			c := newEngine(b, newOtterstore(b))
			return func(i int) bool { return c.Set(keys[i%benchKeys], value) == nil }
		}},
		{"raw-bigcache", func(b *testing.B, keys []string, value []byte) benchOp {
			c := rawBigcache(b)
			return func(i int) bool { return c.Set(keys[i%benchKeys], value) == nil }
		}},
		{"bigcachestore", func(b *testing.B, keys []string, value []byte) benchOp {
			s := newBigcachestore(b)
			return func(i int) bool { return s.Set(keys[i%benchKeys], value, 0) == nil }
		}},
		{"engine-bigcache", func(b *testing.B, keys []string, value []byte) benchOp {
			c := newEngine(b, newBigcachestore(b))
			return func(i int) bool { return c.Set(keys[i%benchKeys], value) == nil }
		}},
	})
}

// Hit-ratio workload: cache-aside reads (Get, and Set on a miss) of 256
// byte values under a Zipf distribution (s = 1.01) over 100,000 keys, about
// 28 MiB of values, through a store of 8 MiB: a capacity well below the
// working set.
const (
	ratioKeys     = 100_000
	ratioCapacity = 8 // MiB
	ratioWarmup   = 1_000_000
	ratioAccesses = 1_000_000
)

// zipfTrace returns n key indexes drawn from the Zipf distribution, the
// same for every store.
func zipfTrace(seed uint64, n int) []uint64 {
	z := rand.NewZipf(rand.New(rand.NewPCG(seed, 7)), 1.01, 1, ratioKeys-1)
	out := make([]uint64, n)
	for i := range out {
		out[i] = z.Uint64()
	}
	return out
}

// BenchmarkHitRatio replays one trace through each store and reports the
// share of reads that hit (hit-ratio) after a warm-up on another trace,
// and the entries the store held at the end (entries). Both stores are
// given the same capacity in MiB; each counts bytes its own way (bigcache
// an 18 byte header per entry, otterstore EntryOverhead), so bigcache holds
// more entries in the same bound; otterstore-29k-entries holds as many as
// bigcache does.
func BenchmarkHitRatio(b *testing.B) {
	keys := make([]string, ratioKeys)
	for i := range keys {
		keys[i] = "item:" + strconv.Itoa(i)
	}
	warm, trace := zipfTrace(1, ratioWarmup), zipfTrace(2, ratioAccesses)
	value := make([]byte, benchValue)
	stores := []struct {
		name string
		open func() (core.LocalStore, error)
	}{
		{"otterstore", func() (core.LocalStore, error) {
			cfg := otterstore.DefaultConfig()
			cfg.MaxBytes = ratioCapacity << 20
			return otterstore.New(cfg)
		}},
		// The entries bigcache holds in the same bound, for a comparison
		// by entries rather than by bytes.
		{"otterstore-29k-entries", func() (core.LocalStore, error) {
			return otterstore.New(otterstore.Config{MaxEntries: 29_000, TTL: true, ClockResolution: time.Second})
		}},
		{"bigcachestore", func() (core.LocalStore, error) {
			cfg := bigcachestore.DefaultConfig()
			cfg.HardMaxCacheSize = ratioCapacity
			cfg.Shards = 64
			return bigcachestore.New(cfg)
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			var ratio float64
			var entries int
			for b.Loop() {
				s, err := st.open()
				if err != nil {
					b.Fatal(err)
				}
				access := func(i uint64) bool {
					if _, ok := s.Get(keys[i]); ok {
						return true
					}
					_ = s.Set(keys[i], value, 0)
					return false
				}
				for _, i := range warm {
					access(i)
				}
				hits := 0
				for _, i := range trace {
					if access(i) {
						hits++
					}
				}
				ratio = float64(hits) / float64(len(trace))
				entries = s.Len()
				_ = s.Close()
			}
			b.ReportMetric(ratio, "hit-ratio")
			b.ReportMetric(float64(entries), "entries")
		})
	}
}
