package redistransport_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/syncbuf"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

func TestNewValidation(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	cases := []struct {
		name   string
		client redis.UniversalClient
		ns     string
		opts   []redistransport.Option
		ok     bool
	}{
		{"ok", client, "ns", nil, true},
		{"empty namespace", client, "", nil, false},
		{"nil client", nil, "ns", nil, false},
		{"negative max payload", client, "ns", []redistransport.Option{redistransport.WithMaxPayload(-1)}, false},
		{"huge max payload", client, "ns", []redistransport.Option{redistransport.WithMaxPayload(1 << 30)}, false},
		{"bad mode", client, "ns", []redistransport.Option{redistransport.WithPubSubMode(42)}, false},
		{"bad backoff", client, "ns", []redistransport.Option{redistransport.WithReconnectBackoff(time.Second, time.Millisecond)}, false},
		{"health check off", client, "ns", []redistransport.Option{redistransport.WithHealthCheck(-1, 0)}, true},
		{"negative concurrent publish", client, "ns", []redistransport.Option{redistransport.WithConcurrentPublish(-1)}, false},
		{"one publish at a time", client, "ns", []redistransport.Option{redistransport.WithConcurrentPublish(1)}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := redistransport.New(c.client, c.ns, c.opts...)
			if c.ok {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				_ = tr.Close()
				return
			}
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("New: error %v; want one wrapping core.ErrInvalidOption", err)
			}
		})
	}
}

