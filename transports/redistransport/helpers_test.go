package redistransport_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bound is how long a test waits for a delivery or a recovery.
const bound = 15 * time.Second

// fastRecovery makes fault tests quick: short health checks and backoff.
var fastRecovery = []redistransport.Option{
	redistransport.WithHealthCheck(200*time.Millisecond, 500*time.Millisecond),
	redistransport.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond),
}

var seq atomic.Int64

// uniq returns a string unique to this test process.
func uniq(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
}

// recorder is a core.Handler that records what it receives.
type recorder struct {
	mu     sync.Mutex
	msgs   []string
	events []core.Event
	calls  atomic.Int64
}

func (r *recorder) HandleMessage(p []byte) {
	r.calls.Add(1)
	r.mu.Lock()
	r.msgs = append(r.msgs, string(p))
	r.mu.Unlock()
}

func (r *recorder) HandleEvent(ev core.Event) {
	r.calls.Add(1)
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
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

func (r *recorder) kinds() []core.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := make([]core.EventKind, len(r.events))
	for i, ev := range r.events {
		k[i] = ev.Kind
	}
	return k
}

// eventAfter returns the first event of kind at or after index from, and
// its index (-1 if none).
func (r *recorder) eventAfter(kind core.EventKind, from int) (core.Event, int) {
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

// expectRecovery waits for EventDisconnected and then EventReconnected
// after event index from, and returns the disconnect event.
func expectRecovery(t testing.TB, r *recorder, from int) core.Event {
	t.Helper()
	var d core.Event
	di := -1
	waitFor(t, "EventDisconnected", func() bool { d, di = r.eventAfter(core.EventDisconnected, from); return di >= 0 })
	waitFor(t, fmt.Sprintf("EventReconnected after disconnect (events %v)", r.kinds()), func() bool {
		_, i := r.eventAfter(core.EventReconnected, di+1)
		return i >= 0
	})
	return d
}

// publishUntil publishes fresh payloads until every recorder got one of
// them (messages published during a recovery may be lost).
func publishUntil(t testing.TB, pub core.Backplane, prefix string, recs ...*recorder) {
	t.Helper()
	var sent []string
	ok := eventually(bound, func() bool {
		p := uniq(prefix)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		if pub.Publish(ctx, []byte(p)) == nil {
			sent = append(sent, p)
		}
		cancel()
		for _, r := range recs {
			got := false
			for _, s := range sent {
				if r.has(s) {
					got = true
					break
				}
			}
			if !got {
				time.Sleep(20 * time.Millisecond)
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("no %q message was delivered within %v (%d published)", prefix, bound, len(sent))
	}
}

// newClient returns a go-redis client named name for addr, closed when t
// ends (after the transports using it, which are registered later).
func newClient(t testing.TB, addr, name string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: addr, ClientName: name})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newTransport returns a transport closed when t ends.
func newTransport(t testing.TB, c redis.UniversalClient, ns string, opts ...redistransport.Option) *redistransport.Transport {
	t.Helper()
	tr, err := redistransport.New(c, ns, opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
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

// sharedAddr returns the address of the shared server (host:port).
func sharedOptions(t testing.TB) *redis.Options {
	t.Helper()
	o, err := redis.ParseURL(testenv.RedisURL(t))
	if err != nil {
		t.Fatalf("parse %s: %v", testenv.RedisURLEnv, err)
	}
	return o
}

// sharedClient returns a client of the shared server named name.
func sharedClient(t testing.TB, name string) *redis.Client {
	t.Helper()
	o := sharedOptions(t)
	o.ClientName = name
	c := redis.NewClient(o)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (r *recorder) eventList() []core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Event(nil), r.events...)
}
