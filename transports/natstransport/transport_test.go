package natstransport_test

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

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/syncbuf"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

func TestOpenValidation(t *testing.T) {
	tests := []struct {
		name string
		url  string
		ns   string
		opts []natstransport.Option
	}{
		{name: "empty namespace", url: "nats://127.0.0.1:4222", ns: ""},
		{name: "space in namespace", url: "nats://127.0.0.1:4222", ns: "a b"},
		{name: "wildcard namespace", url: "nats://127.0.0.1:4222", ns: "a.*"},
		{name: "full wildcard", url: "nats://127.0.0.1:4222", ns: ">"},
		{name: "empty token", url: "nats://127.0.0.1:4222", ns: "a..b"},
		{name: "trailing dot", url: "nats://127.0.0.1:4222", ns: "a."},
		{name: "control char", url: "nats://127.0.0.1:4222", ns: "a\tb"},
		{name: "no url", url: "", ns: "ok"},
		{name: "http scheme", url: "http://127.0.0.1:4222", ns: "ok"},
		{name: "no host", url: "nats://", ns: "ok"},
		{name: "bad second url", url: "nats://a:4222,redis://b:6379", ns: "ok"},
		{name: "negative max payload", url: "nats://127.0.0.1:4222", ns: "ok", opts: []natstransport.Option{natstransport.WithMaxPayload(-1)}},
		{name: "negative concurrent publish", url: "nats://127.0.0.1:4222", ns: "ok", opts: []natstransport.Option{natstransport.WithConcurrentPublish(-1)}},
		{name: "bad prefix", url: "nats://127.0.0.1:4222", ns: "ok", opts: []natstransport.Option{natstransport.WithSubjectPrefix("a.>")}},
		{name: "creds and nkey", url: "nats://127.0.0.1:4222", ns: "ok", opts: []natstransport.Option{
			natstransport.WithCredentialsFile("a.creds"), natstransport.WithNKeySeedFile("a.nk"),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, err := natstransport.Open(tt.url, tt.ns, tt.opts...)
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("Open(%q, %q) = %v, %v; want ErrInvalidOption", tt.url, tt.ns, tr, err)
			}
		})
	}
	if _, err := natstransport.New(nil, "ok"); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("New(nil) = %v; want ErrInvalidOption", err)
	}
}

func TestOpenRedactsPassword(t *testing.T) {
	_, err := natstransport.Open("http://user:s3cret@127.0.0.1:4222", "ok")
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error %v leaks the password or is nil", err)
	}
}

func TestConnectErrorRedactsToken(t *testing.T) {
	tr, err := natstransport.Open("nats://t0ken-s3cret@127.0.0.1:1", "ok")
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = tr.Subscribe(ctx, core.HandlerFuncs{})
	if err == nil || strings.Contains(err.Error(), "t0ken-s3cret") {
		t.Fatalf("error %v leaks the token or is nil", err)
	}
	if _, err := natstransport.Open("http://t0ken-s3cret@127.0.0.1:4222", "ok"); err == nil || strings.Contains(err.Error(), "t0ken-s3cret") {
		t.Fatalf("error %v leaks the token or is nil", err)
	}
}

