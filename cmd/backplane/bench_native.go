package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"
	amqp "github.com/rabbitmq/amqp091-go"
	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/natstransport"
	"github.com/backplane-go/backplane/transports/pgtransport"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// errNoNativeClient: the transport has no broker client to bench on its
// own (mem://).
var errNoNativeClient = errors.New("no native client")

// pipe is a publisher and a subscriber on one namespace.
type pipe struct {
	label   string
	publish func(ctx context.Context, p []byte) error
	flush   func(ctx context.Context) error
	close   func()
}

// transportPipe publishes and subscribes through two transports.
func transportPipe(ctx context.Context, g *globals, rawURL, ns string, onMsg func([]byte)) (*pipe, error) {
	sub, err := g.openBackplane(ctx, rawURL, ns)
	if err != nil {
		return nil, err
	}
	pub, err := g.openBackplane(ctx, rawURL, ns)
	if err != nil {
		_ = sub.Close()
		return nil, err
	}
	closeAll := func() { _ = pub.Close(); _ = sub.Close() }
	if err := g.subscribe(ctx, rawURL, sub, core.HandlerFuncs{Message: onMsg}); err != nil {
		closeAll()
		return nil, err
	}
	return &pipe{
		label:   "transport pub/sub",
		publish: func(ctx context.Context, p []byte) error { return pub.Publish(ctx, p) },
		flush:   func(context.Context) error { return nil },
		close:   closeAll,
	}, nil
}

// nativePipe publishes and subscribes with the broker's own client (the
// connections the transports would use), bypassing the transport.
func nativePipe(ctx context.Context, g *globals, rawURL, ns string, onMsg func([]byte)) (*pipe, error) {
	var bps []core.Backplane
	closeAll := func() {
		for _, bp := range bps {
			_ = bp.Close()
		}
	}
	for range 2 {
		bp, err := g.openBackplane(ctx, rawURL, ns)
		if err != nil {
			closeAll()
			return nil, err
		}
		bps = append(bps, bp)
	}
	sctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	switch sub := bps[0].(type) {
	case *natstransport.Transport:
		pub := bps[1].(*natstransport.Transport)
		snc, pnc := sub.Conn(), pub.Conn()
		s, err := snc.Subscribe(sub.Subject(), func(m *nats.Msg) { onMsg(m.Data) })
		if err == nil {
			err = snc.FlushWithContext(sctx)
		}
		if err != nil {
			closeAll()
			return nil, classify(sctx, rawURL, g.timeout, err)
		}
		return &pipe{
			label:   "nats.go client",
			publish: func(_ context.Context, p []byte) error { return pnc.Publish(pub.Subject(), p) },
			flush:   func(ctx context.Context) error { return pnc.FlushWithContext(ctx) },
			close:   func() { _ = s.Unsubscribe(); closeAll() },
		}, nil
	case *redistransport.Transport:
		pub := bps[1].(*redistransport.Transport)
		var ps *redis.PubSub
		if sub.Sharded() {
			ps = sub.Client().SSubscribe(sctx, sub.Channel())
		} else {
			ps = sub.Client().Subscribe(sctx, sub.Channel())
		}
		if _, err := ps.Receive(sctx); err != nil {
			_ = ps.Close()
			closeAll()
			return nil, classify(sctx, rawURL, g.timeout, err)
		}
		var wg sync.WaitGroup
		ch := ps.Channel()
		wg.Go(func() {
			for m := range ch {
				onMsg([]byte(m.Payload))
			}
		})
		c, channel, sharded := pub.Client(), pub.Channel(), pub.Sharded()
		return &pipe{
			label: "go-redis client",
			publish: func(ctx context.Context, p []byte) error {
				if sharded {
					return c.SPublish(ctx, channel, p).Err()
				}
				return c.Publish(ctx, channel, p).Err()
			},
			flush: func(context.Context) error { return nil },
			close: func() { _ = ps.Close(); wg.Wait(); closeAll() },
		}, nil
	case *pgtransport.Transport:
		return pgNativePipe(sctx, bps[1].(*pgtransport.Transport), sub, onMsg, closeAll, func(err error) error {
			return classify(sctx, rawURL, g.timeout, err)
		})
	case *rabbitmqtransport.Transport:
		p, err := amqpPipe(sctx, sub, bps[1].(*rabbitmqtransport.Transport), onMsg)
		if err != nil {
			closeAll()
			return nil, classify(sctx, rawURL, g.timeout, err)
		}
		inner := p.close
		p.close = func() { inner(); closeAll() }
		return p, nil
	default:
		closeAll()
		return nil, fmt.Errorf("%w for %T", errNoNativeClient, sub)
	}
}

// amqpPipe consumes from an exclusive queue of its own bound to sub's
// exchange (auto-acknowledged) on sub's connection, and publishes with
// confirms on a channel of its own on pub's connection; flush waits for
// the confirmation of the last message.
func amqpPipe(ctx context.Context, sub, pub *rabbitmqtransport.Transport, onMsg func([]byte)) (*pipe, error) {
	if err := sub.Connect(ctx); err != nil {
		return nil, err
	}
	if err := pub.Connect(ctx); err != nil {
		return nil, err
	}
	sch, err := sub.Conn().Channel()
	if err != nil {
		return nil, err
	}
	q, err := sch.QueueDeclare("", false, true, true, false, nil)
	if err == nil {
		err = sch.QueueBind(q.Name, "", sub.Exchange(), false, nil)
	}
	var msgs <-chan amqp.Delivery
	if err == nil {
		msgs, err = sch.Consume(q.Name, "", true, true, false, false, nil)
	}
	if err != nil {
		_ = sch.Close()
		return nil, err
	}
	pch, err := pub.Conn().Channel()
	if err == nil {
		err = pch.Confirm(false)
	}
	if err != nil {
		_ = sch.Close()
		return nil, err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for d := range msgs {
			onMsg(d.Body)
		}
	})
	var mu sync.Mutex
	var last *amqp.DeferredConfirmation
	exchange := pub.Exchange()
	return &pipe{
		label: "amqp091-go client",
		publish: func(_ context.Context, p []byte) error {
			dc, err := pch.PublishWithDeferredConfirm(exchange, "", false, false, amqp.Publishing{Body: p})
			if err != nil {
				return err
			}
			mu.Lock()
			if last == nil || dc.DeliveryTag > last.DeliveryTag {
				last = dc
			}
			mu.Unlock()
			return nil
		},
		flush: func(ctx context.Context) error {
			mu.Lock()
			dc := last
			mu.Unlock()
			if dc == nil {
				return nil
			}
			ok, err := dc.WaitContext(ctx)
			if err == nil && !ok {
				err = errors.New("the broker nacked a message")
			}
			return err
		},
		close: func() { _ = pch.Close(); _ = sch.Close(); wg.Wait() },
	}, nil
}
