package natstransport_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// rawJetStream is nats.go's JetStream client on one stream, without the
// engine: a synchronous JetStream publish (it returns once the stream
// stored the message, as the transport's Publish does) and an ordered
// consumer that starts at the stream's end.
func rawJetStream(b *testing.B, url, stream, subject string) propbench.Raw {
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name: stream, Subjects: []string{subject}, Storage: jetstream.FileStorage, MaxAge: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			_, err := js.Publish(ctx, subject, p)
			return err
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{
				DeliverPolicy: jetstream.DeliverNewPolicy,
			})
			if err != nil {
				return nil, err
			}
			cc, err := cons.Consume(func(m jetstream.Msg) { fn(m.Data()) })
			if err != nil {
				return nil, err
			}
			return cc.Stop, nil
		},
	}
}

// BenchmarkPropagationJetStream is BenchmarkPropagation in the JetStream
// mode (file storage), next to raw nats.go JetStream (publish with ack,
// ordered consumer) on the same server in the same run. Run with
// -benchtime 1x.
func BenchmarkPropagationJetStream(b *testing.B) {
	url := testenv.NATSURL(b)
	ns := fmt.Sprintf("propbench-js-%d", time.Now().UnixNano())
	rawStream, rawSubject := "raw-"+ns, "raw."+ns
	var stream string
	b.Cleanup(func() {
		deleteStream(url, rawStream)
		if stream != "" {
			deleteStream(url, stream)
		}
	})
	propbench.Bench(b,
		func() (core.Backplane, error) {
			tr, err := natstransport.Open(url, ns, natstransport.WithConcurrentPublish(*concurrentPublish),
				natstransport.WithJetStream(natstransport.JetStreamOptions{MaxAge: time.Minute}))
			if err == nil {
				stream = tr.Stream()
			}
			return tr, err
		},
		func(b *testing.B, subscribers int) (propbench.Raw, []propbench.Raw) {
			subs := make([]propbench.Raw, subscribers)
			for i := range subs {
				subs[i] = rawJetStream(b, url, rawStream, rawSubject)
			}
			return rawJetStream(b, url, rawStream, rawSubject), subs
		})
}
