package pgtransport_test

import (
	"context"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/pgtransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// bound is how long a test waits for a delivery or a recovery.
const bound = 15 * time.Second

// fastRecovery makes fault tests quick: short pings and backoff.
var fastRecovery = []pgtransport.Option{
	pgtransport.WithPing(200*time.Millisecond, 500*time.Millisecond),
	pgtransport.WithReconnectBackoff(10*time.Millisecond, 200*time.Millisecond),
}

var seq atomic.Int64

// uniq returns a string unique to this test process.
func uniq(prefix string) string {
	return prefix + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatInt(seq.Add(1), 10)
}

// named returns rawURL with application_name=name, so that the test can
// find (and terminate) the instance's backends, even on a shared server.
func named(t testing.TB, rawURL, name string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("parse %s: %v", rawURL, err)
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// appName returns the application_name of tr's connections.
func appName(tr *pgtransport.Transport) string {
	return tr.Pool().Config().ConnConfig.RuntimeParams["application_name"]
}

// openNamed returns a transport that owns a pool of rawURL whose
// connections carry a name unique to this instance.
func openNamed(t testing.TB, rawURL, ns string, opts ...pgtransport.Option) *pgtransport.Transport {
	t.Helper()
	opts = append(append([]pgtransport.Option{}, fastRecovery...), opts...)
	tr, err := pgtransport.Open(named(t, rawURL, uniq("cf")), ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return tr
}

// newPool returns a pool of rawURL, closed when t ends (after the
// transports using it, which are registered later).
func newPool(t testing.TB, rawURL string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), rawURL)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// newTransport returns a transport over pool, closed when t ends.
func newTransport(t testing.TB, pool *pgxpool.Pool, ns string, opts ...pgtransport.Option) *pgtransport.Transport {
	t.Helper()
	tr, err := pgtransport.New(pool, ns, append(append([]pgtransport.Option{}, fastRecovery...), opts...)...)
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

// terminate terminates the backends of bp on the server at adminURL (its
// listener connection and the pool's), found by their application_name.
// If the listener is reconnecting from an earlier fault, it waits until
// there is a connection to terminate.
func terminate(t testing.TB, adminURL string, bp core.Backplane) {
	t.Helper()
	tr := asTransport(bp)
	name := appName(tr)
	if !eventually(bound, func() bool {
		return tr.ListenerPID() != 0 && testenv.PostgresTerminate(t, adminURL, name) > 0
	}) {
		t.Fatalf("terminate: no backend named %q within %v", name, bound)
	}
}

func asTransport(bp core.Backplane) *pgtransport.Transport {
	switch v := bp.(type) {
	case *pgtransport.Transport:
		return v
	case interface{ Unwrap() *pgtransport.Transport }:
		return v.Unwrap()
	}
	panic("not a pgtransport.Transport")
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

func (r *recorder) count(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if m == p {
			n++
		}
	}
	return n
}

func (r *recorder) has(p string) bool { return r.count(p) > 0 }

func (r *recorder) eventList() []core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Event(nil), r.events...)
}

// eventAfter returns the first event of kind at or after index from, and
// its index (-1 if none).
func (r *recorder) eventAfter(kind core.EventKind, from int) (core.Event, int) {
	evs := r.eventList()
	for i := from; i < len(evs); i++ {
		if evs[i].Kind == kind {
			return evs[i], i
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

// publish publishes payloads within bound and fails t on an error.
func publish(t testing.TB, tr core.Backplane, payloads ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	bs := make([][]byte, len(payloads))
	for i, p := range payloads {
		bs[i] = []byte(p)
	}
	if err := tr.Publish(ctx, bs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
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