func TestOpenURL(t *testing.T) {
	cases := []struct {
		url     string
		cluster bool
		tls     bool
		sharded bool
		err     bool
	}{
		{url: "redis://127.0.0.1:1/0"},
		{url: "redis://user:secret@127.0.0.1:1/3?dial_timeout=1s"},
		{url: "rediss://127.0.0.1:1", tls: true},
		{url: "redis://127.0.0.1:1?addr=127.0.0.1:2&addr=127.0.0.1:3", cluster: true, sharded: true},
		{url: "redis://127.0.0.1:1?cluster=true", cluster: true, sharded: true},
		{url: "redis://127.0.0.1:1?cluster=false"},
		{url: "http://127.0.0.1:1", err: true},
		{url: "redis://127.0.0.1:1?no_such_option=1", err: true},
		{url: "redis://user:secret@127.0.0.1:1/%zz", err: true},
	}
	for _, c := range cases {
		t.Run(c.url, func(t *testing.T) {
			tr, err := redistransport.Open(c.url, "ns")
			if c.err {
				if !errors.Is(err, core.ErrInvalidOption) {
					t.Fatalf("Open: error %v; want one wrapping core.ErrInvalidOption", err)
				}
				if strings.Contains(err.Error(), "secret") {
					t.Fatalf("Open error reveals the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer tr.Close()
			var tlsConf *tls.Config
			switch cl := tr.Client().(type) {
			case *redis.ClusterClient:
				if !c.cluster {
					t.Fatalf("got a cluster client")
				}
				tlsConf = cl.Options().TLSConfig
			case *redis.Client:
				if c.cluster {
					t.Fatalf("got a standalone client")
				}
				tlsConf = cl.Options().TLSConfig
				if cl.Options().ClientName != "backplane" {
					t.Errorf("client name %q; want backplane", cl.Options().ClientName)
				}
			}
			if (tlsConf != nil) != c.tls {
				t.Errorf("TLS config %v; want TLS %v", tlsConf, c.tls)
			}
			if tr.Sharded() != c.sharded {
				t.Errorf("Sharded() = %v; want %v", tr.Sharded(), c.sharded)
			}
			if want := "backplane:{ns}"; tr.Channel() != want {
				t.Errorf("Channel() = %q; want %q", tr.Channel(), want)
			}
		})
	}
}

func TestOpenTLSConfigKeepsServerName(t *testing.T) {
	tr, err := redistransport.Open("rediss://localhost:1", "ns", redistransport.WithTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13}))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	c := tr.Client().(*redis.Client).Options().TLSConfig
	if c.ServerName != "localhost" || c.MinVersion != tls.VersionTLS13 {
		t.Fatalf("TLS config ServerName %q MinVersion %x; want localhost and TLS 1.3", c.ServerName, c.MinVersion)
	}
}

func TestPublishSubscribe(t *testing.T) {
	ns := uniq("pubsub")
	a := newTransport(t, sharedClient(t, uniq("a")), ns)
	b := newTransport(t, sharedClient(t, uniq("b")), ns)
	ra, rb := subscribe(t, a), subscribe(t, b)
	want := []string{"one", "two", "", "\x00\xff binary", "five"}
	payloads := make([][]byte, len(want))
	for i, w := range want {
		payloads[i] = []byte(w)
	}
	if err := a.Publish(context.Background(), payloads...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for name, r := range map[string]*recorder{"publisher (echo)": ra, "peer": rb} {
		waitFor(t, name+" receives all", func() bool { return len(r.messages()) >= len(want) })
		if got := r.messages(); !slices.Equal(got, want) {
			t.Errorf("%s received %q; want %q in order", name, got, want)
		}
		if k := r.kinds(); !slices.Equal(k, []core.EventKind{core.EventConnected}) {
			t.Errorf("%s events %v; want [connected]", name, k)
		}
	}
	// Other namespaces stay apart.
	c := newTransport(t, sharedClient(t, uniq("c")), ns+"-other")
	rc := subscribe(t, c)
	if err := a.Publish(context.Background(), []byte("not for c")); err != nil {
		t.Fatal(err)
	}
	if err := c.Publish(context.Background(), []byte("for c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c receives its own message", func() bool { return rc.has("for c") })
	waitFor(t, "b receives", func() bool { return rb.has("not for c") })
	if rc.has("not for c") || rb.has("for c") {
		t.Errorf("namespaces crossed: c %q, b %q", rc.messages(), rb.messages())
	}
}

func TestPublishPipelinesOneRoundTrip(t *testing.T) {
	client := sharedClient(t, uniq("pipe"))
	hook := &countHook{}
	client.AddHook(hook)
	tr := newTransport(t, client, uniq("pipe"))
	r := subscribe(t, tr)
	hook.reset()
	const n = 200
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = fmt.Appendf(nil, "m%03d", i)
	}
	if err := tr.Publish(context.Background(), payloads...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if p, c, s := hook.pipelines.Load(), hook.cmds.Load(), hook.single.Load(); p != 1 || c != n || s != 0 {
		t.Errorf("Publish of %d payloads: %d pipelines with %d commands and %d single commands; want 1 pipeline of %d", n, p, c, s, n)
	}
	waitFor(t, "all pipelined messages", func() bool { return len(r.messages()) == n })
	for i, m := range r.messages() {
		if m != string(payloads[i]) {
			t.Fatalf("message %d is %q; want %q (order)", i, m, payloads[i])
		}
	}
}

// countHook counts PUBLISH commands that reach the network, and the
// pipelines that carry them (connection handshakes are pipelines too; they
// are not counted).
type countHook struct {
	pipelines, cmds, single atomic.Int64
}

func (h *countHook) reset() { h.pipelines.Store(0); h.cmds.Store(0); h.single.Store(0) }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if isPublish(cmd) {
			h.single.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		n := 0
		for _, c := range cmds {
			if isPublish(c) {
				n++
			}
		}
		if n > 0 {
			h.pipelines.Add(1)
			h.cmds.Add(int64(n))
		}
		return next(ctx, cmds)
	}
}

func isPublish(c redis.Cmder) bool { return c.Name() == "publish" || c.Name() == "spublish" }

func TestPublishErrors(t *testing.T) {
	tr := newTransport(t, sharedClient(t, uniq("err")), uniq("err"), redistransport.WithMaxPayload(8))
	if got := tr.Limits().MaxPayload; got != 8 {
		t.Fatalf("Limits().MaxPayload = %d; want 8", got)
	}
	if got := tr.Limits().ConcurrentPublish; got != redistransport.DefaultConcurrentPublish {
		t.Fatalf("Limits().ConcurrentPublish = %d; want the default %d", got, redistransport.DefaultConcurrentPublish)
	}
	r := subscribe(t, tr)
	err := tr.Publish(context.Background(), []byte("ok"), []byte("123456789"))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		t.Fatalf("Publish of an oversize payload: %v; want core.ErrPayloadTooLarge", err)
	}
	if err := tr.Publish(context.Background(), []byte("12345678")); err != nil {
		t.Fatalf("Publish of a payload of exactly MaxPayload: %v", err)
	}
	waitFor(t, "exact-size payload", func() bool { return r.has("12345678") })
	if r.has("ok") {
		t.Errorf("a Publish that failed the size check sent its other payload")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.Publish(ctx, []byte("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("Publish with a cancelled context: %v; want context.Canceled", err)
	}
	if err := tr.Subscribe(context.Background(), &recorder{}); !errors.Is(err, core.ErrAlreadySubscribed) {
		t.Errorf("second Subscribe: %v; want core.ErrAlreadySubscribed", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := tr.Publish(context.Background(), []byte("x")); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Publish after Close: %v; want core.ErrClosed", err)
	}
	if err := tr.Subscribe(context.Background(), &recorder{}); !errors.Is(err, core.ErrClosed) {
		t.Errorf("Subscribe after Close: %v; want core.ErrClosed", err)
	}
}

func TestSubscribeFailsWithoutServer(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	tr := newTransport(t, newClient(t, addr, "none"), "ns")
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	err := tr.Subscribe(ctx, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Subscribe without a server: %v; want a connection refused error", err)
	}
	// A failed Subscribe may be retried.
	if err := tr.Subscribe(ctx, &recorder{}); err == nil || errors.Is(err, core.ErrAlreadySubscribed) {
		t.Fatalf("second Subscribe after a failure: %v; want the connection error again", err)
	}
}

func TestHandlerPanicRecovered(t *testing.T) {
	ns := uniq("panic")
	tr := newTransport(t, sharedClient(t, uniq("panic")), ns)
	r := &recorder{}
	h := core.HandlerFuncs{
		Message: func(p []byte) {
			if string(p) == "boom" {
				panic("boom")
			}
			r.HandleMessage(p)
		},
		Event: func(ev core.Event) { panic("event") },
	}
	if err := tr.Subscribe(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(context.Background(), []byte("boom"), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after a panic", func() bool { return r.has("after") })
}

// TestCloseHandedOffByHandler: a Close that the handler hands to another
// goroutine (a handler never calls Close itself) returns once the handler
// call returned.
func TestCloseHandedOffByHandler(t *testing.T) {
	tr := newTransport(t, sharedClient(t, uniq("closeh")), uniq("closeh"))
	var inHandler atomic.Bool
	var once sync.Once
	closed := make(chan error, 1)
	h := core.HandlerFuncs{Message: func([]byte) {
		inHandler.Store(true)
		defer inHandler.Store(false)
		once.Do(func() {
			go func() {
				err := tr.Close()
				if err == nil && inHandler.Load() {
					err = errors.New("Close returned while the handler call was running")
				}
				closed <- err
			}()
		})
	}}
	if err := tr.Subscribe(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := tr.Publish(context.Background(), []byte("close")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close handed off by the handler: %v", err)
		}
	case <-time.After(bound):
		t.Fatal("Close handed off by the handler did not return")
	}
}

func TestNoHandlerCallAfterClose(t *testing.T) {
	ns := uniq("afterclose")
	pub := newTransport(t, sharedClient(t, uniq("pub")), ns)
	sub, err := redistransport.New(sharedClient(t, uniq("sub")), ns)
	if err != nil {
		t.Fatal(err)
	}
	r := subscribe(t, sub)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = pub.Publish(context.Background(), []byte("flood"), []byte("flood"), []byte("flood"))
		}
	}()
	waitFor(t, "flood arrives", func() bool { return len(r.messages()) > 10 })
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	calls := r.calls.Load()
	// Keep publishing a little more: no call may follow.
	waitFor(t, "more publishes", func() bool {
		ok := pub.Publish(context.Background(), []byte("late")) == nil
		return ok
	})
	close(stop)
	<-done
	if c := r.calls.Load(); c != calls {
		t.Fatalf("%d handler calls after Close returned", c-calls)
	}
}

func TestClientKillSubscriber(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			srv := testenv.StartRedis(t)
			ns := uniq("kill")
			subName := uniq("sub")
			client := func(name string) *redis.Client {
				c := redis.NewClient(&redis.Options{Addr: srv.Addr(), ClientName: name, Protocol: proto})
				t.Cleanup(func() { _ = c.Close() })
				return c
			}
			sub := newTransport(t, client(subName), ns, fastRecovery...)
			pub := newTransport(t, client(uniq("pub")), ns, fastRecovery...)
			r := subscribe(t, sub)
			for round := range 3 {
				from := len(r.kinds())
				if n := testenv.RedisKillNamedSubscribers(t, srv.Addr(), nil, subName); n != 1 {
					t.Fatalf("round %d: killed %d subscriber connections; want 1", round, n)
				}
				d := expectRecovery(t, r, from)
				if d.Err == nil || d.Time.IsZero() {
					t.Errorf("round %d: EventDisconnected without cause or time: %+v", round, d)
				}
				publishUntil(t, pub, fmt.Sprint("after-kill-", round), r)
			}
			// Idle for several health-check periods: PINGs are answered
			// on this protocol, so nothing else happens.
			n := len(r.kinds())
			time.Sleep(time.Second)
			publishUntil(t, pub, "after-idle", r)
			k := r.kinds()
			if len(k) != n {
				t.Errorf("events while idle: %v", k[n:])
			}
			if k[0] != core.EventConnected || slices.Index(k[1:], core.EventConnected) >= 0 {
				t.Errorf("events %v; want connected once, first", k)
			}
		})
	}
}

func TestServerRestartWhilePublishing(t *testing.T) {
	srv := testenv.StartRedis(t)
	ns := uniq("restart")
	a := newTransport(t, newClient(t, srv.Addr(), uniq("a")), ns, fastRecovery...)
	b := newTransport(t, newClient(t, srv.Addr(), uniq("b")), ns, fastRecovery...)
	ra, rb := subscribe(t, a), subscribe(t, b)

	stop := make(chan struct{})
	done := make(chan struct{})
	var published, failed atomic.Int64
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := a.Publish(ctx, fmt.Appendf(nil, "during-%d", i)); err != nil {
				failed.Add(1)
			} else {
				published.Add(1)
			}
			cancel()
		}
	}()
	waitFor(t, "publisher running", func() bool { return published.Load() > 10 })
	srv.Restart()
	expectRecovery(t, ra, 1)
	expectRecovery(t, rb, 1)
	publishUntil(t, a, "after-restart-a", ra, rb)
	publishUntil(t, b, "after-restart-b", ra, rb)
	close(stop)
	<-done
	t.Logf("publishes during the restart: %d ok, %d failed", published.Load(), failed.Load())
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		if k := r.kinds(); slices.Index(k[1:], core.EventConnected) >= 0 {
			t.Errorf("%s: events %v; want connected once", name, k)
		}
	}
}

