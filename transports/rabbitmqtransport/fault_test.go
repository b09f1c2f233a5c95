package rabbitmqtransport_test

import (
	"context"
	"errors"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// TestNackIsAnError binds a full queue that rejects publishes
// (x-overflow=reject-publish) to the exchange: the broker nacks every
// message routed to it, and Publish fails with ErrNacked.
func TestNackIsAnError(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	tr := open(t, url, uniq("nack"))
	(&dropExchanges{url: url}).add(t, tr.Exchange())
	r := subscribe(t, tr) // its queue keeps the exchange when the other goes
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclare("", false, true, true, false, amqp.Table{"x-max-length": int64(0), "x-overflow": "reject-publish"})
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "", tr.Exchange(), false, nil); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, tr, []byte("rejected")); !errors.Is(err, rabbitmqtransport.ErrNacked) {
		t.Fatalf("Publish to a full reject-publish queue: %v; want ErrNacked", err)
	}
	// A nack leaves the channel usable: once the queue is gone, publishes
	// are confirmed again.
	if _, err := ch.QueueDelete(q.Name, false, false, false); err != nil {
		t.Fatal(err)
	}
	if err := publish(t, tr, []byte("accepted")); err != nil {
		t.Fatalf("Publish after the queue went: %v", err)
	}
	waitFor(t, "own message after the nack", func() bool { return r.has("accepted") })
	if _, i := r.event(core.EventDisconnected, 0); i >= 0 {
		t.Fatal("a nack was reported as a disconnect")
	}
}

// TestHeartbeatNoticesDeadBroker holds everything between an instance and
// the broker (a broker that died without closing the TCP connection): the
// heartbeat times out, the instance reports the disconnect, and it
// reconnects once the link is back.
func TestHeartbeatNoticesDeadBroker(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	var proxies shipped.Proxies
	pu, p := proxies.Via(t, url)
	tr := open(t, pu, uniq("heartbeat"), rabbitmqtransport.WithHeartbeat(time.Second))
	(&dropExchanges{url: url}).add(t, tr.Exchange())
	r := subscribe(t, tr)
	p.SetStall(faultproxy.Both, true)
	waitFor(t, "EventDisconnected", func() bool { _, i := r.event(core.EventDisconnected, 0); return i >= 0 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := tr.Publish(ctx, []byte("x")); err == nil {
		t.Fatal("Publish succeeded while the broker was unreachable")
	}
	p.Heal()
	p.Reset()
	waitFor(t, "EventReconnected", func() bool { _, i := r.event(core.EventReconnected, 0); return i >= 0 })
	waitFor(t, "delivery after the reconnect", func() bool {
		msg := uniq("after")
		return publish(t, tr, []byte(msg)) == nil && eventually(time.Second, func() bool { return r.has(msg) })
	})
}

// TestBrokerRestartQueueRenamed restarts the private node: the instance's
// broker-named queue is gone and a new one, with a new name, is declared.
func TestBrokerRestartQueueRenamed(t *testing.T) {
	srv := privateNode(t)
	tr := open(t, srv.URL(), uniq("restart"))
	r := subscribe(t, tr)
	before := tr.Queue()
	if err := srv.TryRestart(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EventReconnected", func() bool { _, i := r.event(core.EventReconnected, 0); return i >= 0 })
	ev, _ := r.event(core.EventReconnected, 0)
	if ev.Resumed {
		t.Error("EventReconnected.Resumed after a restart: the queue's messages are gone")
	}
	if after := tr.Queue(); after == "" || after == before {
		t.Errorf("queue after the restart = %q, before %q; want a new one", after, before)
	}
	waitFor(t, "delivery after the restart", func() bool {
		msg := uniq("after")
		return publish(t, tr, []byte(msg)) == nil && eventually(time.Second, func() bool { return r.has(msg) })
	})
}

// TestPublisherOutlivesExchange: the exchange is auto-deleted when the last
// subscriber leaves; a Transport that only publishes gets one failed
// Publish, then declares the exchange again and publishes.
func TestPublisherOutlivesExchange(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	ns := uniq("outlive")
	pub := open(t, url, ns)
	if err := pub.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := open(t, url, ns)
	r := subscribe(t, sub)
	if err := publish(t, pub, []byte("first")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "first message", func() bool { return r.has("first") })
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	// The broker deletes the queue, then the exchange, a moment after the
	// connection closed: publish until that happened and the Transport
	// recovered.
	failed := false
	waitFor(t, "a publish failing, then succeeding again", func() bool {
		err := publish(t, pub, []byte("again"))
		if err != nil {
			if !errors.Is(err, rabbitmqtransport.ErrNotConnected) {
				t.Fatalf("Publish: %v; want ErrNotConnected", err)
			}
			failed = true
		}
		time.Sleep(10 * time.Millisecond)
		return failed && err == nil
	})
	// The exchange was declared again: a new subscriber hears the publisher.
	sub2 := open(t, url, ns)
	r2 := subscribe(t, sub2)
	(&dropExchanges{url: url}).add(t, pub.Exchange())
	waitFor(t, "delivery over the new exchange", func() bool {
		return publish(t, pub, []byte("new")) == nil && eventually(time.Second, func() bool { return r2.has("new") })
	})
}
