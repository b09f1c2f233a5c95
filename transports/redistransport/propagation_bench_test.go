package redistransport_test

import (
	"context"
	"flag"
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

// concurrentPublish sets Options.ConcurrentPublish of the engine's
// transports in BenchmarkPropagation: go test -bench Propagation
// ./transports/redistransport/ -args -concurrent_publish=4.
var concurrentPublish = flag.Int("concurrent_publish", 0, "redistransport Options.ConcurrentPublish in BenchmarkPropagation (0: the default)")

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw go-redis pub/sub on
// the same server in the same run. Run with -benchtime 1x: each
// sub-benchmark is one fixed-size measurement.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.RedisURL(b)
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	propbench.Bench(b,
		func() (core.Backplane, error) {
			return redistransport.Open(url, ns, redistransport.WithConcurrentPublish(*concurrentPublish))
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawRedis(b, url, ns+"-raw")
			}
			return rawRedis(b, url, ns+"-raw"), subs
		})
}
