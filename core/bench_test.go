package core_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/allegro/bigcache/v3"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

const benchKeys = 10000

func benchKey(i int) string { return fmt.Sprintf("product:%06d", i%benchKeys) }

// BenchmarkGetHit compares a cache hit through the engine with raw bigcache
// and with the bigcachestore adapter, in the same run, and a hit of an
// entry with 1 and 4 tags with one without.
func BenchmarkGetHit(b *testing.B) {
	value := make([]byte, 256)
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = benchKey(i)
	}
	cfg := bigcachestore.DefaultConfig()

	raw, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	store, _ := bigcachestore.New(cfg)
	hub := memtransport.NewHub()
	// The engine without tags, with 1 and with 4 tags per entry: three
	// instances, each holding the same entries as the raw store.
	engine := func(tags ...string) *core.Cache {
		st, _ := bigcachestore.New(cfg)
		c, err := core.Open(context.Background(), st, hub.New("bench"), core.WithLogger(discard))
		if err != nil {
			b.Fatal(err)
		}
		for _, k := range keys {
			_ = c.SetWithTags(k, value, tags...)
		}
		return c
	}
	c, c1, c4 := engine(), engine("category:1"), engine("category:1", "brand:2", "page:3", "region:4")
	defer c.Close()
	defer c1.Close()
	defer c4.Close()
	defer store.Close()
	for _, k := range keys {
		_ = raw.Set(k, value)
		_ = store.Set(k, value, 0)
	}
	gets := map[string]func(i int) bool{
		"raw-bigcache":  func(i int) bool { _, err := raw.Get(keys[i]); return err == nil },
		"bigcachestore": func(i int) bool { _, ok := store.Get(keys[i]); return ok },
		"engine":        func(i int) bool { _, ok := c.Get(keys[i]); return ok },
		"engine-1-tag":  func(i int) bool { _, ok := c1.Get(keys[i]); return ok },
		"engine-4-tags": func(i int) bool { _, ok := c4.Get(keys[i]); return ok },
	}
	for _, name := range []string{"raw-bigcache", "bigcachestore", "engine", "engine-1-tag", "engine-4-tags"} {
		get := gets[name]
		b.Run(name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				if !get(i % benchKeys) {
					b.Fatal("miss")
				}
				i++
			}
		})
		b.Run(name+"-parallel", func(b *testing.B) {
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(n.Add(1)) * 7919
				for pb.Next() {
					if !get(i % benchKeys) {
						b.Fatal("miss")
					}
					i++
				}
			})
		})
	}
}

// BenchmarkInvalidate measures keys/s of Invalidate over memtransport, one
// key per call, with 1 and 64 concurrent callers, next to the raw transport
// publishing one message per key. With concurrent callers the engine
// coalesces keys into few messages.
func BenchmarkInvalidate(b *testing.B) {
	b.Run("raw-transport-one-message-per-key", func(b *testing.B) {
		hub := memtransport.NewHub()
		pub, sub := hub.New("bench"), hub.New("bench")
		defer pub.Close()
		defer sub.Close()
		var got atomic.Int64
		_ = sub.Subscribe(context.Background(), core.HandlerFuncs{Message: func([]byte) { got.Add(1) }})
		env := core.Envelope{Op: core.OpInvalidate, Keys: []string{"x"}}
		i := 0
		for b.Loop() {
			env.Keys[0] = benchKey(i)
			env.Seq++
			p, _ := env.MarshalBinary()
			if err := pub.Publish(context.Background(), p); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
	})
	for _, callers := range []int{1, 64} {
		b.Run(fmt.Sprintf("engine-callers-%d", callers), func(b *testing.B) {
			hub := memtransport.NewHub()
			a, err := core.Open(context.Background(), newBenchStore(b), hub.New("bench"), quiet, core.WithLogger(discard))
			if err != nil {
				b.Fatal(err)
			}
			defer a.Close()
			peer, _ := core.Open(context.Background(), newBenchStore(b), hub.New("bench"), quiet, core.WithLogger(discard))
			defer peer.Close()
			b.SetParallelism(callers) // RunParallel runs callers*GOMAXPROCS goroutines
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := a.Invalidate(context.Background(), benchKey(int(n.Add(1)))); err != nil {
						b.Error(err)
						return
					}
				}
			})
			s := a.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "keys/s")
			b.ReportMetric(float64(s.KeysPublished)/float64(max(s.Published, 1)), "keys/msg")
		})
	}
}

func newBenchStore(b *testing.B) core.LocalStore {
	s, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	return s
}
