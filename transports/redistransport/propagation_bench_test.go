package redistransport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// rawRedis is go-redis pub/sub on one channel, without the engine.
func rawRedis(b *testing.B, url, channel string) propbench.Raw {
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error { return c.Publish(ctx, channel, p).Err() },
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			ps := c.Subscribe(ctx, channel)
			if _, err := ps.Receive(ctx); err != nil {
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					m, err := ps.ReceiveMessage(context.Background())
					if err != nil {
						return
					}
					fn([]byte(m.Payload))
				}
			}()
			return func() { ps.Close(); <-done }, nil
		},
	}
}

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw go-redis pub/sub on
// the same server in the same run. Run with -benchtime 1x: each
// sub-benchmark is one fixed-size measurement.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.RedisURL(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	newBP := func() (core.Backplane, error) { return redistransport.Open(url, ns) }
	raw := func(subs int) (propbench.Raw, []propbench.Raw) {
		ch := ns + "-raw"
		s := make([]propbench.Raw, subs)
		for i := range s {
			s[i] = rawRedis(b, url, ch)
		}
		return rawRedis(b, url, ch), s
	}
	report := func(b *testing.B, r propbench.Result, err error) {
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(r.P50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(r.P99.Microseconds()), "p99-µs")
		b.ReportMetric(r.KeysPerSecond, "keys/s")
		b.ReportMetric(0, "ns/op")
	}
	for _, rate := range []float64{1000, 10000} {
		n := int(rate * 3) // three seconds of load
		b.Run(fmt.Sprintf("latency-%dk/raw", int(rate/1000)), func(b *testing.B) {
			pub, subs := raw(1)
			for b.Loop() {
				r, err := propbench.RawLatency(ctx, pub, subs, n, rate)
				report(b, r, err)
			}
		})
		b.Run(fmt.Sprintf("latency-%dk/engine", int(rate/1000)), func(b *testing.B) {
			for b.Loop() {
				r, err := propbench.EngineLatency(ctx, newBP, 1, n, rate)
				report(b, r, err)
			}
		})
	}
	const n = 50000
	b.Run("throughput-1pub-4sub/raw", func(b *testing.B) {
		pub, subs := raw(4)
		for b.Loop() {
			r, err := propbench.RawLatency(ctx, pub, subs, n, 0)
			report(b, r, err)
		}
	})
	b.Run("throughput-1pub-4sub/engine", func(b *testing.B) {
		for b.Loop() {
			r, err := propbench.EngineLatency(ctx, newBP, 4, n, 0)
			report(b, r, err)
		}
	})
}