func TestHealthCheckReplacesSilentConnection(t *testing.T) {
	srv := testenv.StartRedis(t)
	ns := uniq("silent")
	sub := newTransport(t, newClient(t, srv.Addr(), uniq("sub")), ns,
		redistransport.WithHealthCheck(100*time.Millisecond, 300*time.Millisecond),
		redistransport.WithReconnectBackoff(10*time.Millisecond, 100*time.Millisecond))
	pub := newTransport(t, newClient(t, srv.Addr(), uniq("pub")), ns)
	r := subscribe(t, sub)
	// A paused server answers nothing, like a half-open connection.
	if _, err := srv.Do("CLIENT", "PAUSE", "1500", "ALL"); err != nil {
		t.Fatal(err)
	}
	d := expectRecovery(t, r, 1)
	if !errors.Is(d.Err, redistransport.ErrHealthCheck) {
		t.Errorf("disconnect cause %v; want redistransport.ErrHealthCheck", d.Err)
	}
	publishUntil(t, pub, "after-pause", r)
}

func TestCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	cases := []struct {
		name    string
		opts    []redistransport.Option
		sharded bool
	}{
		{"sharded", nil, true},
		{"classic", []redistransport.Option{redistransport.WithPubSubMode(redistransport.PubSubClassic)}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ns := uniq("cluster-" + c.name)
			var trs []*redistransport.Transport
			var recs []*recorder
			for i := range 3 {
				cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ClientName: uniq(fmt.Sprint("n", i))})
				t.Cleanup(func() { _ = cc.Close() })
				tr := newTransport(t, cc, ns, append(fastRecovery, c.opts...)...)
				if tr.Sharded() != c.sharded {
					t.Fatalf("Sharded() = %v; want %v", tr.Sharded(), c.sharded)
				}
				trs = append(trs, tr)
				recs = append(recs, subscribe(t, tr))
			}
			for i, tr := range trs {
				p := fmt.Sprintf("from-%d", i)
				if err := tr.Publish(context.Background(), []byte(p+"a"), []byte(p+"b")); err != nil {
					t.Fatalf("Publish: %v", err)
				}
				for j, r := range recs {
					waitFor(t, fmt.Sprintf("%s at %d", p, j), func() bool { return r.has(p+"a") && r.has(p+"b") })
				}
			}
			// Sharded channels live on one shard and are listed by
			// PUBSUB SHARDCHANNELS there; classic ones by PUBSUB CHANNELS.
			ch := trs[0].Channel()
			owners := 0
			for _, n := range cl.Nodes {
				nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
				subs, err := nc.PubSubShardNumSub(context.Background(), ch).Result()
				_ = nc.Close()
				if err != nil {
					t.Fatal(err)
				}
				if subs[ch] > 0 {
					owners++
					if subs[ch] != 3 {
						t.Errorf("%s: %d shard subscribers; want 3", n.Addr(), subs[ch])
					}
				}
			}
			if want := map[bool]int{true: 1, false: 0}[c.sharded]; owners != want {
				t.Errorf("%d nodes have sharded subscribers; want %d", owners, want)
			}
		})
	}
}

