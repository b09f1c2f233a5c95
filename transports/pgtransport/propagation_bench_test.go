package pgtransport_test

import (
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/pgtransport"
)

// rawPG is pgx doing what the transport does, without it: pg_notify of the
// payload's base64 text on a pool connection (one implicit transaction per
// message), and LISTEN on a connection of its own read with
// WaitForNotification.
func rawPG(b *testing.B, url, channel string) propbench.Raw {
	pool, err := pgxpool.New(context.Background(), url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			_, err := pool.Exec(ctx, "SELECT pg_notify($1, $2)", channel, base64.StdEncoding.EncodeToString(p))
			return err
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				return nil, err
			}
			if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
				_ = conn.Close(context.Background())
				return nil, err
			}
			life, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					n, err := conn.WaitForNotification(life)
					if err != nil {
						return
					}
					if p, err := base64.StdEncoding.DecodeString(n.Payload); err == nil {
						fn(p)
					}
				}
			})
			return func() { stop(); wg.Wait(); _ = conn.Close(context.Background()) }, nil
		},
	}
}

// concurrentPublish sets Options.ConcurrentPublish of the engine's
// transports in BenchmarkPropagation: go test -bench Propagation
// ./transports/pgtransport/ -args -concurrent_publish=4.
var concurrentPublish = flag.Int("concurrent_publish", 0, "pgtransport Options.ConcurrentPublish in BenchmarkPropagation (0: the default)")

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw pgx NOTIFY/LISTEN
// on the same server in the same run: the shared server
// (BACKPLANE_POSTGRES_URL or 127.0.0.1:5432). Run with -benchtime 1x:
// each sub-benchmark is one fixed-size measurement.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.PostgresURL(b)
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	propbench.Bench(b,
		func() (core.Backplane, error) {
			return pgtransport.Open(url, ns, pgtransport.WithConcurrentPublish(*concurrentPublish))
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			channel := pgtransport.DefaultChannelPrefix + ns + "-raw"
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawPG(b, url, channel)
			}
			return rawPG(b, url, channel), subs
		})
}