func TestSubjectAndDefaults(t *testing.T) {
	tr, err := natstransport.Open("nats://127.0.0.1:1", "orders.eu", natstransport.WithSubjectPrefix("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if got, want := tr.Subject(), "app.orders.eu"; got != want {
		t.Fatalf("Subject = %q, want %q", got, want)
	}
	if tr.Conn() != nil {
		t.Fatal("Open dialled before first use")
	}
	if got := tr.Limits().MaxPayload; got != natstransport.DefaultMaxPayload {
		t.Fatalf("MaxPayload before connect = %d, want %d", got, natstransport.DefaultMaxPayload)
	}
	if got := tr.Limits().ConcurrentPublish; got != natstransport.DefaultConcurrentPublish {
		t.Fatalf("ConcurrentPublish = %d, want %d", got, natstransport.DefaultConcurrentPublish)
	}
	one, err := natstransport.Open("nats://127.0.0.1:1", "orders", natstransport.WithConcurrentPublish(1))
	if err != nil {
		t.Fatal(err)
	}
	defer one.Close()
	if got := one.Limits().ConcurrentPublish; got != 1 {
		t.Fatalf("ConcurrentPublish with WithConcurrentPublish(1) = %d, want 1", got)
	}
}

func TestPublishSubscribe(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	a, recA := subscribed(t, srv.URL(), ns)
	_, recB := subscribed(t, srv.URL(), ns)
	other, recOther := subscribed(t, srv.URL(), ns+"-other")
	_ = other

	var want []string
	var payloads [][]byte
	for i := range 200 {
		want = append(want, fmt.Sprintf("m%03d", i))
		payloads = append(payloads, []byte(want[i]))
	}
	if err := a.Publish(ctxT(t), payloads...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	// The caller may reuse its slices once Publish returned.
	for _, p := range payloads {
		clear(p)
	}
	for name, rec := range map[string]*recorder{"publisher": recA, "peer": recB} {
		waitFor(t, name+" receiving all", func() bool { return len(rec.messages()) >= len(want) })
		if got := rec.messages(); !slices.Equal(got, want) {
			t.Fatalf("%s got %d messages %q..., want in order %q...", name, len(got), got[:3], want[:3])
		}
		if k := rec.kinds(); len(k) != 1 || k[0] != core.EventConnected {
			t.Fatalf("%s events = %v, want [connected]", name, k)
		}
	}
	if got := recOther.messages(); len(got) != 0 {
		t.Fatalf("other namespace received %q", got)
	}
	if err := a.Publish(ctxT(t)); err != nil {
		t.Fatalf("empty Publish: %v", err)
	}
}

func TestSubscribeTwiceAndNilHandler(t *testing.T) {
	srv := testenv.StartNATS(t)
	tr, _ := subscribed(t, srv.URL(), namespace(t))
	if err := tr.Subscribe(ctxT(t), &recorder{}); !errors.Is(err, core.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe = %v, want ErrAlreadySubscribed", err)
	}
	tr2 := open(t, srv.URL(), namespace(t))
	if err := tr2.Subscribe(ctxT(t), nil); !errors.Is(err, core.ErrInvalidOption) {
		t.Fatalf("Subscribe(nil) = %v, want ErrInvalidOption", err)
	}
}

func TestClose(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	var closed atomic.Bool
	late := make(chan string, 100)
	tr := open(t, srv.URL(), ns)
	rec := &recorder{onMsg: func(p []byte) {
		if closed.Load() {
			late <- string(p)
		}
	}}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	pub, _ := subscribed(t, srv.URL(), ns)
	_, witness := subscribed(t, srv.URL(), ns)

	// Close while messages are flowing.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.Publish(context.Background(), []byte(fmt.Sprintf("x%d", i)))
		}
	})
	waitFor(t, "messages flowing", func() bool { return len(rec.messages()) > 10 })
	if err := tr.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed.Store(true)
	close(stop)
	wg.Wait()
	if err := tr.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// Messages published after Close reached the other subscriber; none may
	// reach the closed one.
	if err := pub.Publish(ctxT(t), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "witness receiving", func() bool { return witness.has("after") })
	select {
	case m := <-late:
		t.Fatalf("handler called after Close with %q", m)
	default:
	}
	if err := tr.Publish(ctxT(t), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if err := tr.Subscribe(ctxT(t), rec); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if !tr.Conn().IsClosed() {
		t.Fatal("owned connection not closed")
	}
}

func TestCloseUnused(t *testing.T) {
	tr, err := natstransport.Open("nats://127.0.0.1:1", "unused")
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctxT(t), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Publish = %v, want ErrClosed", err)
	}
}