func TestClusterDisconnectAndRestart(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	ns := uniq("cluster-fault")
	name := uniq("sub")
	mk := func(n string) (*redistransport.Transport, *recorder) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs(), ClientName: n})
		t.Cleanup(func() { _ = cc.Close() })
		tr := newTransport(t, cc, ns, fastRecovery...)
		return tr, subscribe(t, tr)
	}
	a, ra := mk(name)
	b, rb := mk(uniq("peer"))
	if n := cl.KillNamedSubscribers(t, name); n != 1 {
		t.Fatalf("killed %d subscriber connections; want 1", n)
	}
	expectRecovery(t, ra, 1)
	publishUntil(t, b, "after-kill", ra)
	cl.Restart()
	expectRecovery(t, ra, 3)
	expectRecovery(t, rb, 1)
	publishUntil(t, a, "after-restart-a", ra, rb)
	publishUntil(t, b, "after-restart-b", ra, rb)
}

func TestTLS(t *testing.T) {
	srv := testenv.StartRedisTLS(t)
	ns := uniq("tls")
	open := func(conf *tls.Config) *redistransport.Transport {
		tr, err := redistransport.Open(srv.URL(), ns, redistransport.WithTLSConfig(conf))
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	a, b := open(srv.ClientTLSConfig()), open(srv.ClientTLSConfig())
	ra, rb := subscribe(t, a), subscribe(t, b)
	if err := a.Publish(context.Background(), []byte("over tls")); err != nil {
		t.Fatalf("Publish over TLS: %v", err)
	}
	waitFor(t, "TLS delivery", func() bool { return ra.has("over tls") && rb.has("over tls") })

	// A client that trusts another CA is refused, with the reason.
	other := testenv.StartRedisTLS(t)
	wrong := open(other.ClientTLSConfig())
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	err := wrong.Subscribe(ctx, &recorder{})
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Subscribe with the wrong CA: %v; want a certificate verification error", err)
	}
	if err := wrong.Publish(ctx, []byte("x")); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Publish with the wrong CA: %v; want a certificate verification error", err)
	}
	t.Logf("wrong CA: %v", err)
}

