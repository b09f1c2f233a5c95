package rabbitmqtransport_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// TestMain stops the private node the tests of this binary share, then
// looks for leaked goroutines.
func TestMain(m *testing.M) {
	code := m.Run()
	node.mu.Lock()
	if node.srv != nil {
		node.srv.Stop()
	}
	node.mu.Unlock()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// node is the private RabbitMQ node of this test binary: a node takes
// seconds to start, so the tests that fault the broker share one. Tests
// that restart it do not run in parallel with each other (the conformance
// suites promise so), and every test has namespaces of its own.
var node struct {
	mu  sync.Mutex
	srv *testenv.RabbitMQServer
	err error
}

// privateNode returns the binary's private node, starting it on first use.
func privateNode(t testing.TB) *testenv.RabbitMQServer {
	t.Helper()
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.srv == nil && node.err == nil {
		node.srv, node.err = testenv.LaunchRabbitMQ()
	}
	if node.err != nil {
		testenv.Unavailable(t, "private RabbitMQ node: %v", node.err)
	}
	return node.srv
}

// bound is how long a test waits for a delivery or a recovery.
const bound = 20 * time.Second

// fast makes fault tests quick: a short heartbeat and backoff.
var fast = []rabbitmqtransport.Option{
	rabbitmqtransport.WithHeartbeat(2 * time.Second),
	rabbitmqtransport.WithReconnectBackoff(20*time.Millisecond, 300*time.Millisecond),
}

var seq atomic.Int64

// uniq returns a string unique to this test process.
func uniq(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
}

// open returns a Transport of url with a connection name unique to it,
// closed when t ends.
func open(t testing.TB, url, ns string, opts ...rabbitmqtransport.Option) *rabbitmqtransport.Transport {
	t.Helper()
	opts = append(append([]rabbitmqtransport.Option{rabbitmqtransport.WithConnectionName(uniq("bp"))}, fast...), opts...)
	tr, err := rabbitmqtransport.Open(url, ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// dropExchanges deletes, when t ends, the exchange of each namespace a
// test used on a broker that outlives it: the broker deletes an exchange
// by itself only once a queue was bound to it and the last one went.
type dropExchanges struct {
	url  string
	mu   sync.Mutex
	seen map[string]bool
}

func (d *dropExchanges) add(t testing.TB, exchange string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen == nil {
		d.seen = map[string]bool{}
	}
	if d.seen[exchange] {
		return
	}
	d.seen[exchange] = true
	t.Cleanup(func() {
		conn, err := amqp.Dial(d.url)
		if err != nil {
			return
		}
		defer conn.Close()
		if ch, err := conn.Channel(); err == nil {
			_ = ch.ExchangeDelete(exchange, false, false)
		}
	})
}

// recorder is a core.Handler that records what it receives.
type recorder struct {
	mu     sync.Mutex
	msgs   []string
	events []core.Event
}

func (r *recorder) HandleMessage(p []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, string(p))
	r.mu.Unlock()
}

func (r *recorder) HandleEvent(ev core.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range r.msgs {
		if m == p {
			return true
		}
	}
	return false
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// event returns the first event of kind at or after index from, and its
// index (-1 if none).
func (r *recorder) event(kind core.EventKind, from int) (core.Event, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := from; i < len(r.events); i++ {
		if r.events[i].Kind == kind {
			return r.events[i], i
		}
	}
	return core.Event{}, -1
}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFor fails t unless cond holds within bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !eventually(bound, cond) {
		t.Fatalf("%s: not within %v", what, bound)
	}
}

// subscribe subscribes tr with a fresh recorder.
func subscribe(t testing.TB, tr core.Backplane) *recorder {
	t.Helper()
	r := &recorder{}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := tr.Subscribe(ctx, r); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return r
}

// publish publishes p within bound.
func publish(t testing.TB, tr core.Backplane, p ...[]byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	return tr.Publish(ctx, p...)
}
