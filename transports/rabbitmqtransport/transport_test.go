package rabbitmqtransport_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

func TestOptionsValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  rabbitmqtransport.Option
		want string
	}{
		{"negative payload", rabbitmqtransport.WithMaxPayload(-1), "MaxPayload"},
		{"payload over the broker's limit", rabbitmqtransport.WithMaxPayload(1 << 30), "MaxPayload"},
		{"prefetch", rabbitmqtransport.WithPrefetch(70000), "Prefetch"},
		{"backoff", rabbitmqtransport.WithReconnectBackoff(time.Second, time.Millisecond), "MaxReconnectBackoff"},
		{"queue name", rabbitmqtransport.WithQueueName(strings.Repeat("q", 256)), "QueueName"},
		{"exchange name", rabbitmqtransport.WithExchangePrefix(strings.Repeat("x", 255)), "exchange name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rabbitmqtransport.Open("amqp://127.0.0.1:1/", "ns", tc.opt)
			if !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v; want ErrInvalidOption naming %s", err, tc.want)
			}
		})
	}
	if _, err := rabbitmqtransport.Open("amqp://127.0.0.1:1/", ""); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("empty namespace: %v", err)
	}
	if _, err := rabbitmqtransport.Open("http://u:secret@127.0.0.1/", "ns"); !errors.Is(err, core.ErrInvalidOption) || strings.Contains(err.Error(), "secret") {
		t.Fatalf("http URL: %v; want ErrInvalidOption without the password", err)
	}
	if _, err := rabbitmqtransport.New(nil, "ns"); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("New(nil): %v", err)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	bp, err := transports.Open(ctx, "amqp://guest:guest@127.0.0.1:1/?exchange_prefix=x.&max_payload=1000&concurrent_publish=2&queue_max_length=none&heartbeat=0&reconnect_backoff=10ms", "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	tr := bp.(*rabbitmqtransport.Transport)
	if tr.Exchange() != "x.ns" {
		t.Errorf("Exchange = %q, want x.ns", tr.Exchange())
	}
	if l := tr.Limits(); l.MaxPayload != 1000 || l.ConcurrentPublish != 2 || l.Durable {
		t.Errorf("Limits = %+v", l)
	}
	for _, tc := range []struct{ url, want string }{
		{"amqp://127.0.0.1/?bogus=1", "bogus"},
		{"amqp://127.0.0.1/?heartbeat=fast", "heartbeat"},
		{"amqp://127.0.0.1/?queue_max_length=0", "queue_max_length"},
		{"amqp://127.0.0.1/?max_payload=-1", "max_payload"},
		{"amqp://127.0.0.1/?tls_server_name=x", "amqps"},
		{"amqps://127.0.0.1/?tls_ca=/nonexistent", "tls_ca"},
	} {
		_, err := transports.Open(ctx, tc.url, "ns")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%s): %v; want an error naming %s", tc.url, err, tc.want)
		}
	}
	if _, err := transports.Open(ctx, "amqp://127.0.0.1/?bogus=1", "ns"); !errors.Is(err, transports.ErrUnknownParameter) {
		t.Errorf("unknown parameter: %v; want ErrUnknownParameter", err)
	}
}

// TestUnreachable checks that a broker that is not there fails Publish
// and Subscribe within their deadline, naming the address.
func TestUnreachable(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tr := open(t, "amqp://guest:guest@"+addr+"/", uniq("ns"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := tr.Publish(ctx, []byte("x")); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Publish: %v; want an error naming %s", err, addr)
	}
	if err := tr.Subscribe(ctx, &recorder{}); err == nil {
		t.Fatal("Subscribe succeeded without a broker")
	}
}

// TestPayloadLimit checks the limit before anything is sent.
func TestPayloadLimit(t *testing.T) {
	tr := open(t, "amqp://127.0.0.1:1/", uniq("ns"), rabbitmqtransport.WithMaxPayload(10))
	err := tr.Publish(context.Background(), make([]byte, 11))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("Publish: %v; want ErrPayloadTooLarge", err)
	}
}

