package natstransport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// rawNATS is nats.go publish/subscribe on one subject, without the engine.
// Publish flushes, so that it returns once the server has the message, as
// the transport's Publish does.
func rawNATS(b *testing.B, url, subject string) propbench.Raw {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			if err := nc.Publish(subject, p); err != nil {
				return err
			}
			return nc.FlushWithContext(ctx)
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			sub, err := nc.Subscribe(subject, func(m *nats.Msg) { fn(m.Data) })
			if err != nil {
				return nil, err
			}
			_ = sub.SetPendingLimits(-1, -1)
			if err := nc.FlushWithContext(ctx); err != nil {
				return nil, err
			}
			return func() { _ = sub.Unsubscribe() }, nil
		},
	}
}

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw nats.go on the
// same server in the same run. Run with -benchtime 1x.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.NATSURL(b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	newBP := func() (core.Backplane, error) { return natstransport.Open(url, ns) }
	raw := func(subs int) (propbench.Raw, []propbench.Raw) {
		subject := "raw." + ns
		s := make([]propbench.Raw, subs)
		for i := range s {
			s[i] = rawNATS(b, url, subject)
		}
		return rawNATS(b, url, subject), s
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
		n := int(rate * 3)
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
