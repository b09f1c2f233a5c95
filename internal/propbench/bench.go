package propbench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Bench runs the standard propagation benchmarks of a transport, each with
// the raw client and the engine in the same run: one-way latency at 1k and
// 10k invalidations/s (three seconds of load each), and keys/s with one
// publisher and four subscribers. newBackplane makes one instance's
// transport on a namespace shared by the run; raw makes a raw publisher and
// subscribers on a channel of their own. The raw client is measured twice:
// "raw" with the publisher subscribed too, the topology of the engine (every
// instance of a fleet subscribes, so the broker delivers each message to its
// publisher as well), and "raw-unsubscribed-publisher" without that
// delivery. Run with -benchtime 1x: each
// sub-benchmark is one fixed-size measurement, reported as p50-µs, p99-µs
// and keys/s.
func Bench(b *testing.B, newBackplane func() (core.Backplane, error), raw func(b *testing.B, subscribers int) (Raw, []Raw), opts ...core.Option) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for _, rate := range []float64{1000, 10000} {
		n := int(rate * 3)
		b.Run(fmt.Sprintf("latency-%dk/raw-unsubscribed-publisher", int(rate/1000)), func(b *testing.B) {
			pub, subs := raw(b, 1)
			for b.Loop() {
				r, err := RawLatency(ctx, pub, subs, n, rate)
				Report(b, r, err)
			}
		})
		b.Run(fmt.Sprintf("latency-%dk/raw", int(rate/1000)), func(b *testing.B) {
			pub, subs := raw(b, 1)
			for b.Loop() {
				r, err := RawLatency(ctx, pub, subs, n, rate, PublisherSubscribed())
				Report(b, r, err)
			}
		})
		b.Run(fmt.Sprintf("latency-%dk/engine", int(rate/1000)), func(b *testing.B) {
			for b.Loop() {
				r, err := EngineLatency(ctx, newBackplane, 1, n, rate, opts...)
				Report(b, r, err)
			}
		})
	}
	const n = 50000
	b.Run("throughput-1pub-4sub/raw-unsubscribed-publisher", func(b *testing.B) {
		pub, subs := raw(b, 4)
		for b.Loop() {
			r, err := RawLatency(ctx, pub, subs, n, 0)
			Report(b, r, err)
		}
	})
	b.Run("throughput-1pub-4sub/raw", func(b *testing.B) {
		pub, subs := raw(b, 4)
		for b.Loop() {
			r, err := RawLatency(ctx, pub, subs, n, 0, PublisherSubscribed())
			Report(b, r, err)
		}
	})
	b.Run("throughput-1pub-4sub/engine", func(b *testing.B) {
		for b.Loop() {
			r, err := EngineLatency(ctx, newBackplane, 4, n, 0, opts...)
			Report(b, r, err)
		}
	})
}

// Report reports a measurement as the metrics p50-µs, p99-µs and keys/s of
// b, or fails b with err.
func Report(b *testing.B, r Result, err error) {
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
	b.ReportMetric(r.KeysPerSecond, "keys/s")
	b.ReportMetric(0, "ns/op")
}
