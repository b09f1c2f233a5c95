package rabbitmqtransport_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// rawAMQP is amqp091-go on a fanout exchange of its own, without the
// engine: Publish publishes on a channel in confirm mode and waits for the
// broker's confirmation, as the transport's Publish does; Subscribe
// consumes (auto-acknowledged) from an exclusive queue bound to the
// exchange. Each Raw has a connection of its own.
func rawAMQP(b *testing.B, url, exchange string) propbench.Raw {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	pub, err := conn.Channel()
	if err == nil {
		err = pub.Confirm(false)
	}
	if err == nil {
		err = pub.ExchangeDeclare(exchange, amqp.ExchangeFanout, false, false, false, false, nil)
	}
	if err != nil {
		b.Fatal(err)
	}
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			dc, err := pub.PublishWithDeferredConfirm(exchange, "", false, false, amqp.Publishing{Body: p})
			if err != nil {
				return err
			}
			ok, err := dc.WaitContext(ctx)
			if err == nil && !ok {
				err = errors.New("nacked")
			}
			return err
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			ch, err := conn.Channel()
			if err != nil {
				return nil, err
			}
			q, err := ch.QueueDeclare("", false, true, true, false, nil)
			if err == nil {
				err = ch.QueueBind(q.Name, "", exchange, false, nil)
			}
			var msgs <-chan amqp.Delivery
			if err == nil {
				msgs, err = ch.Consume(q.Name, "", true, true, false, false, nil)
			}
			if err != nil {
				_ = ch.Close()
				return nil, err
			}
			done := make(chan struct{})
			go func() {
				defer close(done)
				for d := range msgs {
					fn(d.Body)
				}
			}()
			return func() { _ = ch.Close(); <-done }, nil
		},
	}
}

// concurrentPublishRabbit sets Options.ConcurrentPublish of the engine's
// transports in BenchmarkPropagation: go test -bench Propagation
// ./transports/rabbitmqtransport/ -args -concurrent_publish=4.
var concurrentPublishRabbit = flag.Int("concurrent_publish", 0, "rabbitmqtransport Options.ConcurrentPublish in BenchmarkPropagation (0: the default)")

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 1k and 10k invalidations/s, and
// keys/s with 1 publisher and 4 subscribers, next to raw amqp091-go on the
// same broker in the same run. Run with -benchtime 1x.
func BenchmarkPropagation(b *testing.B) {
	url := testenv.RabbitMQURL(b)
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	drop := &dropExchanges{url: url}
	drop.add(b, rabbitmqtransport.DefaultExchangePrefix+ns)
	drop.add(b, "raw."+ns)
	propbench.Bench(b,
		func() (core.Backplane, error) {
			return rabbitmqtransport.Open(url, ns, rabbitmqtransport.WithConcurrentPublish(*concurrentPublishRabbit))
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawAMQP(b, url, "raw."+ns)
			}
			return rawAMQP(b, url, "raw."+ns), subs
		})
}