func TestPayloadLimit(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSMaxPayload(1024))
	ns := namespace(t)
	tr, rec := subscribed(t, srv.URL(), ns)
	if got := tr.Limits().MaxPayload; got != 1024 {
		t.Fatalf("MaxPayload = %d, want the server's 1024", got)
	}
	err := tr.Publish(ctxT(t), []byte("first"), make([]byte, 1025))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("Publish over limit = %v, want ErrPayloadTooLarge", err)
	}
	if err := tr.Publish(ctxT(t), make([]byte, 1024)); err != nil {
		t.Fatalf("Publish at limit: %v", err)
	}
	if err := tr.Publish(ctxT(t), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "marker", func() bool { return rec.has("marker") })
	if got := rec.messages(); len(got) != 2 || rec.has("first") {
		t.Fatalf("got %d messages (first sent: %v), want the 1024-byte one and the marker", len(got), rec.has("first"))
	}

	small := open(t, srv.URL(), ns, natstransport.WithMaxPayload(100))
	if err := small.Publish(ctxT(t), make([]byte, 101)); !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("Publish over configured limit = %v, want ErrPayloadTooLarge", err)
	}
	if got := small.Limits().MaxPayload; got != 100 {
		t.Fatalf("MaxPayload = %d, want configured 100", got)
	}
}

func TestHandlerPanicRecovered(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	tr := open(t, srv.URL(), ns)
	rec := &recorder{onMsg: func(p []byte) {
		if string(p) == "boom" {
			panic("handler failure")
		}
	}}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctxT(t), []byte("boom"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after a panic", func() bool { return rec.has("after") })
}

func TestSlowConsumerReportsLoss(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	release := make(chan struct{})
	var once sync.Once
	tr := open(t, srv.URL(), ns, natstransport.WithPendingLimits(4, -1))
	rec := &recorder{onMsg: func([]byte) { <-release }}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	defer once.Do(func() { close(release) })
	pub := open(t, srv.URL(), ns)
	payloads := make([][]byte, 100)
	for i := range payloads {
		payloads[i] = []byte(fmt.Sprint(i))
	}
	if err := pub.Publish(ctxT(t), payloads...); err != nil {
		t.Fatal(err)
	}
	// The handler is busy, so the loss is reported once it returns: wait
	// until the client has read all messages (most were dropped), then
	// let the handler go.
	waitFor(t, "client reading all messages", func() bool { return tr.Conn().Stats().InMsgs >= uint64(len(payloads)) })
	once.Do(func() { close(release) })
	waitFor(t, "loss event", func() bool { return rec.count(core.EventLoss) > 0 })
	ev, _ := rec.firstEvent(core.EventLoss)
	if !errors.Is(ev.Err, nats.ErrSlowConsumer) {
		t.Fatalf("loss event error = %v, want nats.ErrSlowConsumer", ev.Err)
	}
	// The pending buffer may still be full for a moment.
	publishUntil(t, pub, rec, "later")
}

func TestSharedServer(t *testing.T) {
	url := testenv.NATSURL(t)
	ns := namespace(t)
	a, recA := subscribed(t, url, ns)
	_, recB := subscribed(t, url, ns)
	if err := a.Publish(ctxT(t), []byte("one"), []byte("two")); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*recorder{recA, recB} {
		waitFor(t, "both messages", func() bool { return len(rec.messages()) == 2 })
		if got := rec.messages(); !slices.Equal(got, []string{"one", "two"}) {
			t.Fatalf("got %q", got)
		}
	}
	if a.Limits().MaxPayload <= 0 {
		t.Fatalf("MaxPayload = %d", a.Limits().MaxPayload)
	}
}

// TestSubscribeDoesNotCallHandler checks that EventConnected comes from the
// Transport's goroutine: a caller may hold a lock around Subscribe that its
// handler takes too.
func TestSubscribeDoesNotCallHandler(t *testing.T) {
	srv := testenv.StartNATS(t)
	tr := open(t, srv.URL(), namespace(t))
	var mu sync.Mutex
	connected := make(chan struct{})
	h := core.HandlerFuncs{Event: func(ev core.Event) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == core.EventConnected {
			close(connected)
		}
	}}
	mu.Lock()
	done := make(chan error, 1)
	go func() { done <- tr.Subscribe(ctxT(t), h) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-connected:
		t.Fatal("handler ran while the caller held its lock")
	case <-ctxT(t).Done():
		t.Fatal("Subscribe blocked on the handler (called it synchronously)")
	}
	mu.Unlock()
	waitFor(t, "EventConnected", func() bool {
		select {
		case <-connected:
			return true
		default:
			return false
		}
	})
}