// TestOverflowReportsLoss fills a small queue behind a handler that
// blocks, and checks that the broker's drops come back as EventLoss.
func TestOverflowReportsLoss(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	ns := uniq("overflow")
	sub := open(t, url, ns, rabbitmqtransport.WithQueueLimits(5, -1), rabbitmqtransport.WithPrefetch(1))
	drop := &dropExchanges{url: url}
	drop.add(t, sub.Exchange())
	release := make(chan struct{})
	losses := make(chan core.Event, 100)
	first := make(chan struct{}, 1)
	h := core.HandlerFuncs{
		Message: func([]byte) {
			select {
			case first <- struct{}{}:
				<-release
			default:
			}
		},
		Event: func(ev core.Event) {
			if ev.Kind == core.EventLoss {
				losses <- ev
			}
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := sub.Subscribe(ctx, h); err != nil {
		t.Fatal(err)
	}
	pub := open(t, url, ns)
	for i := range 50 {
		if err := pub.Publish(ctx, []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	select {
	case ev := <-losses:
		if !errors.Is(ev.Err, rabbitmqtransport.ErrOverflow) {
			t.Fatalf("EventLoss.Err = %v; want ErrOverflow", ev.Err)
		}
	case <-ctx.Done():
		t.Fatal("no EventLoss after overflowing a queue of 5 messages")
	}
}

// TestGivenConnection checks that a Transport over the application's
// connection leaves it open at Close, and that it reports a disconnect and
// stays down when that connection closes.
func TestGivenConnection(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ns := uniq("given")
	tr, err := rabbitmqtransport.New(conn, ns, fast...)
	if err != nil {
		t.Fatal(err)
	}
	(&dropExchanges{url: url}).add(t, tr.Exchange())
	r := subscribe(t, tr)
	if err := publish(t, tr, []byte("one")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "own message", func() bool { return r.has("one") })
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if conn.IsClosed() {
		t.Fatal("Close closed the given connection")
	}
	if err := tr.Publish(context.Background(), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}

	tr2, err := rabbitmqtransport.New(conn, ns, fast...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr2.Close()
	r2 := subscribe(t, tr2)
	_ = conn.Close()
	waitFor(t, "EventDisconnected", func() bool { _, i := r2.event(core.EventDisconnected, 0); return i >= 0 })
	waitFor(t, "Publish failing with ErrConnectionClosed", func() bool {
		err := tr2.Publish(context.Background(), []byte("x"))
		return errors.Is(err, rabbitmqtransport.ErrNotConnected) && errors.Is(err, rabbitmqtransport.ErrConnectionClosed)
	})
	if _, i := r2.event(core.EventReconnected, 0); i >= 0 {
		t.Fatal("EventReconnected over a closed given connection")
	}
}

// TestGivenConnectionChannelReopened closes the Transport's consuming
// channel by deleting its queue: the Transport reopens its channels on the
// same connection.
func TestGivenConnectionChannelReopened(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tr, err := rabbitmqtransport.New(conn, uniq("reopen"), fast...)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	(&dropExchanges{url: url}).add(t, tr.Exchange())
	r := subscribe(t, tr)
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDelete(tr.Queue(), false, false, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "EventReconnected", func() bool { _, i := r.event(core.EventReconnected, 0); return i >= 0 })
	d, _ := r.event(core.EventDisconnected, 0)
	if d.Err == nil || !strings.Contains(d.Err.Error(), "cancelled") {
		t.Errorf("EventDisconnected.Err = %v; want the consumer's cancellation", d.Err)
	}
	waitFor(t, "delivery after the reopen", func() bool {
		p := uniq("after")
		return publish(t, tr, []byte(p)) == nil && eventually(time.Second, func() bool { return r.has(p) })
	})
}

// TestWrongCredentials checks that a refused login fails Subscribe before
// its deadline, saying so (the broker answers a failed login after a
// delay of its own, seconds).
func TestWrongCredentials(t *testing.T) {
	u, err := url.Parse(testenv.RabbitMQURL(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("guest", "wrong-password")
	tr := open(t, u.String(), uniq("auth"))
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	err = tr.Subscribe(ctx, &recorder{})
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Subscribe with a wrong password: %v; want the broker's 403 before the deadline", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("the error shows the password: %v", err)
	}
}

// TestNotABroker dials a port where something else answers (a listener
// that accepts and never speaks): Publish fails at its deadline.
func TestNotABroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	tr := open(t, "amqp://guest:guest@"+ln.Addr().String()+"/", uniq("silent"))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := tr.Publish(ctx, []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Publish to a silent listener: %v; want the context's deadline", err)
	}
}

// TestOverflowKeepsTheLink overflows a queue while its messages are being
// handled, acknowledged in batches: losses are reported and the link stays
// up (an acknowledgement the broker does not expect, such as one of a loss
// delivery that a batch already covered, would close the channel).
func TestOverflowKeepsTheLink(t *testing.T) {
	url := testenv.RabbitMQURL(t)
	ns := uniq("overflow-link")
	sub := open(t, url, ns, rabbitmqtransport.WithQueueLimits(20, -1), rabbitmqtransport.WithPrefetch(64))
	(&dropExchanges{url: url}).add(t, sub.Exchange())
	r := &recorder{}
	var losses atomic.Int64
	h := core.HandlerFuncs{
		Message: func(p []byte) { time.Sleep(200 * time.Microsecond); r.HandleMessage(p) },
		Event: func(ev core.Event) {
			if ev.Kind == core.EventLoss {
				losses.Add(1)
			}
			r.HandleEvent(ev)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := sub.Subscribe(ctx, h); err != nil {
		t.Fatal(err)
	}
	pub := open(t, url, ns)
	batch := make([][]byte, 100)
	for i := range batch {
		batch[i] = []byte("m")
	}
	for range 20 {
		if err := pub.Publish(ctx, batch...); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, []byte("last")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the last message", func() bool { return r.has("last") })
	if losses.Load() == 0 {
		t.Fatal("no EventLoss after 2,000 messages into a queue of 20")
	}
	if ev, i := r.event(core.EventDisconnected, 0); i >= 0 {
		t.Fatalf("the overflow cost the link: %v", ev.Err)
	}
}
