package natstransport_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
)

// BenchmarkPublish compares, against one embedded server with one
// subscriber, raw nats.go publishing with a flush (a round trip) per
// message with the Transport's batched Publish (all payloads, then one
// round trip). One benchmark op is one message; msgs/s is reported.
func BenchmarkPublish(b *testing.B) {
	srv := testenv.StartNATS(b)
	ns := namespace(b)
	sub := connected(b, srv.URL(), ns)
	b.Cleanup(func() { _ = sub.Close() })
	var received atomic.Int64
	ctx := context.Background()
	if err := sub.Subscribe(ctx, core.HandlerFuncs{Message: func([]byte) { received.Add(1) }}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64)

	report := func(b *testing.B, start time.Time) {
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}

	b.Run("raw/flush-per-msg", func(b *testing.B) {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			if err := nc.Publish(sub.Subject(), payload); err != nil {
				b.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	b.Run("raw/batch=128", func(b *testing.B) {
		nc, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i += 128 {
			for range min(128, b.N-i) {
				if err := nc.Publish(sub.Subject(), payload); err != nil {
					b.Fatal(err)
				}
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		report(b, start)
	})
	for _, batch := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("transport/batch=%d", batch), func(b *testing.B) {
			pub := connected(b, srv.URL(), ns)
			defer pub.Close()
			ps := make([][]byte, batch)
			for i := range ps {
				ps[i] = payload
			}
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i += batch {
				if err := pub.Publish(ctx, ps[:min(batch, b.N-i)]...); err != nil {
					b.Fatal(err)
				}
			}
			report(b, start)
		})
	}
}