func TestHandlerPanicLogged(t *testing.T) {
	srv := testenv.StartNATS(t)
	var logs syncbuf.Buffer
	tr := open(t, srv.URL(), namespace(t), natstransport.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	rec := &recorder{onMsg: func([]byte) { panic("handler failure") }}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(ctxT(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "panic logged", func() bool { return strings.Contains(logs.String(), "handler failure") })
}

// TestLimitsCeiling checks that a limit read before connecting is never
// exceeded later, and that a smaller server limit still wins.
func TestLimitsCeiling(t *testing.T) {
	big := testenv.StartNATS(t, testenv.WithNATSMaxPayload(4<<20))
	small := testenv.StartNATS(t, testenv.WithNATSMaxPayload(4096))
	tests := []struct {
		name      string
		url       string
		readFirst bool
		want      int
	}{
		{"big server, read early", big.URL(), true, natstransport.DefaultMaxPayload},
		{"big server, read after connect", big.URL(), false, 4 << 20},
		{"small server, read early", small.URL(), true, 4096},
		{"small server, read after connect", small.URL(), false, 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := open(t, tt.url, namespace(t))
			if tt.readFirst {
				if got := tr.Limits().MaxPayload; got != natstransport.DefaultMaxPayload {
					t.Fatalf("Limits before connecting = %d", got)
				}
			}
			if err := tr.Connect(ctxT(t)); err != nil {
				t.Fatal(err)
			}
			if got := tr.Limits().MaxPayload; got != tt.want {
				t.Fatalf("Limits = %d, want %d", got, tt.want)
			}
			if err := tr.Publish(ctxT(t), make([]byte, tt.want+1)); !errors.Is(err, core.ErrPayloadTooLarge) {
				t.Fatalf("Publish over Limits = %v, want ErrPayloadTooLarge", err)
			}
		})
	}
}

// TestOptionErrorTexts pins the text of option errors, which name the
// setting at fault.
func TestOptionErrorTexts(t *testing.T) {
	cases := []struct {
		opt  natstransport.Option
		want string
	}{
		{natstransport.WithMaxPayload(-1), "backplane: invalid option: natstransport: MaxPayload -1 < 0"},
		{natstransport.WithFlushTimeout(-time.Second), "backplane: invalid option: natstransport: FlushTimeout -1s < 0"},
		{natstransport.WithConcurrentPublish(-2), "backplane: invalid option: natstransport: ConcurrentPublish -2 < 0"},
		{natstransport.WithReconnectWait(-time.Millisecond), "backplane: invalid option: natstransport: ReconnectWait -1ms < 0"},
		{natstransport.WithConnectTimeout(-time.Second), "backplane: invalid option: natstransport: ConnectTimeout -1s < 0"},
		{natstransport.WithPingInterval(-time.Second), "backplane: invalid option: natstransport: PingInterval -1s < 0"},
		{func(o *natstransport.Options) { o.CredentialsFile, o.NKeySeedFile = "a", "b" },
			"backplane: invalid option: natstransport: CredentialsFile and NKeySeedFile are exclusive"},
	}
	for _, c := range cases {
		_, err := natstransport.Open("nats://127.0.0.1:4222", "ns", c.opt)
		if err == nil || err.Error() != c.want || !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open = %v; want %q wrapping core.ErrInvalidOption", err, c.want)
		}
	}
	_, err := natstransport.Open("nats://127.0.0.1:4222", "ns", natstransport.WithSubjectPrefix("a b"))
	if err == nil || !strings.HasPrefix(err.Error(), "backplane: invalid option: natstransport: SubjectPrefix: ") {
		t.Errorf("Open with a bad SubjectPrefix = %v", err)
	}
}