func TestSlowHandlerIsNotASilentConnection(t *testing.T) {
	ns := uniq("slow")
	sub := newTransport(t, sharedClient(t, uniq("sub")), ns,
		redistransport.WithHealthCheck(50*time.Millisecond, 100*time.Millisecond))
	pub := newTransport(t, sharedClient(t, uniq("pub")), ns)
	r := &recorder{}
	release := make(chan struct{})
	entered := make(chan struct{})
	h := core.HandlerFuncs{
		Message: func(p []byte) {
			if string(p) == "block" {
				close(entered)
				<-release
			}
			r.HandleMessage(p)
		},
		Event: r.HandleEvent,
	}
	if err := sub.Subscribe(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(context.Background(), []byte("block")); err != nil {
		t.Fatal(err)
	}
	<-entered
	// Block the handler for many health-check periods (the length of the
	// fault, not a synchronisation).
	time.Sleep(time.Second)
	close(release)
	if err := pub.Publish(context.Background(), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after the slow call", func() bool { return r.has("after") })
	if k := r.kinds(); !slices.Equal(k, []core.EventKind{core.EventConnected}) {
		t.Fatalf("events %v; a slow handler must not look like a dead connection", k)
	}
}

func TestACLUserFromURL(t *testing.T) {
	// alice may only use the backplane channels.
	srv := testenv.StartRedis(t, testenv.WithRedisArgs("--user", "alice", "on", ">s3cret", "resetchannels", "&backplane:*", "+@all"))
	ns := uniq("acl")
	url := "redis://alice:s3cret@" + srv.Addr() + "/2"
	a, err := redistransport.Open(url, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	r := subscribe(t, a)
	if err := a.Publish(context.Background(), []byte("acl ok")); err != nil {
		t.Fatalf("Publish as alice: %v", err)
	}
	waitFor(t, "delivery as an ACL user", func() bool { return r.has("acl ok") })

	cases := []struct {
		name, url string
		opts      []redistransport.Option
		want      string
	}{
		{"wrong password", "redis://alice:wrong@" + srv.Addr(), nil, "WRONGPASS"},
		{"channel not allowed", url, []redistransport.Option{redistransport.WithChannelPrefix("other:")}, "NOPERM"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := redistransport.Open(c.url, ns, c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ctx, cancel := context.WithTimeout(context.Background(), bound)
			defer cancel()
			if err := tr.Subscribe(ctx, &recorder{}); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Subscribe: %v; want an error with %s", err, c.want)
			}
			if err := tr.Publish(ctx, []byte("x")); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Publish: %v; want an error with %s", err, c.want)
			}
		})
	}
}

// TestClusterSlotMigration moves the slot of the channel to another master:
// Redis ends the shard subscription (sunsubscribe), and the transport must
// report it, follow the slot and resume delivery.
func TestClusterSlotMigration(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	ns := uniq("migrate")
	mk := func() (*redistransport.Transport, *recorder) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { _ = cc.Close() })
		tr := newTransport(t, cc, ns, fastRecovery...)
		return tr, subscribe(t, tr)
	}
	a, ra := mk()
	_, rb := mk()
	publishUntil(t, a, "before", ra, rb)

	slot, err := cl.Nodes[0].Do("CLUSTER", "KEYSLOT", a.Channel())
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(cl.Nodes))
	src := -1
	for i, n := range cl.Nodes {
		if ids[i], err = n.Do("CLUSTER", "MYID"); err != nil {
			t.Fatal(err)
		}
		// The owner of the slot is the node with the shard subscribers.
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		subs, err := nc.PubSubShardNumSub(context.Background(), a.Channel()).Result()
		_ = nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if subs[a.Channel()] > 0 {
			src = i
		}
	}
	if src < 0 {
		t.Fatal("no node has the shard subscribers")
	}
	dst := (src + 1) % len(cl.Nodes)
	do := func(n int, args ...string) {
		t.Helper()
		if _, err := cl.Nodes[n].Do(args...); err != nil {
			t.Fatalf("%s on %s: %v", strings.Join(args, " "), cl.Nodes[n].Addr(), err)
		}
	}
	do(dst, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[src])
	do(src, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[dst])
	// The slot's keys (the transports' mode markers, modes.go) would have
	// to move with it; they are set again at the next check, so they go.
	func() {
		nc := redis.NewClient(&redis.Options{Addr: cl.Nodes[src].Addr()})
		defer nc.Close()
		n, _ := strconv.Atoi(slot)
		keys, err := nc.ClusterGetKeysInSlot(context.Background(), n, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if err := nc.Del(context.Background(), k).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}()
	do(dst, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
	do(src, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
	for i := range cl.Nodes {
		if i != src && i != dst {
			do(i, "CLUSTER", "SETSLOT", slot, "NODE", ids[dst])
		}
	}
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		d := expectRecovery(t, r, 1)
		if !errors.Is(d.Err, redistransport.ErrUnsubscribed) {
			t.Errorf("%s: disconnect cause %v; want redistransport.ErrUnsubscribed", name, d.Err)
		}
	}
	publishUntil(t, a, "after", ra, rb)
	nc := redis.NewClient(&redis.Options{Addr: cl.Nodes[dst].Addr()})
	defer nc.Close()
	if subs, err := nc.PubSubShardNumSub(context.Background(), a.Channel()).Result(); err != nil || subs[a.Channel()] != 2 {
		t.Errorf("new owner %s has %v shard subscribers (%v); want 2", cl.Nodes[dst].Addr(), subs, err)
	}
}

// TestClusterFailover kills the master that holds the shard subscriptions;
// its replica takes over and the transport must follow it.
func TestClusterFailover(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3, testenv.WithRedisReplicas(1))
	ns := uniq("failover")
	mk := func() (*redistransport.Transport, *recorder) {
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: cl.Addrs()})
		t.Cleanup(func() { _ = cc.Close() })
		tr := newTransport(t, cc, ns, fastRecovery...)
		return tr, subscribe(t, tr)
	}
	a, ra := mk()
	b, rb := mk()
	publishUntil(t, a, "before", ra, rb)
	var owner *testenv.RedisServer
	for _, n := range cl.All() {
		nc := redis.NewClient(&redis.Options{Addr: n.Addr()})
		subs, err := nc.PubSubShardNumSub(context.Background(), a.Channel()).Result()
		_ = nc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if subs[a.Channel()] > 0 {
			owner = n
		}
	}
	if owner == nil {
		t.Fatal("no node has the shard subscribers")
	}
	owner.Kill()
	start := time.Now()
	expectRecovery(t, ra, 1)
	expectRecovery(t, rb, 1)
	publishUntil(t, a, "after-a", ra, rb)
	publishUntil(t, b, "after-b", ra, rb)
	t.Logf("recovered %v after the master was killed", time.Since(start))
}

