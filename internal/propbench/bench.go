package propbench

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Bench runs the standard propagation benchmarks of a transport: one-way
// latency at 1k and 10k invalidations/s (three seconds of load for each
// side), and keys/s with one publisher and four subscribers. Each
// sub-benchmark iteration measures the raw client and the engine and
// reports both with their ratio. For latency the sides take turns in
// blocks of a tenth of a second (Interleave), so that a ratio compares
// figures from the same few seconds, which the drift of a shared machine
// does not bias; for throughput they run back to back, the engine first in
// every other iteration, so that neither always runs on the machine the
// other has just warmed or loaded. Run with -benchtime 1x and -count N for
// N iterations.
//
// newBackplane makes one instance's transport on a namespace shared by the
// run; raw makes a raw publisher and subscribers on a channel of their own.
// Like the raw clients, the engine's instances (a Fleet) are made once per
// sub-benchmark and measured in every iteration of it, so that neither
// side pays for new connections in any iteration but the first.
//
// The raw client is measured in two topologies: "raw" with the publisher
// subscribed too, the topology of the engine (every instance of a fleet
// subscribes, so the broker delivers each message to its publisher as
// well) and the basis of the ratios, and "raw-unsub" without that
// delivery.
//
// Metrics, per iteration: raw-p50-µs, raw-p99-µs, raw-unsub-p50-µs,
// raw-unsub-p99-µs, engine-p50-µs, engine-p99-µs, p50-ratio and p99-ratio
// (engine / raw) for latency; raw-keys/s, raw-unsub-keys/s, engine-keys/s
// and ratio for throughput; engine-gaps, the sequence gaps the engine's
// subscribers detected (a spurious gap would cost a flush); and, for
// latency, raw-cpu-µs/msg and engine-cpu-µs/msg, the CPU time the process
// used per invalidation (on Unix systems).
func Bench(b *testing.B, newBackplane func() (core.Backplane, error), raw func(b *testing.B, subscribers int) (Raw, []Raw), opts ...core.Option) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// pair runs the measurements raw, raw-unsub and engine, in turns:
	// the engine first in every other call.
	turn := 0
	pair := func(b *testing.B, runs [3]func() (Result, error)) (raw, unsub, engine Result) {
		var res [3]Result
		order := []int{0, 1, 2}
		if turn++; turn%2 == 0 {
			order = []int{2, 0, 1}
		}
		for _, i := range order {
			r, err := runs[i]()
			if err != nil {
				b.Fatal(err)
			}
			res[i] = r
		}
		return res[0], res[1], res[2]
	}
	for _, rate := range []float64{1000, 10000} {
		n := int(rate * 3)
		b.Run(fmt.Sprintf("latency-%dk", int(rate/1000)), func(b *testing.B) {
			pub, subs := raw(b, 1)
			upub, usubs := raw(b, 1)
			fleet := openFleet(ctx, b, newBackplane, 1, opts)
			for b.Loop() {
				r, u, e := interleaved(ctx, b, n, rate,
					func() (Side, error) { return RawSide(ctx, pub, subs, n, PublisherSubscribed()) },
					func() (Side, error) { return RawSide(ctx, upub, usubs, n) },
					func() (Side, error) { return fleet.Side(ctx, n), nil },
				)
				b.ReportMetric(us(r.P50), "raw-p50-µs")
				b.ReportMetric(us(r.P99), "raw-p99-µs")
				b.ReportMetric(us(u.P50), "raw-unsub-p50-µs")
				b.ReportMetric(us(u.P99), "raw-unsub-p99-µs")
				b.ReportMetric(us(e.P50), "engine-p50-µs")
				b.ReportMetric(us(e.P99), "engine-p99-µs")
				b.ReportMetric(us(e.P50)/us(r.P50), "p50-ratio")
				b.ReportMetric(us(e.P99)/us(r.P99), "p99-ratio")
				b.ReportMetric(float64(e.Gaps), "engine-gaps")
				if r.CPU > 0 && e.CPU > 0 {
					b.ReportMetric(us(r.CPU)/float64(n), "raw-cpu-µs/msg")
					b.ReportMetric(us(e.CPU)/float64(n), "engine-cpu-µs/msg")
				}
				b.ReportMetric(0, "ns/op")
			}
		})
	}
	const n = 50000
	b.Run("throughput-1pub-4sub", func(b *testing.B) {
		pub, subs := raw(b, 4)
		upub, usubs := raw(b, 4)
		fleet := openFleet(ctx, b, newBackplane, 4, opts)
		for b.Loop() {
			r, u, e := pair(b, [3]func() (Result, error){
				func() (Result, error) { return RawLatency(ctx, pub, subs, n, 0, PublisherSubscribed()) },
				func() (Result, error) { return RawLatency(ctx, upub, usubs, n, 0) },
				func() (Result, error) { return fleet.Latency(ctx, n, 0) },
			})
			b.ReportMetric(r.KeysPerSecond, "raw-keys/s")
			b.ReportMetric(u.KeysPerSecond, "raw-unsub-keys/s")
			b.ReportMetric(e.KeysPerSecond, "engine-keys/s")
			b.ReportMetric(e.KeysPerSecond/r.KeysPerSecond, "ratio")
			b.ReportMetric(float64(e.Gaps), "engine-gaps")
			b.ReportMetric(0, "ns/op")
		}
	})
}

// interleaved measures the sides raw, raw-unsub and engine in turns
// (Interleave).
func interleaved(ctx context.Context, b *testing.B, n int, rate float64, sides ...func() (Side, error)) (raw, unsub, engine Result) {
	ss := make([]Side, 0, len(sides))
	for _, side := range sides {
		s, err := side()
		if err != nil {
			for _, s := range ss {
				s.done(nil)
			}
			b.Fatal(err)
		}
		ss = append(ss, s)
	}
	res, err := Interleave(ctx, ss, n, rate)
	if err != nil {
		b.Fatal(err)
	}
	return res[0], res[1], res[2]
}

// openFleet opens a Fleet for the sub-benchmark b, closed when b ends.
func openFleet(ctx context.Context, b *testing.B, newBackplane func() (core.Backplane, error), subscribers int, opts []core.Option) *Fleet {
	f, err := OpenFleet(ctx, newBackplane, subscribers, opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	return f
}

func us(d time.Duration) float64 { return float64(d.Microseconds()) }

// Report reports a measurement as the metrics p50-µs, p99-µs and keys/s of
// b, or fails b with err.
func Report(b *testing.B, r Result, err error) {
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(us(r.P50), "p50-µs")
	b.ReportMetric(us(r.P99), "p99-µs")
	b.ReportMetric(r.KeysPerSecond, "keys/s")
	b.ReportMetric(0, "ns/op")
}
