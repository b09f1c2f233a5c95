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

// BenchmarkFanOut measures delivery throughput with one publisher and four
// subscribers, raw nats.go subscriptions against Transports, in the same
// run. One op is one message delivered to all four subscribers; the
// publisher sends batches of 128 with one flush each.
func BenchmarkFanOut(b *testing.B) {
	const subscribers, batch = 4, 128
	srv := testenv.StartNATS(b)
	payload := make([]byte, 64)

	run := func(b *testing.B, subject string, publish func(n int) error, delivered func() int64) {
		b.ResetTimer()
		start := time.Now()
		for i := 0; i < b.N; i += batch {
			if err := publish(min(batch, b.N-i)); err != nil {
				b.Fatal(err)
			}
		}
		want := int64(b.N) * subscribers
		deadline := time.Now().Add(time.Minute)
		for delivered() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%s: delivered %d of %d", subject, delivered(), want)
			}
			time.Sleep(100 * time.Microsecond)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
	}

	b.Run("raw", func(b *testing.B) {
		subject := "bench." + namespace(b)
		var got atomic.Int64
		for range subscribers {
			nc, err := nats.Connect(srv.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			if _, err := nc.Subscribe(subject, func(*nats.Msg) { got.Add(1) }); err != nil {
				b.Fatal(err)
			}
			if err := nc.Flush(); err != nil {
				b.Fatal(err)
			}
		}
		pub, err := nats.Connect(srv.URL())
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		run(b, subject, func(n int) error {
			for range n {
				if err := pub.Publish(subject, payload); err != nil {
					return err
				}
			}
			return pub.Flush()
		}, got.Load)
	})
	b.Run("transport", func(b *testing.B) {
		ns := namespace(b)
		var got atomic.Int64
		for range subscribers {
			tr := connected(b, srv.URL(), ns)
			defer tr.Close()
			if err := tr.Subscribe(context.Background(), core.HandlerFuncs{Message: func([]byte) { got.Add(1) }}); err != nil {
				b.Fatal(err)
			}
		}
		pub := connected(b, srv.URL(), ns)
		defer pub.Close()
		ps := make([][]byte, batch)
		for i := range ps {
			ps[i] = payload
		}
		run(b, pub.Subject(), func(n int) error { return pub.Publish(context.Background(), ps[:n]...) }, got.Load)
	})
}