func TestOptions(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer client.Close()
	cases := []struct {
		name    string
		opts    []redistransport.Option
		sharded bool
		max     int
		channel string
	}{
		{"defaults", nil, false, redistransport.DefaultMaxPayload, "backplane:{ns}"},
		{"sharded on", []redistransport.Option{redistransport.WithShardedPubSub(true)}, true, redistransport.DefaultMaxPayload, "backplane:{ns}"},
		{"sharded off", []redistransport.Option{redistransport.WithShardedPubSub(false)}, false, redistransport.DefaultMaxPayload, "backplane:{ns}"},
		{"struct", []redistransport.Option{redistransport.WithOptions(redistransport.Options{
			Mode: redistransport.PubSubSharded, MaxPayload: 100, ChannelPrefix: "app:",
		})}, true, 100, "app:{ns}"},
		{"struct then option", []redistransport.Option{
			redistransport.WithOptions(redistransport.Options{MaxPayload: 100}),
			redistransport.WithMaxPayload(200),
		}, false, 200, "backplane:{ns}"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr, err := redistransport.New(client, "ns", c.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			if tr.Sharded() != c.sharded || tr.Limits().MaxPayload != c.max || tr.Channel() != c.channel {
				t.Errorf("sharded %v, max %d, channel %q; want %v, %d, %q",
					tr.Sharded(), tr.Limits().MaxPayload, tr.Channel(), c.sharded, c.max, c.channel)
			}
		})
	}
	for m, want := range map[redistransport.PubSubMode]string{
		redistransport.PubSubAuto: "auto", redistransport.PubSubClassic: "classic",
		redistransport.PubSubSharded: "sharded", 9: "PubSubMode(9)",
	} {
		if m.String() != want {
			t.Errorf("PubSubMode(%d).String() = %q; want %q", int(m), m.String(), want)
		}
	}
}

