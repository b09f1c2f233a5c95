package memtransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/syncbuf"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const waitBound = 5 * time.Second

// recorder is a Handler that records what it receives, as strings:
// messages as-is, events as "<kind>" or "<kind:err>".
type recorder struct {
	mu  sync.Mutex
	got []string
	// block, when non-nil, is waited on before each message.
	block chan struct{}
	// entered, when non-nil, receives each message as the handler starts.
	entered chan string
}

func (r *recorder) HandleMessage(p []byte) {
	if r.entered != nil {
		r.entered <- string(p)
	}
	if r.block != nil {
		<-r.block
	}
	r.mu.Lock()
	r.got = append(r.got, string(p))
	r.mu.Unlock()
}

func (r *recorder) HandleEvent(ev core.Event) {
	s := "<" + ev.Kind.String()
	if ev.Err != nil {
		s += ":" + ev.Err.Error()
	}
	r.mu.Lock()
	r.got = append(r.got, s+">")
	r.mu.Unlock()
}

func (r *recorder) items() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// waitItems polls until r has received want (exactly), or fails.
func (r *recorder) waitItems(t *testing.T, want ...string) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for {
		got := r.items()
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || time.Now().After(deadline) {
			t.Fatalf("received %q, want %q", got, want)
		}
		time.Sleep(time.Millisecond)
	}
}

func newHub(t *testing.T, opts ...HubOption) *Hub {
	t.Helper()
	h := NewHub(opts...)
	t.Cleanup(func() { _ = h.Close() })
	return h
}

func subscribe(t *testing.T, bp *Transport) *recorder {
	t.Helper()
	r := &recorder{}
	subscribeWith(t, bp, r)
	return r
}

func subscribeWith(t *testing.T, bp *Transport, h core.Handler) {
	t.Helper()
	if err := bp.Subscribe(context.Background(), h); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
}

func publish(t *testing.T, bp *Transport, msgs ...string) {
	t.Helper()
	ps := make([][]byte, len(msgs))
	for i, m := range msgs {
		ps[i] = []byte(m)
	}
	if err := bp.Publish(context.Background(), ps...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func TestBroadcastEchoOrder(t *testing.T) {
	h := newHub(t)
	a, b, c := h.New("ns"), h.New("ns"), h.New("ns")
	ra, rb := subscribe(t, a), subscribe(t, b)
	// c publishes but does not subscribe.
	publish(t, a, "a1", "a2")
	publish(t, c, "c1")
	publish(t, a, "", "a3")
	want := []string{"<connected>", "a1", "a2", "c1", "", "a3"}
	ra.waitItems(t, want...)
	rb.waitItems(t, want...)
}

func TestNamespacesIsolate(t *testing.T) {
	h := newHub(t)
	a, b := h.New("one"), h.New("two")
	ra, rb := subscribe(t, a), subscribe(t, b)
	publish(t, a, "for one")
	publish(t, b, "for two")
	ra.waitItems(t, "<connected>", "for one")
	rb.waitItems(t, "<connected>", "for two")
}

func TestHubsIsolate(t *testing.T) {
	a, b := newHub(t).New("ns"), newHub(t).New("ns")
	ra, rb := subscribe(t, a), subscribe(t, b)
	publish(t, a, "x")
	publish(t, b, "y")
	ra.waitItems(t, "<connected>", "x")
	rb.waitItems(t, "<connected>", "y")
}

func TestPublishCopies(t *testing.T) {
	h := newHub(t)
	a := h.New("ns")
	r := &recorder{block: make(chan struct{})}
	subscribeWith(t, a, r)
	buf := []byte("before")
	if err := a.Publish(context.Background(), buf); err != nil {
		t.Fatal(err)
	}
	copy(buf, "AFTER!")
	close(r.block)
	r.waitItems(t, "<connected>", "before")
}

// TestHandlerPayloadIsolated checks that one subscriber changing its payload
// does not change another's.
func TestHandlerPayloadIsolated(t *testing.T) {
	h := newHub(t)
	a, b := h.New("ns"), h.New("ns")
	subscribeWith(t, a, core.HandlerFuncs{Message: func(p []byte) { clear(p) }})
	rb := subscribe(t, b)
	publish(t, a, "intact", "intact")
	rb.waitItems(t, "<connected>", "intact", "intact")
}

func TestPayloadTooLarge(t *testing.T) {
	h := newHub(t, WithMaxPayload(8))
	a := h.New("ns")
	if got := a.Limits().MaxPayload; got != 8 {
		t.Fatalf("Limits().MaxPayload = %d, want 8", got)
	}
	r := subscribe(t, a)
	err := a.Publish(context.Background(), []byte("ok"), []byte("123456789"))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("Publish = %v, want ErrPayloadTooLarge", err)
	}
	publish(t, a, "12345678")
	// "ok" was not sent: nothing is sent when one payload is too large.
	r.waitItems(t, "<connected>", "12345678")

	if got := NewHub().New("x").Limits().MaxPayload; got != DefaultMaxPayload {
		t.Fatalf("default MaxPayload = %d", got)
	}
}

func TestPublishContextCancelled(t *testing.T) {
	h := newHub(t)
	a := h.New("ns")
	r := subscribe(t, a)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Publish(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish = %v, want context.Canceled", err)
	}
	publish(t, a, "y")
	r.waitItems(t, "<connected>", "y")
}

// TestFullQueueBlocks checks that a full queue makes Publish wait (until
// its context ends) rather than drop, and that nothing is lost.
func TestFullQueueBlocks(t *testing.T) {
	h := newHub(t, WithQueueSize(2))
	a := h.New("ns")
	r := &recorder{block: make(chan struct{})}
	subscribeWith(t, a, r)
	// The handler takes m0 and blocks; m1 and m2 fill the queue.
	publish(t, a, "m0", "m1", "m2")

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- a.Publish(ctx, []byte("m3")) }()
	select {
	case err := <-errc:
		t.Fatalf("Publish into a full queue returned %v", err)
	case <-time.After(20 * time.Millisecond):
		// Still blocked, as it should be (a failure here would be a
		// Publish that did not block; this wait cannot cause a false
		// failure).
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("blocked Publish = %v, want context.Canceled", err)
	}

	done := make(chan error, 1)
	go func() { done <- a.Publish(context.Background(), []byte("m4"), []byte("m5")) }()
	close(r.block)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	r.waitItems(t, "<connected>", "m0", "m1", "m2", "m4", "m5")
}

