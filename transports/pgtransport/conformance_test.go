package pgtransport_test

import (
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/pgtransport"
)

// sharedHarness uses the machine's PostgreSQL (BACKPLANE_POSTGRES_URL or
// 127.0.0.1:5432), which must not be restarted; Disconnect terminates only
// the instance's own backends (pg_terminate_backend, found by their
// application_name). Every instance connects through a TCP proxy of its
// own, so that Stall can hold the server's replies to it.
func sharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.PostgresURL(t)
	var proxies shipped.Proxies
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			bp := openNamed(t, pu, ns)
			proxies.Add(bp, p)
			return bp
		},
		Ordered:    true,
		Disconnect: func(t testing.TB, bp core.Backplane) { terminate(t, target, bp) },
		Stall:      proxies.Stall,
	}
}

// privateHarness uses a private server (initdb and postgres on a free
// port) that RestartBroker kills with SIGKILL, backends and all, and starts
// again on the same port.
func privateHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartPostgres(t)
	return conformance.BackplaneHarness{
		New:           func(t testing.TB, ns string) core.Backplane { return openNamed(t, srv.URL(), ns) },
		Ordered:       true,
		Disconnect:    func(t testing.TB, bp core.Backplane) { terminate(t, srv.URL(), bp) },
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// poolHarness is privateHarness with Transports made by New over pools
// that the harness creates and closes itself: the path of an application
// that hands its own *pgxpool.Pool to the transport.
func poolHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartPostgres(t)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pool := newPool(t, named(t, srv.URL(), uniq("pool")))
			tr, err := pgtransport.New(pool, ns, fastRecovery...)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return tr
		},
		Ordered:       true,
		Disconnect:    func(t testing.TB, bp core.Backplane) { terminate(t, srv.URL(), bp) },
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

var harnesses = []shipped.Harness{
	{Name: "shared", Make: sharedHarness},
	{Name: "private", Make: privateHarness},
	{Name: "pool", Make: poolHarness},
}

// TestConformance runs the Backplane suite on every harness.
func TestConformance(t *testing.T) { shipped.RunBackplane(t, harnesses) }

// TestCacheConformance runs the engine end to end over this transport with
// every store the module ships, on every harness.
func TestCacheConformance(t *testing.T) { shipped.RunCacheOn(t, harnesses) }