func TestShardedOnStandaloneAndLogging(t *testing.T) {
	srv := testenv.StartRedis(t)
	var logs syncbuf.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ns := uniq("sharded-standalone")
	name := uniq("sub")
	sub := newTransport(t, newClient(t, srv.Addr(), name), ns,
		append(fastRecovery, redistransport.WithShardedPubSub(true), redistransport.WithLogger(logger))...)
	pub := newTransport(t, newClient(t, srv.Addr(), uniq("pub")), ns, redistransport.WithShardedPubSub(true))
	r := subscribe(t, sub)
	publishUntil(t, pub, "sharded", r)
	if n := testenv.RedisKillNamedSubscribers(t, srv.Addr(), nil, name); n != 1 {
		t.Fatalf("killed %d subscriber connections; want 1", n)
	}
	expectRecovery(t, r, 1)
	publishUntil(t, pub, "sharded-after", r)
	for _, want := range []string{"subscriber connected", "subscriber disconnected", "subscriber reconnected", "channel=backplane:{" + ns + "}"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestSubscribeHonoursContextAndClose(t *testing.T) {
	srv := testenv.StartRedis(t)
	tr := newTransport(t, newClient(t, srv.Addr(), uniq("sub")), uniq("ctx"))
	pause := func() {
		t.Helper()
		// A paused server does not confirm the subscription.
		if _, err := srv.Do("CLIENT", "PAUSE", "1500", "ALL"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = srv.Do("CLIENT", "UNPAUSE") })
	}
	pause()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := tr.Subscribe(ctx, &recorder{})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe on a paused server: %v; want context.DeadlineExceeded", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	go func() { cancel() }()
	if err := tr.Subscribe(ctx, &recorder{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe with a cancelled context: %v; want context.Canceled", err)
	}
	if _, err := srv.Do("CLIENT", "UNPAUSE"); err != nil {
		t.Fatal(err)
	}
	r := subscribe(t, tr) // a failed Subscribe may be retried
	if err := tr.Publish(context.Background(), []byte("after retry")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after a retried Subscribe", func() bool { return r.has("after retry") })

	// Close while Subscribe waits makes Subscribe return ErrClosed.
	other := newTransport(t, newClient(t, srv.Addr(), uniq("sub2")), uniq("ctx"))
	pause()
	done := make(chan error, 1)
	go func() { done <- other.Subscribe(context.Background(), &recorder{}) }()
	// Close at any point of the Subscribe: before it starts, while it dials
	// or while it waits for the confirmation.
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, core.ErrClosed) {
			t.Fatalf("Subscribe interrupted by Close: %v; want core.ErrClosed", err)
		}
	case <-time.After(bound):
		t.Fatal("Subscribe did not return after Close")
	}
}
