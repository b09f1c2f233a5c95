package natstransport_test

import (
	"context"
	"flag"
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

// concurrentPublish sets Options.ConcurrentPublish of the engine's
// transports in BenchmarkPropagation: go test -bench Propagation
// ./transports/natstransport/ -args -concurrent_publish=4.
var concurrentPublish = flag.Int("concurrent_publish", 0, "natstransport Options.ConcurrentPublish in BenchmarkPropagation (0: the default)")

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw nats.go on the
// same server in the same run. Run with -benchtime 1x.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.NATSURL(b)
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	propbench.Bench(b,
		func() (core.Backplane, error) {
			return natstransport.Open(url, ns, natstransport.WithConcurrentPublish(*concurrentPublish))
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawNATS(b, url, "raw."+ns)
			}
			return rawNATS(b, url, "raw."+ns), subs
		})
}
