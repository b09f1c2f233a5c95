package natstransport_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// connected opens a Transport on servers and dials it, so that Limits
// reports the server's value from the start.
func connected(t testing.TB, servers, ns string, opts ...natstransport.Option) *natstransport.Transport {
	t.Helper()
	opts = append([]natstransport.Option{
		natstransport.WithReconnectWait(50 * time.Millisecond),
		natstransport.WithLogger(quiet),
	}, opts...)
	tr, err := natstransport.Open(servers, ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := tr.Connect(ctx); err != nil {
		t.Fatalf("Connect: %v", err)
	}
	return tr
}

// kick has the server that nc is connected to close nc's connection, as a
// server closes a misbehaving client. If nc is still reconnecting from an
// earlier fault, kick waits until it is connected.
func kick(t testing.TB, nc *nats.Conn, node func(serverID string) *testenv.NATSServer) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		if nc.IsConnected() {
			srv := node(nc.ConnectedServerId())
			cid, err := nc.GetClientID()
			switch {
			case srv == nil:
				lastErr = fmt.Errorf("no node with ID %q", nc.ConnectedServerId())
			case err != nil:
				lastErr = err
			default:
				if lastErr = srv.DisconnectClient(cid); lastErr == nil {
					return
				}
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("cannot disconnect the client within %v: %v", waitTimeout, lastErr)
}

// sharedHarness uses the machine's NATS server (BACKPLANE_NATS_URL or
// 127.0.0.1:4222), which must not be restarted. Every instance connects
// through a TCP proxy of its own, so that Disconnect can cut its connection
// and Stall can hold the server's replies.
func sharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.NATSURL(t)
	var proxies shipped.Proxies
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			tr := connected(t, pu, ns, natstransport.WithNATSOptions(nats.IgnoreDiscoveredServers()))
			proxies.Add(tr, p)
			return tr
		},
		Ordered:    true,
		Disconnect: proxies.Reset,
		// The server's replies (the PONG of a flush) stop; what the
		// instance sends still reaches the server.
		Stall: proxies.Stall,
	}
}

// embeddedHarness uses an embedded server that the harness restarts and
// that kicks clients out.
func embeddedHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartNATS(t)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return connected(t, srv.URL(), ns)
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			kick(t, bp.(*natstransport.Transport).Conn(), func(string) *testenv.NATSServer { return srv })
		},
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// callerConnHarness is embeddedHarness with Transports made by New over
// connections the harness dials and closes itself: the path where the
// Transport follows a caller's connection through nc.StatusChanged.
func callerConnHarness(t *testing.T) conformance.BackplaneHarness {
	srv := testenv.StartNATS(t)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
				nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			t.Cleanup(nc.Close)
			tr, err := natstransport.New(nc, ns, natstransport.WithLogger(quiet))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return tr
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			kick(t, bp.(*natstransport.Transport).Conn(), func(string) *testenv.NATSServer { return srv })
		},
		RestartBroker: func(testing.TB) { srv.Restart() },
	}
}

// clusterHarness uses a 3-node cluster, with instances spread over the
// nodes (each knows all nodes, its own first). RestartBroker restarts
// every node.
func clusterHarness(t *testing.T) conformance.BackplaneHarness {
	cl := testenv.StartNATSCluster(t, 3)
	urls := cl.URLs()
	var next atomic.Int64
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			i := int(next.Add(1)) % len(urls)
			servers := strings.Join(append(append([]string(nil), urls[i:]...), urls[:i]...), ",")
			tr := connected(t, servers, ns, natstransport.WithNATSOptions(nats.DontRandomize()))
			return &clusterInstance{Transport: tr, cl: cl}
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			kick(t, bp.(*clusterInstance).Conn(), cl.Node)
		},
		RestartBroker: func(t testing.TB) {
			for _, n := range cl.Nodes {
				n.Shutdown()
			}
			for _, n := range cl.Nodes {
				n.Restart()
			}
			cl.WaitRoutes(t)
		},
		// Recoveries in a cluster include route reconnection.
		Bound: 10 * time.Second,
	}
}

var harnesses = []shipped.Harness{
	{Name: "shared", Make: sharedHarness},
	{Name: "embedded", Make: embeddedHarness},
	{Name: "caller-conn", Make: callerConnHarness},
	{Name: "cluster", Make: clusterHarness},
}

// TestConformance runs the Backplane suite on every harness.
func TestConformance(t *testing.T) { shipped.RunBackplane(t, harnesses) }

// TestCacheConformance runs the engine end to end over this transport with
// every store the module ships, on every harness.
func TestCacheConformance(t *testing.T) { shipped.RunCacheOn(t, harnesses) }

// clusterInstance waits in Subscribe until every node of the cluster has
// the new subscription's interest. natstransport.Transport's Subscribe
// guarantees this for the node it is connected to; interest reaches the
// other nodes over routes a moment later (see the package documentation),
// and the suite publishes from instances on other nodes right after
// Subscribe returns.
type clusterInstance struct {
	*natstransport.Transport
	cl *testenv.NATSCluster
}

func (c *clusterInstance) Subscribe(ctx context.Context, h core.Handler) error {
	if err := c.Transport.Subscribe(ctx, h); err != nil {
		return err
	}
	home := c.Conn().ConnectedServerId()
	for !c.cl.HasRouteInterest(home, c.Subject()) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("interest of %s not on all nodes: %w", c.Subject(), ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	return nil
}
