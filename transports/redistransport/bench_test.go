package redistransport_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// BenchmarkPublish compares, on the same server and channel with one
// subscriber draining it, raw go-redis with one PUBLISH round trip per
// message against Transport.Publish sending batches in one pipeline. Each
// sub-benchmark reports msgs/s; b.N counts messages.
func BenchmarkPublish(b *testing.B) {
	url := testenv.RedisURL(b)
	opts, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()
	ctx := context.Background()
	ns := uniq("bench")

	tr, err := redistransport.New(client, ns)
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	sub, err := redistransport.Open(url, ns)
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Close()
	var received atomic.Int64
	if err := sub.Subscribe(ctx, core.HandlerFuncs{Message: func([]byte) { received.Add(1) }}); err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 64) // about one encoded invalidation of a few keys

	b.Run("raw-go-redis/publish-per-message", func(b *testing.B) {
		b.SetBytes(int64(len(payload)))
		for b.Loop() {
			if err := client.Publish(ctx, tr.Channel(), payload).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	for _, batch := range []int{1, 16, 128} {
		b.Run(fmt.Sprintf("transport/batch=%d", batch), func(b *testing.B) {
			payloads := make([][]byte, batch)
			for i := range payloads {
				payloads[i] = payload
			}
			b.SetBytes(int64(len(payload)))
			for i := 0; i < b.N; i += batch {
				n := min(batch, b.N-i)
				if err := tr.Publish(ctx, payloads[:n]...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