// TestSlowSubscriber checks that a blocked handler holds up nobody while its
// queue has room.
func TestSlowSubscriber(t *testing.T) {
	h := newHub(t, WithQueueSize(4))
	slow, fast := h.New("ns"), h.New("ns")
	rs := &recorder{block: make(chan struct{})}
	subscribeWith(t, slow, rs)
	rf := subscribe(t, fast)
	publish(t, fast, "1", "2", "3", "4")
	rf.waitItems(t, "<connected>", "1", "2", "3", "4")
	close(rs.block)
	rs.waitItems(t, "<connected>", "1", "2", "3", "4")
}

func TestSubscribeTwice(t *testing.T) {
	a := newHub(t).New("ns")
	subscribe(t, a)
	err := a.Subscribe(context.Background(), &recorder{})
	if !errors.Is(err, core.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe = %v, want ErrAlreadySubscribed", err)
	}
	if err := a.Subscribe(context.Background(), nil); err == nil {
		t.Fatal("Subscribe(nil) succeeded")
	}
}

func TestSubscribeContextCancelled(t *testing.T) {
	a := newHub(t).New("ns")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Subscribe(ctx, &recorder{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe = %v, want context.Canceled", err)
	}
	subscribe(t, a) // not subscribed by the failed call
}

// TestSubscribeWhileCut checks that Subscribe on a cut transport waits for
// Reconnect, bounded by its context.
func TestSubscribeWhileCut(t *testing.T) {
	h := newHub(t)
	a, pub := h.New("ns"), h.New("ns")
	a.Disconnect(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := a.Subscribe(ctx, &recorder{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe while cut = %v, want DeadlineExceeded", err)
	}

	r := &recorder{}
	errc := make(chan error, 1)
	go func() { errc <- a.Subscribe(context.Background(), r) }()
	a.Reconnect()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	publish(t, pub, "x")
	r.waitItems(t, "<connected>", "x")
}

func TestClose(t *testing.T) {
	h := newHub(t)
	a, b := h.New("ns"), h.New("ns")
	r := subscribe(t, a)
	publish(t, b, "1")
	r.waitItems(t, "<connected>", "1")
	for i := 0; i < 2; i++ {
		if err := a.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if err := a.Publish(context.Background(), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := a.Subscribe(context.Background(), &recorder{}); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
	publish(t, b, "2")
	// Nothing more arrives at a; b's own subscription proves "2" was
	// delivered to everyone still subscribed.
	rb := subscribe(t, b)
	publish(t, b, "3")
	rb.waitItems(t, "<connected>", "3")
	if got := r.items(); len(got) != 2 {
		t.Fatalf("closed transport received %q", got)
	}
	// Close on a never subscribed transport.
	if err := h.New("ns").Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCloseWaitsForHandler checks that Close returns only after the handler
// call in progress returned, and that no call follows.
func TestCloseWaitsForHandler(t *testing.T) {
	h := newHub(t)
	a := h.New("ns")
	entered := make(chan struct{})
	release := make(chan struct{})
	var inHandler, calls atomic.Int32
	subscribeWith(t, a, core.HandlerFuncs{Message: func([]byte) {
		calls.Add(1)
		inHandler.Store(1)
		if calls.Load() == 1 {
			close(entered)
			<-release
		}
		inHandler.Store(0)
	}})
	publish(t, a, "1", "2", "3")
	<-entered
	closed := make(chan struct{})
	go func() {
		_ = a.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while the handler was running")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-closed
	if inHandler.Load() != 0 {
		t.Fatal("handler still running after Close returned")
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d handler calls, want 1 (no call after Close)", n)
	}
}

// TestCloseHandedOffByHandler: a handler that wants its transport closed
// hands Close to another goroutine (a handler never calls Close itself);
// that Close returns once the handler call returned, and no call follows.
func TestCloseHandedOffByHandler(t *testing.T) {
	h := newHub(t)
	a, pub := h.New("ns"), h.New("ns")
	var calls, inHandler atomic.Int32
	returned := make(chan bool, 1)
	subscribeWith(t, a, core.HandlerFuncs{Message: func([]byte) {
		inHandler.Store(1)
		defer inHandler.Store(0)
		if calls.Add(1) == 1 {
			go func() {
				_ = a.Close()
				returned <- inHandler.Load() == 0
			}()
		}
	}})
	// From another transport: a's own Publish could race its Close.
	publish(t, pub, "1", "2")
	if !<-returned {
		t.Fatal("Close returned while the handler call was running")
	}
	if n := calls.Load(); n != 1 && n != 2 {
		t.Fatalf("%d handler calls, want 1 or 2", n)
	}
	n := calls.Load()
	publish(t, pub, "3")
	rp := subscribe(t, pub)
	publish(t, pub, "4")
	rp.waitItems(t, "<connected>", "4")
	if m := calls.Load(); m != n {
		t.Fatalf("%d handler calls after Close returned", m-n)
	}
}

// TestHubCloseHandedOffByHandler: Hub.Close handed off by a handler closes
// every transport, the handler's included, once the handler returned.
func TestHubCloseHandedOffByHandler(t *testing.T) {
	h := NewHub()
	a, b := h.New("ns"), h.New("ns")
	subscribe(t, b)
	returned := make(chan struct{})
	var once sync.Once
	subscribeWith(t, a, core.HandlerFuncs{Message: func([]byte) {
		once.Do(func() {
			go func() {
				_ = h.Close()
				close(returned)
			}()
		})
	}})
	publish(t, a, "x")
	<-returned
	for _, tr := range []*Transport{a, b} {
		if err := tr.Publish(context.Background(), []byte("y")); !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Publish after hub Close = %v", err)
		}
	}
}

// TestCloseUnblocksPublisher checks that closing a publisher waiting for
// room ends its Publish with ErrClosed.
func TestCloseUnblocksPublisher(t *testing.T) {
	h := newHub(t, WithQueueSize(1))
	a, b := h.New("ns"), h.New("ns")
	r := &recorder{block: make(chan struct{})}
	subscribeWith(t, a, r)
	defer close(r.block)
	publish(t, b, "1", "2") // handler holds 1, queue holds 2
	errc := make(chan error, 1)
	go func() { errc <- b.Publish(context.Background(), []byte("3")) }()
	_ = b.Close()
	if err := <-errc; !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish = %v, want ErrClosed", err)
	}
}

// TestCloseSubscriberUnblocksPublisher checks that closing the subscriber a
// publisher waits on lets the publisher go on.
func TestCloseSubscriberUnblocksPublisher(t *testing.T) {
	h := newHub(t, WithQueueSize(1))
	a, b := h.New("ns"), h.New("ns")
	r := &recorder{block: make(chan struct{})}
	subscribeWith(t, a, r)
	publish(t, b, "1", "2")
	errc := make(chan error, 1)
	go func() { errc <- b.Publish(context.Background(), []byte("3")) }()
	closed := make(chan struct{})
	go func() { _ = a.Close(); close(closed) }()
	// a's Close waits for its blocked handler; the publisher must not.
	if err := <-errc; err != nil {
		t.Fatalf("Publish = %v", err)
	}
	close(r.block)
	<-closed
}

func TestHandlerPanicRecovered(t *testing.T) {
	var logBuf syncbuf.Buffer
	h := newHub(t, WithLogger(slog.New(slog.NewTextHandler(&logBuf, nil))))
	a := h.New("ns")
	r := &recorder{}
	subscribeWith(t, a, core.HandlerFuncs{
		Message: func(p []byte) {
			if string(p) == "boom" {
				panic("boom")
			}
			r.HandleMessage(p)
		},
		Event: func(ev core.Event) { panic("event boom") },
	})
	publish(t, a, "1", "boom", "2")
	r.waitItems(t, "1", "2")
	logs := logBuf.String()
	for _, want := range []string{"level=ERROR", "handler panicked", "panic=boom", `panic="event boom"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
}

// TestPublishHandedOffByHandlerToOwnFullQueue: the queue bound applies to
// a publish a handler hands to another goroutine, even into the queue that
// handler drains: it waits for room while the queue is full and completes
// once the handler returned and the queue drained.
func TestPublishHandedOffByHandlerToOwnFullQueue(t *testing.T) {
	h := newHub(t, WithQueueSize(1))
	a, pub := h.New("ns"), h.New("ns")
	r := &recorder{}
	release := make(chan struct{})
	errc := make(chan error, 1)
	subscribeWith(t, a, core.HandlerFuncs{
		Message: func(p []byte) {
			r.HandleMessage(p)
			if string(p) == "go" {
				go func() { errc <- a.Publish(context.Background(), []byte("r1"), []byte("r2"), []byte("r3")) }()
				<-release
			}
		},
	})
	publish(t, pub, "go")
	// The handler holds "go"; r1 fills the queue, r2 waits for room.
	select {
	case err := <-errc:
		t.Fatalf("Publish into a full queue returned (%v) while the handler held it full", err)
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	if err := <-errc; err != nil {
		t.Fatalf("Publish: %v", err)
	}
	r.waitItems(t, "go", "r1", "r2", "r3")
}

func TestDisconnectReconnect(t *testing.T) {
	h := newHub(t)
	a, b := h.New("ns"), h.New("ns")
	ra, rb := subscribe(t, a), subscribe(t, b)
	cause := errors.New("link down")
	a.Disconnect(cause)
	a.Disconnect(errors.New("again")) // no second event

	err := a.Publish(context.Background(), []byte("x"))
	if !errors.Is(err, ErrDisconnected) || !errors.Is(err, cause) {
		t.Fatalf("Publish while cut = %v, want ErrDisconnected and the cause", err)
	}
	publish(t, b, "lost for a")
	rb.waitItems(t, "<connected>", "lost for a")

	a.Reconnect()
	a.Reconnect() // no second event
	publish(t, b, "after")
	ra.waitItems(t, "<connected>", "<disconnected:link down>", "<reconnected>", "after")
	rb.waitItems(t, "<connected>", "lost for a", "after")

	// A nil cause reports ErrDisconnected.
	var got core.Event
	c := h.New("other")
	evs := make(chan core.Event, 4)
	subscribeWith(t, c, core.HandlerFuncs{Event: func(ev core.Event) { evs <- ev }})
	<-evs // connected
	c.Disconnect(nil)
	got = <-evs
	if got.Kind != core.EventDisconnected || !errors.Is(got.Err, ErrDisconnected) || got.Time.IsZero() {
		t.Fatalf("event = %+v", got)
	}
	if err := c.Publish(context.Background(), []byte("x")); !errors.Is(err, ErrDisconnected) {
		t.Fatalf("Publish = %v", err)
	}
}

// TestDisconnectDiscardsQueued checks that messages queued for a transport
// when it is cut are lost.
func TestDisconnectDiscardsQueued(t *testing.T) {
	h := newHub(t)
	a, b := h.New("ns"), h.New("ns")
	r := &recorder{block: make(chan struct{}), entered: make(chan string, 10)}
	subscribeWith(t, a, r)
	publish(t, b, "1", "2", "3")
	<-r.entered // handler holds 1; 2 and 3 queued
	a.Disconnect(nil)
	a.Reconnect()
	close(r.block)
	publish(t, b, "4")
	r.waitItems(t, "<connected>", "1", "<disconnected:memtransport: disconnected>", "<reconnected>", "4")
}

func TestDropIncoming(t *testing.T) {
	h := newHub(t)
	a, b := h.New("ns"), h.New("ns")
	ra, rb := subscribe(t, a), subscribe(t, b)
	a.DropIncoming(2)
	a.DropIncoming(0)
	publish(t, b, "1", "2", "3")
	publish(t, a, "4") // a's own echo counts too, after the drops
	ra.waitItems(t, "<connected>", "3", "4")
	rb.waitItems(t, "<connected>", "1", "2", "3", "4")

	a.DropIncoming(100)
	a.StopDropping()
	publish(t, b, "5")
	ra.waitItems(t, "<connected>", "3", "4", "5")
}

func TestRestart(t *testing.T) {
	h := newHub(t)
	a, b, c, idle := h.New("ns"), h.New("ns"), h.New("ns"), h.New("ns")
	ra := &recorder{block: make(chan struct{}), entered: make(chan string, 10)}
	subscribeWith(t, a, ra)
	rb, rc := subscribe(t, b), subscribe(t, c)
	c.Disconnect(errors.New("cut"))

	publish(t, b, "1", "2")
	<-ra.entered // a holds 1, queues 2
	rb.waitItems(t, "<connected>", "1", "2")
	h.Restart()
	close(ra.block)
	publish(t, idle, "3")

	restart := "<disconnected:memtransport: disconnected: broker restarted>"
	ra.waitItems(t, "<connected>", "1", restart, "<reconnected>", "3")
	rb.waitItems(t, "<connected>", "1", "2", restart, "<reconnected>", "3")
	// c was cut before and stays cut.
	rc.waitItems(t, "<connected>", "<disconnected:cut>")
	c.Reconnect()
	publish(t, idle, "4")
	rc.waitItems(t, "<connected>", "<disconnected:cut>", "<reconnected>", "4")
}

func TestHubClose(t *testing.T) {
	h := NewHub()
	a, b := h.New("ns"), h.New("other")
	ra := subscribe(t, a)
	subscribe(t, b)
	ra.waitItems(t, "<connected>")
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	for _, bp := range []*Transport{a, b, h.New("late")} {
		if err := bp.Publish(context.Background(), []byte("x")); !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Publish after hub Close = %v", err)
		}
	}
	h.Restart() // no-op on a closed hub
}

// TestConcurrent runs publishers, faults and closes side by side for the
// race detector, and checks per-publisher order at a subscriber that is
// never cut.
func TestConcurrent(t *testing.T) {
	h := newHub(t, WithQueueSize(8))
	const pubs, msgs = 4, 200
	watcher := h.New("ns")
	var mu sync.Mutex
	last := map[string]int{}
	var orderErr error
	subscribeWith(t, watcher, core.HandlerFuncs{Message: func(p []byte) {
		var who string
		var n int
		if _, err := fmt.Sscanf(string(p), "%s %d", &who, &n); err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if prev, ok := last[who]; ok && n <= prev && orderErr == nil {
			orderErr = fmt.Errorf("%s: %d after %d", who, n, prev)
		}
		last[who] = n
	}})

	var wg sync.WaitGroup
	ts := make([]*Transport, pubs)
	for i := range ts {
		ts[i] = h.New("ns")
		subscribeWith(t, ts[i], core.HandlerFuncs{})
	}
	for i, tr := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < msgs; n++ {
				_ = tr.Publish(context.Background(), fmt.Appendf(nil, "p%d %d", i, n))
				if n%50 == 0 {
					tr.Disconnect(nil)
					tr.DropIncoming(1)
					tr.Reconnect()
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 5; i++ {
			h.Restart()
		}
	}()
	wg.Wait()
	for _, tr := range ts {
		_ = tr.Close()
	}
	_ = watcher.Close()
	if orderErr != nil {
		t.Fatal(orderErr)
	}
}
