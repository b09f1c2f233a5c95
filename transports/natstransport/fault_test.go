package natstransport_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// publishLoop publishes numbered messages until the test ends, ignoring
// errors (the broker goes away on purpose), and counts the failures.
func publishLoop(t *testing.T, tr *natstransport.Transport, prefix string) (failed *atomic.Int64) {
	t.Helper()
	failed = &atomic.Int64{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := tr.Publish(ctx, []byte(fmt.Sprintf("%s%d", prefix, i))); err != nil {
				failed.Add(1)
				time.Sleep(5 * time.Millisecond) // back off while the broker is away
			}
			cancel()
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })
	return failed
}

func TestServerRestartWhilePublishing(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	pub, recPub := subscribed(t, srv.URL(), ns)
	_, rec := subscribed(t, srv.URL(), ns)
	failed := publishLoop(t, pub, "p")
	waitFor(t, "messages flowing", func() bool { return len(rec.messages()) > 20 })

	srv.Shutdown()
	for name, r := range map[string]*recorder{"publisher": recPub, "subscriber": rec} {
		waitFor(t, name+" disconnected", func() bool { return r.count(core.EventDisconnected) == 1 })
		if ev, _ := r.firstEvent(core.EventDisconnected); ev.Err == nil {
			t.Errorf("%s: disconnect event without a cause", name)
		}
	}
	waitFor(t, "publishes failing while down", func() bool { return failed.Load() > 0 })
	err := pub.Publish(ctxT(t), []byte("while down"))
	if !errors.Is(err, natstransport.ErrNotConnected) {
		t.Fatalf("Publish while down = %v, want ErrNotConnected", err)
	}

	srv.Restart()
	for name, r := range map[string]*recorder{"publisher": recPub, "subscriber": rec} {
		waitFor(t, name+" reconnected", func() bool { return r.count(core.EventReconnected) == 1 })
	}
	// Reconnected means the subscription is active again.
	if err := pub.Publish(ctxT(t), []byte("after restart")); err != nil {
		t.Fatalf("Publish after reconnect: %v", err)
	}
	waitFor(t, "delivery after restart", func() bool { return rec.has("after restart") })
	want := []core.EventKind{core.EventConnected, core.EventDisconnected, core.EventReconnected}
	if got := rec.kinds(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

func TestServerKicksClient(t *testing.T) {
	srv := testenv.StartNATS(t)
	ns := namespace(t)
	tr, rec := subscribed(t, srv.URL(), ns)
	pub, _ := subscribed(t, srv.URL(), ns)
	cid, err := tr.Conn().GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DisconnectClient(cid); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
	if rec.count(core.EventDisconnected) != 1 {
		t.Fatalf("events = %v", rec.kinds())
	}
	if err := pub.Publish(ctxT(t), []byte("after kick")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after kick", func() bool { return rec.has("after kick") })
}

// TestCallerConnection checks New over a connection the caller made: the
// caller's callbacks keep working, events still arrive, and Close leaves the
// connection open.
func TestCallerConnection(t *testing.T) {
	srv := testenv.StartNATS(t)
	var userDown, userUp atomic.Int64
	nc, err := nats.Connect(srv.URL(),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { userDown.Add(1) }),
		nats.ReconnectHandler(func(*nats.Conn) { userUp.Add(1) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ns := namespace(t)
	tr, err := natstransport.New(nc, ns)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	pub, _ := subscribed(t, srv.URL(), ns)

	srv.Restart()
	waitFor(t, "transport reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
	waitFor(t, "caller's callbacks", func() bool { return userDown.Load() == 1 && userUp.Load() == 1 })
	if rec.count(core.EventDisconnected) != 1 {
		t.Fatalf("events = %v", rec.kinds())
	}
	publishUntil(t, pub, rec, "after restart")

	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if nc.IsClosed() {
		t.Fatal("Close closed the caller's connection")
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("caller's connection unusable after Close: %v", err)
	}
}

func TestCallerConnectionClosed(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := natstransport.New(nc, namespace(t))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	rec := &recorder{}
	if err := tr.Subscribe(ctxT(t), rec); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	waitFor(t, "disconnect on close", func() bool { return rec.count(core.EventDisconnected) == 1 })
	if err := tr.Publish(ctxT(t), []byte("x")); err == nil {
		t.Fatal("Publish on a closed connection succeeded")
	}
}

func TestCluster(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	ns := namespace(t)
	var trs []*natstransport.Transport
	var recs []*recorder
	for _, node := range cl.Nodes {
		tr, rec := subscribed(t, node.URL(), ns)
		trs = append(trs, tr)
		recs = append(recs, rec)
	}
	for _, tr := range trs {
		waitFor(t, "route interest", func() bool { return cl.HasRouteInterest(tr.Conn().ConnectedServerId(), tr.Subject()) })
	}
	for i, tr := range trs {
		if err := tr.Publish(ctxT(t), []byte(fmt.Sprintf("from-%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for j, rec := range recs {
		waitFor(t, fmt.Sprintf("node %d receiving from all", j), func() bool { return len(rec.messages()) == len(trs) })
		for i := range trs {
			if !rec.has(fmt.Sprintf("from-%d", i)) {
				t.Fatalf("instance %d missed from-%d: %q", j, i, rec.messages())
			}
		}
	}
}

func TestClusterFailover(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	ns := namespace(t)
	// The client knows all nodes.
	tr, rec := subscribed(t, strings.Join(cl.URLs(), ","), ns)
	home := tr.Conn().ConnectedServerId()
	var pubURL string
	for _, n := range cl.Nodes {
		if n.Server().ID() != home {
			pubURL = n.URL()
		}
	}
	pub := open(t, pubURL, ns) // only a surviving node
	waitFor(t, "route interest", func() bool { return cl.HasRouteInterest(home, tr.Subject()) })
	if err := pub.Publish(ctxT(t), []byte("before")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery before node loss", func() bool { return rec.has("before") })

	cl.Node(home).Shutdown()
	waitFor(t, "failover", func() bool { return rec.count(core.EventReconnected) == 1 })
	if rec.count(core.EventDisconnected) != 1 {
		t.Fatalf("events = %v", rec.kinds())
	}
	newHome := tr.Conn().ConnectedServerId()
	if newHome == home || newHome == "" {
		t.Fatalf("still on node %q after its loss", newHome)
	}
	waitFor(t, "route interest after failover", func() bool { return cl.HasRouteInterest(newHome, tr.Subject()) })
	if err := pub.Publish(ctxT(t), []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery after failover", func() bool { return rec.has("after") })
}

func TestTLSAndUserPassword(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSTLS(), testenv.WithNATSUser("app", "s3cret"))
	ns := namespace(t)
	url := srv.URL()
	if !strings.HasPrefix(url, "tls://") {
		t.Fatalf("URL = %q", url)
	}
	// CA from a file, credentials as options.
	a, recA := subscribed(t, url, ns, natstransport.WithRootCAFiles(srv.CAFile()), natstransport.WithUserInfo("app", "s3cret"))
	// CA from a tls.Config, credentials in the URL.
	b, recB := subscribed(t, strings.Replace(url, "tls://", "tls://app:s3cret@", 1), ns, natstransport.WithTLSConfig(srv.ClientTLSConfig()))
	if err := a.Publish(ctxT(t), []byte("over tls")); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*recorder{recA, recB} {
		waitFor(t, "delivery over TLS", func() bool { return rec.has("over tls") })
	}
	if !b.Conn().TLSRequired() {
		t.Fatal("connection is not TLS")
	}
}

func TestConnectFailuresAreClear(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSTLS(), testenv.WithNATSUser("app", "s3cret"))
	tests := []struct {
		name    string
		url     string
		opts    []natstransport.Option
		wantErr func(error) bool
	}{
		{
			name: "wrong password",
			url:  srv.URL(),
			opts: []natstransport.Option{natstransport.WithRootCAFiles(srv.CAFile()), natstransport.WithUserInfo("app", "wrong")},
			wantErr: func(err error) bool {
				return errors.Is(err, nats.ErrAuthorization)
			},
		},
		{
			name: "no credentials",
			url:  srv.URL(),
			opts: []natstransport.Option{natstransport.WithRootCAFiles(srv.CAFile())},
			wantErr: func(err error) bool {
				return errors.Is(err, nats.ErrAuthorization)
			},
		},
		{
			name: "untrusted CA",
			url:  srv.URL(),
			opts: []natstransport.Option{natstransport.WithUserInfo("app", "s3cret")},
			wantErr: func(err error) bool {
				var unknown x509.UnknownAuthorityError
				return errors.As(err, &unknown)
			},
		},
		{
			name: "no server",
			url:  fmt.Sprintf("nats://127.0.0.1:%d", testenv.FreePort(t)),
			wantErr: func(err error) bool {
				return errors.Is(err, nats.ErrNoServers)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := open(t, tt.url, namespace(t), tt.opts...)
			// The context is generous: a hang would end in
			// context.DeadlineExceeded, not in the cause.
			err := tr.Subscribe(ctxT(t), &recorder{})
			if err == nil || !tt.wantErr(err) {
				t.Fatalf("Subscribe = %v, want the cause", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Fatalf("error leaks the password: %v", err)
			}
			// Publish reports the same cause and the Transport stays usable.
			if err := tr.Publish(ctxT(t), []byte("x")); err == nil || !tt.wantErr(err) {
				t.Fatalf("Publish = %v, want the cause", err)
			}
		})
	}
}

func TestTokenAuth(t *testing.T) {
	srv := testenv.StartNATS(t, testenv.WithNATSToken("t0ken"))
	ns := namespace(t)
	tr, rec := subscribed(t, srv.URL(), ns, natstransport.WithToken("t0ken"))
	if err := tr.Publish(ctxT(t), []byte("with token")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return rec.has("with token") })

	bad := open(t, srv.URL(), ns, natstransport.WithToken("wrong"))
	if err := bad.Connect(ctxT(t)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Connect with a wrong token = %v, want nats.ErrAuthorization", err)
	}
}

func TestNKeyAuth(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := user.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	seed, err := user.Seed()
	if err != nil {
		t.Fatal(err)
	}
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartNATS(t, testenv.WithNATSNKey(pub))
	ns := namespace(t)
	tr, rec := subscribed(t, srv.URL(), ns, natstransport.WithNKeySeedFile(seedFile))
	if err := tr.Publish(ctxT(t), []byte("with nkey")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", func() bool { return rec.has("with nkey") })

	missing := open(t, srv.URL(), ns, natstransport.WithNKeySeedFile(filepath.Join(t.TempDir(), "absent.nk")))
	if err := missing.Connect(ctxT(t)); err == nil || !strings.Contains(err.Error(), "NKey seed file") {
		t.Fatalf("Connect with a missing seed file = %v", err)
	}
	anonymous := open(t, srv.URL(), ns)
	if err := anonymous.Connect(ctxT(t)); !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("Connect without the NKey = %v, want nats.ErrAuthorization", err)
	}
}

// TestMissedStatusNotifications checks that a Transport over a caller's
// connection recovers its view of the connection when nats.go dropped status
// notifications (it drops them while a listener's buffer is full, here
// because the handler is stuck while the server restarts many times).
func TestMissedStatusNotifications(t *testing.T) {
	srv := testenv.StartNATS(t)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ns := namespace(t)
	tr, err := natstransport.New(nc, ns, natstransport.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	release := make(chan struct{})
	var once sync.Once
	defer once.Do(func() { close(release) })
	var mu sync.Mutex
	var kinds []core.EventKind
	var gotX atomic.Bool
	h := core.HandlerFuncs{Message: func(p []byte) { gotX.Store(string(p) == "x") }, Event: func(ev core.Event) {
		mu.Lock()
		kinds = append(kinds, ev.Kind)
		first := ev.Kind == core.EventDisconnected && len(kinds) == 2
		mu.Unlock()
		if first {
			<-release
		}
	}}
	if err := tr.Subscribe(ctxT(t), h); err != nil {
		t.Fatal(err)
	}
	const restarts = 8 // 16 status changes, more than nats.go buffers
	for i := range restarts {
		srv.Restart()
		want := uint64(i + 1)
		waitFor(t, "client reconnected", func() bool { return nc.IsConnected() && nc.Stats().Reconnects >= want })
	}
	once.Do(func() { close(release) })
	waitFor(t, "final EventReconnected", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(kinds) > 0 && kinds[len(kinds)-1] == core.EventReconnected
	})
	mu.Lock()
	got := append([]core.EventKind(nil), kinds...)
	mu.Unlock()
	// Events alternate: connected, then disconnected/reconnected pairs.
	for i, k := range got {
		want := core.EventDisconnected
		switch {
		case i == 0:
			want = core.EventConnected
		case i%2 == 0:
			want = core.EventReconnected
		}
		if k != want {
			t.Fatalf("events %v: #%d is %v, want %v", got, i, k, want)
		}
	}
	// And delivery works.
	pub := open(t, srv.URL(), ns)
	if err := pub.Publish(ctxT(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delivery", gotX.Load)
}

// TestDialHonoursContext checks that a dial to a server that never answers
// ends the caller's wait with its context, and that Close then waits for
// the dial to give up (no goroutine left behind).
func TestDialHonoursContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var held []net.Conn
	var mu sync.Mutex
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c) // accept, never say INFO
			mu.Unlock()
		}
	})
	defer func() {
		_ = ln.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range held {
			_ = c.Close()
		}
		mu.Unlock()
	}()
	tr, err := natstransport.Open("nats://"+ln.Addr().String(), namespace(t), natstransport.WithConnectTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := tr.Connect(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Connect = %v, want context.DeadlineExceeded", err)
	}
	if err := tr.Subscribe(ctx, &recorder{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Subscribe = %v, want context.DeadlineExceeded", err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Connect(ctxT(t)); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Connect after Close = %v, want ErrClosed", err)
	}
}

// TestOwnedConnectionChainsCallbacks checks that callbacks passed with
// WithNATSOptions still run next to the Transport's own.
func TestOwnedConnectionChainsCallbacks(t *testing.T) {
	srv := testenv.StartNATS(t)
	var down, up, closed atomic.Int64
	tr, rec := subscribed(t, srv.URL(), namespace(t), natstransport.WithNATSOptions(
		nats.DisconnectErrHandler(func(*nats.Conn, error) { down.Add(1) }),
		nats.ReconnectHandler(func(*nats.Conn) { up.Add(1) }),
		nats.ClosedHandler(func(*nats.Conn) { closed.Add(1) }),
	))
	srv.Restart()
	waitFor(t, "transport reconnected", func() bool { return rec.count(core.EventReconnected) == 1 })
	waitFor(t, "caller's callbacks", func() bool { return down.Load() == 1 && up.Load() == 1 })
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "caller's closed callback", func() bool { return closed.Load() == 1 })
}
