package natstransport_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/natstransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet discards the log of the Transports in tests: handler panics and
// slow consumers are provoked on purpose.
var quiet = slog.New(slog.DiscardHandler)

// waitTimeout bounds every poll in these tests.
const waitTimeout = 10 * time.Second

var nsSeq atomic.Int64

// namespace returns a fresh namespace for t.
func namespace(t testing.TB) string {
	name := strings.NewReplacer("/", "_", " ", "_", ".", "_").Replace(t.Name())
	return fmt.Sprintf("%s-%d-%d", name, os.Getpid(), nsSeq.Add(1))
}

// recorder is a core.Handler that records what it receives.
type recorder struct {
	mu     sync.Mutex
	msgs   []string
	events []core.Event
	// onMsg, if set, runs inside HandleMessage.
	onMsg func(p []byte)
}

func (r *recorder) HandleMessage(p []byte) {
	if r.onMsg != nil {
		r.onMsg(p)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, string(p))
	r.mu.Unlock()
}

func (r *recorder) HandleEvent(ev core.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func (r *recorder) has(msg string) bool {
	for _, m := range r.messages() {
		if m == msg {
			return true
		}
	}
	return false
}

func (r *recorder) kinds() []core.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []core.EventKind
	for _, ev := range r.events {
		ks = append(ks, ev.Kind)
	}
	return ks
}

func (r *recorder) count(k core.EventKind) int {
	n := 0
	for _, got := range r.kinds() {
		if got == k {
			n++
		}
	}
	return n
}

func (r *recorder) firstEvent(k core.EventKind) (core.Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if ev.Kind == k {
			return ev, true
		}
	}
	return core.Event{}, false
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// open makes a Transport with Open, closed when t ends.
func open(t testing.TB, url, ns string, opts ...natstransport.Option) *natstransport.Transport {
	t.Helper()
	opts = append([]natstransport.Option{
		natstransport.WithReconnectWait(50 * time.Millisecond),
		natstransport.WithLogger(quiet),
	}, opts...)
	tr, err := natstransport.Open(url, ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// subscribed makes a Transport with Open and subscribes a recorder.
func subscribed(t testing.TB, url, ns string, opts ...natstransport.Option) (*natstransport.Transport, *recorder) {
	t.Helper()
	tr := open(t, url, ns, opts...)
	rec := &recorder{}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	return tr, rec
}

// publishUntil publishes msg until rec has it, for a Transport that may be
// reconnecting.
func publishUntil(t testing.TB, tr *natstransport.Transport, rec *recorder, msg string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !rec.has(msg) {
		if time.Now().After(deadline) {
			t.Fatalf("message %q not delivered within %v", msg, waitTimeout)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = tr.Publish(ctx, []byte(msg))
		cancel()
		time.Sleep(20 * time.Millisecond)
	}
}
