package testenv_test

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/internal/testenv"
)

// verifyNoNATSLeaks checks, at the end of t, that t left no goroutines
// behind (servers and clients included).
func verifyNoNATSLeaks(t *testing.T) {
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

func TestStartNATSRestart(t *testing.T) {
	verifyNoNATSLeaks(t)
	srv := testenv.StartNATS(t)
	reconnected := make(chan struct{}, 1)
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { reconnected <- struct{}{} }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	url := srv.URL()
	srv.Shutdown()
	if srv.Server() != nil {
		t.Fatal("Server() after Shutdown is not nil")
	}
	srv.Shutdown() // no-op
	srv.Restart()
	if srv.URL() != url {
		t.Fatalf("URL changed across Restart: %q, then %q", url, srv.URL())
	}
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect to the restarted server")
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	cid, err := nc.GetClientID()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.DisconnectClient(cid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(10 * time.Second):
		t.Fatal("client did not reconnect after being kicked")
	}
}

func TestStartNATSTLSAndUser(t *testing.T) {
	verifyNoNATSLeaks(t)
	srv := testenv.StartNATS(t, testenv.WithNATSTLS(), testenv.WithNATSUser("u", "p"), testenv.WithNATSMaxPayload(4096))
	nc, err := nats.Connect(srv.URL(), nats.Secure(srv.ClientTLSConfig()), nats.UserInfo("u", "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if !nc.TLSRequired() || nc.MaxPayload() != 4096 {
		t.Fatalf("TLS %v, max payload %d", nc.TLSRequired(), nc.MaxPayload())
	}
	nc2, err := nats.Connect(srv.URL(), nats.RootCAs(srv.CAFile()), nats.UserInfo("u", "wrong"))
	if !errors.Is(err, nats.ErrAuthorization) {
		if nc2 != nil {
			nc2.Close()
		}
		t.Fatalf("wrong password: %v", err)
	}
}

func TestStartNATSCluster(t *testing.T) {
	verifyNoNATSLeaks(t)
	cl := testenv.StartNATSCluster(t, 3)
	sub, err := nats.Connect(cl.Nodes[0].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := make(chan *nats.Msg, 1)
	if _, err := sub.ChanSubscribe("x.y", got); err != nil {
		t.Fatal(err)
	}
	if err := sub.Flush(); err != nil {
		t.Fatal(err)
	}
	home := sub.ConnectedServerId()
	if cl.Node(home) != cl.Nodes[0] {
		t.Fatal("Node does not find the subscriber's node")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !cl.HasRouteInterest(home, "x.y") {
		if time.Now().After(deadline) {
			t.Fatal("interest did not propagate")
		}
		time.Sleep(5 * time.Millisecond)
	}
	pub, err := nats.Connect(cl.Nodes[2].URL())
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish("x.y", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if string(m.Data) != "hi" {
			t.Fatalf("got %q", m.Data)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not routed")
	}
	cl.Nodes[1].Shutdown()
	cl.WaitRoutes(t)
	if n := cl.Nodes[0].Server().NumRoutes(); n != 1 {
		t.Fatalf("routes after node loss: %d", n)
	}
}

func TestNATSURLFromEnv(t *testing.T) {
	t.Setenv(testenv.NATSURLEnv, "nats://example.invalid:4222")
	if got := testenv.NATSURL(t); got != "nats://example.invalid:4222" {
		t.Fatalf("NATSURL = %q", got)
	}
}
