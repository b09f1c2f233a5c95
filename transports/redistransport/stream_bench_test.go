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

// rawStream is go-redis on one stream, without the engine: XADD with the
// transport's default trimming, and a reader per subscriber on a client of
// its own doing XREAD BLOCK from its last entry ID.
func rawStream(b *testing.B, url, key string) propbench.Raw {
	opt, err := redis.ParseURL(url)
	if err != nil {
		b.Fatal(err)
	}
	c := redis.NewClient(opt)
	b.Cleanup(func() { c.Close() })
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			return c.XAdd(ctx, &redis.XAddArgs{
				Stream: key, MaxLen: redistransport.DefaultStreamMaxLen, Approx: true, Values: []any{"p", p},
			}).Err()
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			last := "0-0"
			msgs, err := c.XRevRangeN(ctx, key, "+", "-", 1).Result()
			if err != nil {
				return nil, err
			}
			if len(msgs) > 0 {
				last = msgs[0].ID
			}
			ropt, err := redis.ParseURL(url)
			if err != nil {
				return nil, err
			}
			rc := redis.NewClient(ropt)
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					res, err := rc.XRead(context.Background(), &redis.XReadArgs{
						Streams: []string{key, last}, Count: 1000, Block: time.Second,
					}).Result()
					if err == redis.Nil {
						continue
					}
					if err != nil {
						return
					}
					for _, m := range res[0].Messages {
						last = m.ID
						p, _ := m.Values["p"].(string)
						fn([]byte(p))
					}
				}
			}()
			return func() { rc.Close(); <-done }, nil
		},
	}
}

// BenchmarkStreamPropagation is BenchmarkPropagation in the stream mode,
// next to raw go-redis XADD and XREAD BLOCK on a stream of their own on the
// same server in the same run. Run with -benchtime 1x.
func BenchmarkStreamPropagation(b *testing.B) {
	url := testenv.RedisURL(b)
	ns := fmt.Sprintf("propbench-stream-%d", time.Now().UnixNano())
	raw := redistransport.DefaultChannelPrefix + "{" + ns + "-raw}"
	b.Cleanup(func() {
		if opt, err := redis.ParseURL(url); err == nil {
			c := redis.NewClient(opt)
			c.Del(context.Background(), raw, redistransport.DefaultChannelPrefix+"{"+ns+"}")
			c.Close()
		}
	})
	propbench.Bench(b,
		func() (core.Backplane, error) {
			return redistransport.Open(url, ns, redistransport.WithStream(redistransport.StreamOptions{}))
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawStream(b, url, raw)
			}
			return rawStream(b, url, raw), subs
		})
}
