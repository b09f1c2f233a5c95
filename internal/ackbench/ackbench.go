// Package ackbench measures acknowledged invalidation against plain
// Invalidate over one transport, in one run: the latency of the call
// (plain: until the broker has the message; acknowledged: until every
// live instance confirmed) and the messages on the wire per call, for a
// fleet of n instances, one call at a time and in bursts of concurrent
// calls.
package ackbench

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

// Open makes one instance's Backplane on namespace.
type Open func(tb testing.TB, namespace string) core.Backplane

// Result is one side's figures.
type Result struct {
	P50, P99    time.Duration
	MsgsPerCall float64 // invalidations, requests and acknowledgements; not heartbeats
}

// Run starts n instances and a listener on a fresh namespace and measures
// calls calls of instance 0, one at a time, plainly and acknowledged in
// turns, and then a burst of concurrent calls of each kind.
func Run(tb testing.TB, open Open, n, calls, burst int) (plain, acked, burstPlain, burstAcked Result) {
	tb.Helper()
	ns := "ackbench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var wire atomic.Int64 // messages other than heartbeats
	listener := open(tb, ns)
	if err := listener.Subscribe(context.Background(), core.HandlerFuncs{Message: func(p []byte) {
		if env, err := core.DecodeEnvelope(p); err == nil && env.Op != core.OpHeartbeat {
			wire.Add(1)
		}
	}}); err != nil {
		tb.Fatalf("ackbench: listener: %v", err)
	}
	tb.Cleanup(func() { _ = listener.Close() })
	caches := make([]*core.Cache, n)
	for i := range caches {
		cfg := bigcachestore.DefaultConfig()
		cfg.Shards, cfg.HardMaxCacheSize = 16, 16
		store, err := bigcachestore.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		c, err := core.Open(ctx, store, open(tb, ns), core.WithLogger(slog.New(slog.DiscardHandler)),
			core.WithHeartbeat(100*time.Millisecond, 500*time.Millisecond), core.WithAckTimeout(5*time.Second))
		cancel()
		if err != nil {
			tb.Fatalf("ackbench: instance %d: %v", i, err)
		}
		caches[i] = c
	}
	tb.Cleanup(func() {
		for _, c := range caches {
			_ = c.Close()
		}
	})
	w := caches[0]
	deadline := time.Now().Add(30 * time.Second)
	for w.Health().Peers < n-1 {
		if time.Now().After(deadline) {
			tb.Fatalf("ackbench: instance 0 hears %d of %d peers", w.Health().Peers, n-1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	if err := w.InvalidateAcked(ctx, "warm-up"); err != nil { // waits for a complete peer table
		tb.Fatalf("ackbench: %v", err)
	}
	call := func(ack bool, key string) time.Duration {
		start := time.Now()
		var err error
		if ack {
			err = w.InvalidateAcked(ctx, key)
		} else {
			err = w.Invalidate(ctx, key)
		}
		if err != nil {
			tb.Fatalf("ackbench: %v", err)
		}
		return time.Since(start)
	}
	var lat [2][]time.Duration
	var msgs [2]int64
	for i := range calls {
		for side, ack := range []bool{false, true} { // in turns
			before := wire.Load()
			lat[side] = append(lat[side], call(ack, "k"+strconv.Itoa(i)))
			time.Sleep(2 * time.Millisecond) // stragglers of the call arrive
			msgs[side] += wire.Load() - before
		}
	}
	plain, acked = summary(lat[0], msgs[0], calls), summary(lat[1], msgs[1], calls)
	for side, ack := range []bool{false, true} {
		before := wire.Load()
		var mu sync.Mutex
		var ls []time.Duration
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				d := call(ack, "b"+strconv.Itoa(i))
				mu.Lock()
				ls = append(ls, d)
				mu.Unlock()
			})
		}
		wg.Wait()
		time.Sleep(20 * time.Millisecond)
		r := summary(ls, wire.Load()-before, burst)
		if side == 0 {
			burstPlain = r
		} else {
			burstAcked = r
		}
	}
	return plain, acked, burstPlain, burstAcked
}

func summary(ls []time.Duration, msgs int64, calls int) Result {
	slices.Sort(ls)
	return Result{P50: ls[len(ls)/2], P99: ls[len(ls)*99/100], MsgsPerCall: float64(msgs) / float64(calls)}
}

// Report runs Run for each fleet size and reports the figures as metrics
// of sub-benchmarks named by fleet size.
func Report(b *testing.B, open Open, sizes ...int) {
	for _, n := range sizes {
		b.Run("instances="+strconv.Itoa(n), func(b *testing.B) {
			for b.Loop() {
				plain, acked, bp, ba := Run(b, open, n, 300, 64)
				b.ReportMetric(float64(plain.P50.Microseconds()), "plain-p50-µs")
				b.ReportMetric(float64(plain.P99.Microseconds()), "plain-p99-µs")
				b.ReportMetric(plain.MsgsPerCall, "plain-msgs/call")
				b.ReportMetric(float64(acked.P50.Microseconds()), "acked-p50-µs")
				b.ReportMetric(float64(acked.P99.Microseconds()), "acked-p99-µs")
				b.ReportMetric(acked.MsgsPerCall, "acked-msgs/call")
				b.ReportMetric(bp.MsgsPerCall, "burst-plain-msgs/call")
				b.ReportMetric(ba.MsgsPerCall, "burst-acked-msgs/call")
				b.ReportMetric(float64(ba.P99.Microseconds()), "burst-acked-p99-µs")
			}
		})
	}
}
