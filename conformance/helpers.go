package conformance

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// pollInterval is how often the suite re-checks a condition it waits for.
const pollInterval = 5 * time.Millisecond

// eventually polls cond until it holds or d has passed, and reports whether
// it held. It is the suite's only way of waiting: conditions are polled
// against a deadline, never assumed after a sleep.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// randHex returns n random lower-case hex digits (n <= 16).
func randHex(n int) string {
	return fmt.Sprintf("%016x", rand.Uint64())[:n]
}

// newNamespace returns a namespace unique to this run of t: the last
// element of t's name, sanitized to [a-zA-Z0-9._-] and shortened, plus a
// random suffix. Two tests, or two runs of one test against a shared
// broker, never share a namespace.
func newNamespace(t testing.TB) string {
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return "cf-" + sanitize(name, 40) + "-" + randHex(12)
}

// newMarker returns the prefix of every payload a case publishes: the
// case's name (so that a payload that strays elsewhere tells where it came
// from) and a random part (so that no two markers are prefixes of each
// other).
func newMarker(t testing.TB) string {
	name := t.Name()
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	return "cf." + sanitize(name, 24) + "." + randHex(8) + "."
}

// sanitize maps every byte outside [a-zA-Z0-9._-] to '_' and cuts the
// result to at most max bytes.
func sanitize(s string, max int) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < max; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
			b = append(b, c)
		default:
			b = append(b, '_')
		}
	}
	return string(b)
}

// closeWithin closes c and waits at most d for Close to return. It reports
// Close's error, or a timeout error when Close hangs (the goroutine running
// Close is then abandoned so that the suite itself cannot deadlock).
func closeWithin(c interface{ Close() error }, d time.Duration) error {
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		return fmt.Errorf("Close did not return within %v", d)
	}
}

// recorder is the Handler the backplane cases subscribe with. It copies
// every payload that carries its marker, counts the ones that do not
// (strays: they can only come from another namespace or another test), and
// records events. It also detects overlapping handler calls, which the
// Handler contract forbids ("one call at a time").
type recorder struct {
	name   string
	marker string

	// onMessage and onEvent, when set before Subscribe, run first in every
	// call (to panic or to block).
	onMessage func(p []byte)
	onEvent   func(ev core.Event)

	mu      sync.Mutex
	order   []string       // marked payloads in arrival order
	counts  map[string]int // marked payload -> times received
	empties int            // empty payloads received
	strays  []string       // unmarked payloads (first few, shortened)
	nStray  int
	events  []core.Event

	inCall   atomic.Int32
	overlaps atomic.Int32
	calls    atomic.Int64
}

// newRecorder returns a recorder named name (for messages) that accepts
// payloads starting with marker. At the end of t it fails t if handler
// calls ever overlapped.
func newRecorder(t testing.TB, name, marker string) *recorder {
	r := &recorder{name: name, marker: marker, counts: make(map[string]int)}
	t.Cleanup(func() {
		if s := r.strayReport(); s != "" {
			t.Errorf("%s received %s: nothing else publishes on this case's namespaces, "+
				"so they leaked in from another namespace or were corrupted", r.name, s)
		}
		if n := r.overlaps.Load(); n > 0 {
			t.Errorf("%s: %d handler calls overlapped another call on the same handler; "+
				"the Handler contract requires one call at a time", r.name, n)
		}
	})
	return r
}

func (r *recorder) enter() {
	r.calls.Add(1)
	if r.inCall.Add(1) > 1 {
		r.overlaps.Add(1)
	}
}

func (r *recorder) exit() { r.inCall.Add(-1) }

// HandleMessage implements core.Handler.
func (r *recorder) HandleMessage(p []byte) {
	r.enter()
	defer r.exit()
	if r.onMessage != nil {
		r.onMessage(p)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case len(p) == 0:
		r.empties++
	case strings.HasPrefix(string(p), r.marker):
		s := string(p)
		r.order = append(r.order, s)
		r.counts[s]++
	default:
		r.nStray++
		if len(r.strays) < 5 {
			r.strays = append(r.strays, shorten(string(p)))
		}
	}
}

// HandleEvent implements core.Handler.
func (r *recorder) HandleEvent(ev core.Event) {
	r.enter()
	defer r.exit()
	if r.onEvent != nil {
		r.onEvent(ev)
	}
	r.mu.Lock()
	r.events = append(r.events, ev)
	r.mu.Unlock()
}

// has reports whether p was received at least once.
func (r *recorder) has(p string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[p] > 0
}

// hasAll reports whether every payload in ps was received.
func (r *recorder) hasAll(ps []string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if r.counts[p] == 0 {
			return false
		}
	}
	return true
}

// missing returns how many of ps were not received and the first of them.
func (r *recorder) missing(ps []string) (n int, first string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range ps {
		if r.counts[p] == 0 {
			if n == 0 {
				first = p
			}
			n++
		}
	}
	return n, first
}

// hasPrefix reports whether a payload starting with prefix was received.
func (r *recorder) hasPrefix(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.order {
		if strings.HasPrefix(p, prefix) {
			return true
		}
	}
	return false
}

// countPrefix returns how many received payloads start with prefix.
func (r *recorder) countPrefix(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, p := range r.order {
		if strings.HasPrefix(p, prefix) {
			n++
		}
	}
	return n
}

// received returns the marked payloads in arrival order.
func (r *recorder) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.order...)
}

// emptyCount returns how many empty payloads were received.
func (r *recorder) emptyCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.empties
}

// strayReport describes unmarked payloads, or "" when there were none.
func (r *recorder) strayReport() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.nStray == 0 {
		return ""
	}
	return fmt.Sprintf("%d foreign payloads, e.g. %q", r.nStray, r.strays)
}

// eventKinds returns the kinds of the events received, in order.
func (r *recorder) eventKinds() []core.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks := make([]core.EventKind, len(r.events))
	for i, ev := range r.events {
		ks[i] = ev.Kind
	}
	return ks
}

// eventList returns the events received, in order.
func (r *recorder) eventList() []core.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]core.Event(nil), r.events...)
}

// eventCount returns how many events of kind k were received.
func (r *recorder) eventCount(k core.EventKind) int {
	n := 0
	for _, got := range r.eventKinds() {
		if got == k {
			n++
		}
	}
	return n
}

// indexAfter returns the index of the first event of kind k at or after
// index from, or -1.
func (r *recorder) indexAfter(k core.EventKind, from int) int {
	ks := r.eventKinds()
	for i := max(from, 0); i < len(ks); i++ {
		if ks[i] == k {
			return i
		}
	}
	return -1
}

// shorten cuts long payloads for failure messages.
func shorten(s string) string {
	if len(s) > 80 {
		return s[:80] + fmt.Sprintf("...(%d bytes)", len(s))
	}
	return s
}

// ctxFor returns a context bounded by d.
func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
