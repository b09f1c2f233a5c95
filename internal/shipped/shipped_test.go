package shipped_test

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// memHarness is a harness over a hub of its own.
func memHarness(t *testing.T) conformance.BackplaneHarness {
	hub := memtransport.NewHub()
	t.Cleanup(func() { _ = hub.Close() })
	return conformance.BackplaneHarness{
		New:     func(_ testing.TB, ns string) core.Backplane { return hub.New(ns) },
		Ordered: true,
	}
}

func TestRunBackplaneAndCacheOn(t *testing.T) {
	var made []string
	hs := []shipped.Harness{
		{Name: "one", Make: func(t *testing.T) conformance.BackplaneHarness { made = append(made, "one"); return memHarness(t) }},
		{Name: "two", Make: func(t *testing.T) conformance.BackplaneHarness { made = append(made, "two"); return memHarness(t) }},
	}
	shipped.RunBackplane(t, hs)
	if len(made) != 2 || made[0] != "one" || made[1] != "two" {
		t.Fatalf("RunBackplane made harnesses %q; want one, two", made)
	}
	if testing.Short() {
		return
	}
	made = nil
	shipped.RunCacheOn(t, hs[:1])
	if len(made) != len(shipped.Stores()) {
		t.Fatalf("RunCacheOn made %d harnesses; want one per store (%d)", len(made), len(shipped.Stores()))
	}
}

// echoServer answers every connection with what it reads.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	return ln.Addr().String()
}

// fakeBackplane stands for an instance in the proxy registry.
type fakeBackplane struct{ core.Backplane }

func TestProxiesStallAndReset(t *testing.T) {
	var ps shipped.Proxies
	proxied, p := ps.Via(t, "redis://"+echoServer(t)+"/0")
	if want := "redis://" + p.Addr() + "/0"; proxied != want {
		t.Fatalf("Via = %q; want %q", proxied, want)
	}
	bp := &fakeBackplane{}
	ps.Add(bp, p)
	if ps.Of(t, bp) != p {
		t.Fatal("Of does not return the proxy added")
	}
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(deadline time.Duration) error {
		if _, err := c.Write([]byte("x")); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(deadline))
		_, err := io.ReadFull(c, make([]byte, 1))
		return err
	}
	if err := echo(5 * time.Second); err != nil {
		t.Fatalf("echo through the proxy: %v", err)
	}
	resume := ps.Stall(t, bp)
	var ne net.Error
	if err := echo(100 * time.Millisecond); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("echo while stalled: %v; want a timeout", err)
	}
	resume()
	// The echo held by the stall arrives, then the next one.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("the held echo after resume: %v", err)
	}
	if err := echo(5 * time.Second); err != nil {
		t.Fatalf("echo after resume: %v", err)
	}
	ps.Reset(t, bp)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the connection survived Reset")
	}
}
