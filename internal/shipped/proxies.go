package shipped

import (
	"net/url"
	"sync"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
)

// Proxies gives every instance a harness makes a TCP proxy of its own in
// front of the broker, so that faults reach that instance only, even on a
// server other tests share. The zero value is ready to use.
type Proxies struct {
	mu sync.Mutex
	m  map[core.Backplane]*faultproxy.Proxy
}

// Start starts a proxy to upstream (host:port), closed when t ends, and
// returns it; the harness dials the instance through its Addr and then
// calls Add.
func (ps *Proxies) Start(t testing.TB, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(upstream)
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// Via starts a proxy (as Start) to the host of rawURL, a URL such as
// redis://127.0.0.1:6379/0 or nats://127.0.0.1:4222, and returns rawURL
// with the proxy's address in its place, and the proxy.
func (ps *Proxies) Via(t testing.TB, rawURL string) (string, *faultproxy.Proxy) {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		t.Fatalf("proxy: URL %q has no host (%v)", rawURL, err)
	}
	p := ps.Start(t, u.Host)
	pu := *u
	pu.Host = p.Addr()
	return pu.String(), p
}

// Add records p as bp's proxy.
func (ps *Proxies) Add(bp core.Backplane, p *faultproxy.Proxy) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.m == nil {
		ps.m = make(map[core.Backplane]*faultproxy.Proxy)
	}
	ps.m[bp] = p
}

// Of returns bp's proxy; it fails t when bp has none.
func (ps *Proxies) Of(t testing.TB, bp core.Backplane) *faultproxy.Proxy {
	t.Helper()
	ps.mu.Lock()
	p := ps.m[bp]
	ps.mu.Unlock()
	if p == nil {
		t.Fatalf("no proxy for %T %p", bp, bp)
	}
	return p
}

// Stall is a conformance.BackplaneHarness.Stall: it holds what the broker
// sends to bp (its replies) until the returned function is called; what
// bp sends still reaches the broker.
func (ps *Proxies) Stall(t testing.TB, bp core.Backplane) func() {
	p := ps.Of(t, bp)
	p.SetStall(faultproxy.Down, true)
	return func() { p.SetStall(faultproxy.Down, false) }
}

// Reset is a conformance.BackplaneHarness.Disconnect: it resets every
// connection of bp's proxy, as a network that dropped them.
func (ps *Proxies) Reset(t testing.TB, bp core.Backplane) {
	ps.Of(t, bp).Reset()
}
