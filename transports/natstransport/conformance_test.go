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

// TestConformanceShared runs the suite against the machine's NATS server
// (BACKPLANE_NATS_URL or 127.0.0.1:4222), which must not be restarted.
func TestConformanceShared(t *testing.T) {
	url := testenv.NATSURL(t)
	conformance.RunBackplane(t, conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return connected(t, url, ns)
		},
		Ordered: true,
	})
}

// TestConformanceEmbedded runs the suite against an embedded server that
// the harness restarts and that kicks clients out.
func TestConformanceEmbedded(t *testing.T) {
	srv := testenv.StartNATS(t)
	conformance.RunBackplane(t, conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return connected(t, srv.URL(), ns)
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			t.Helper()
			cid, err := bp.(*natstransport.Transport).Conn().GetClientID()
			if err != nil {
				t.Fatalf("client ID: %v", err)
			}
			if err := srv.DisconnectClient(cid); err != nil {
				t.Fatalf("disconnect client %d: %v", cid, err)
			}
		},
		RestartBroker: func(testing.TB) { srv.Restart() },
	})
}

// TestConformanceCluster runs the suite against a 3-node cluster, with
// instances spread over the nodes (each knows all nodes, its own first).
func TestConformanceCluster(t *testing.T) {
	cl := testenv.StartNATSCluster(t, 3)
	urls := cl.URLs()
	var next atomic.Int64
	conformance.RunBackplane(t, conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			i := int(next.Add(1)) % len(urls)
			servers := strings.Join(append(append([]string(nil), urls[i:]...), urls[:i]...), ",")
			tr := connected(t, servers, ns, natstransport.WithNATSOptions(nats.DontRandomize()))
			return &clusterInstance{Transport: tr, cl: cl}
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			t.Helper()
			nc := bp.(*clusterInstance).Conn()
			node := cl.Node(nc.ConnectedServerId())
			cid, err := nc.GetClientID()
			if node == nil || err != nil {
				t.Fatalf("client's node %q, ID: %v", nc.ConnectedServerId(), err)
			}
			if err := node.DisconnectClient(cid); err != nil {
				t.Fatalf("disconnect client %d: %v", cid, err)
			}
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
	})
}

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
