package servicebustransport_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/propbench"
	"github.com/backplane-go/backplane/internal/testenv/sbfake"
	"github.com/backplane-go/backplane/transports/memtransport"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// rawSB is the SDK's sender and a ReceiveAndDelete receiver on a
// subscription of its own, without the engine.
func rawSB(b *testing.B, srv *sbfake.Server, topic, sub string) propbench.Raw {
	srv.AddTopic(topic, sub)
	c, err := azservicebus.NewClientFromConnectionString(srv.ConnectionString(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close(context.Background()) })
	snd, err := c.NewSender(topic, nil)
	if err != nil {
		b.Fatal(err)
	}
	return propbench.Raw{
		Publish: func(ctx context.Context, p []byte) error {
			return snd.SendMessage(ctx, &azservicebus.Message{Body: p}, nil)
		},
		Subscribe: func(ctx context.Context, fn func([]byte)) (func(), error) {
			r, err := c.NewReceiverForSubscription(topic, sub, &azservicebus.ReceiverOptions{ReceiveMode: azservicebus.ReceiveModeReceiveAndDelete})
			if err != nil {
				return nil, err
			}
			if _, err := r.PeekMessages(ctx, 1, nil); err != nil {
				return nil, err
			}
			rctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				opts := &azservicebus.ReceiveMessagesOptions{TimeAfterFirstMessage: time.Microsecond}
				for rctx.Err() == nil {
					msgs, _ := r.ReceiveMessages(rctx, 256, opts)
					for _, m := range msgs {
						fn(m.Body)
					}
				}
			}()
			return func() { cancel(); <-done; _ = r.Close(context.Background()) }, nil
		},
	}
}

// BenchmarkPropagation measures one-way propagation latency (Invalidate on
// one instance until evicted on another) at 200 and 1k invalidations/s,
// and keys/s with 1 publisher and 4 subscribers: the engine over the
// in-process fake Service Bus, the raw SDK over the same fake, and the
// engine over memtransport, in the same run. Run with -benchtime 1x.
//
// The fake is an AMQP server in the same process on loopback: these numbers
// measure the SDK and the Transport, not Service Bus, whose round trips
// (tens of milliseconds across a region, throttling per tier) dominate in
// production. They do not predict Azure's numbers.
func BenchmarkPropagation(b *testing.B) {
	srv, err := sbfake.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("propbench-%d", time.Now().UnixNano())
	var inst atomic.Int64
	newSB := func() (core.Backplane, error) {
		sub := fmt.Sprintf("i%d", inst.Add(1))
		srv.AddTopic(servicebustransport.DefaultTopicPrefix+ns, sub)
		return servicebustransport.Open(srv.ConnectionString(), ns, servicebustransport.WithSubscription(sub))
	}
	hub := memtransport.NewHub()
	b.Cleanup(func() { _ = hub.Close() })
	newMem := func() (core.Backplane, error) { return hub.New(ns), nil }
	raw := func(subs int) (propbench.Raw, []propbench.Raw) {
		topic := "raw." + ns
		s := make([]propbench.Raw, subs)
		for i := range s {
			s[i] = rawSB(b, srv, topic, fmt.Sprintf("r%d-%d", subs, i))
		}
		return rawSB(b, srv, topic, fmt.Sprintf("pub%d", subs)), s
	}
	for _, rate := range []float64{200, 1000} {
		n := int(rate * 3)
		b.Run(fmt.Sprintf("latency-%d/raw-sdk", int(rate)), func(b *testing.B) {
			pub, subs := raw(1)
			for b.Loop() {
				r, err := propbench.RawLatency(ctx, pub, subs, n, rate)
				propbench.Report(b, r, err)
			}
		})
		b.Run(fmt.Sprintf("latency-%d/engine-servicebus", int(rate)), func(b *testing.B) {
			for b.Loop() {
				r, err := propbench.EngineLatency(ctx, newSB, 1, n, rate)
				propbench.Report(b, r, err)
			}
		})
		b.Run(fmt.Sprintf("latency-%d/engine-mem", int(rate)), func(b *testing.B) {
			for b.Loop() {
				r, err := propbench.EngineLatency(ctx, newMem, 1, n, rate)
				propbench.Report(b, r, err)
			}
		})
	}
	const n = 10000
	b.Run("throughput-1pub-4sub/engine-servicebus", func(b *testing.B) {
		for b.Loop() {
			r, err := propbench.EngineLatency(ctx, newSB, 4, n, 0)
			propbench.Report(b, r, err)
		}
	})
	b.Run("throughput-1pub-4sub/engine-mem", func(b *testing.B) {
		for b.Loop() {
			r, err := propbench.EngineLatency(ctx, newMem, 4, n, 0)
			propbench.Report(b, r, err)
		}
	})
}
