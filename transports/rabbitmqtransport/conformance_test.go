package rabbitmqtransport_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/rabbitmqtransport"
)

// sharedHarness uses the machine's RabbitMQ (BACKPLANE_RABBITMQ_URL or
// 127.0.0.1:5672), which must not be restarted. Every instance connects
// through a TCP proxy of its own: Disconnect resets its connections, Stall
// holds the broker's replies to it.
func sharedHarness(t *testing.T) conformance.BackplaneHarness {
	target := testenv.RabbitMQURL(t)
	var proxies shipped.Proxies
	drop := &dropExchanges{url: target}
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			pu, p := proxies.Via(t, target)
			bp := open(t, pu, ns)
			drop.add(t, bp.Exchange())
			proxies.Add(bp, p)
			return bp
		},
		Ordered:    true,
		Disconnect: proxies.Reset,
		Stall:      proxies.Stall,
		Bound:      10 * time.Second,
	}
}

// privateHarness uses the binary's private node. Disconnect closes the
// instance's connection from the broker's side (rabbitmqctl
// close_connection, by its connection name); RestartBroker kills the node
// with SIGKILL and starts it again on the same port.
func privateHarness(t *testing.T) conformance.BackplaneHarness {
	srv := privateNode(t)
	var mu sync.Mutex
	names := map[core.Backplane]string{}
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			name := uniq("bp-private")
			bp := open(t, srv.URL(), ns, rabbitmqtransport.WithConnectionName(name))
			mu.Lock()
			names[bp] = name
			mu.Unlock()
			return bp
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			t.Helper()
			mu.Lock()
			name := names[bp]
			mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			// A connection that is being replaced after an earlier fault
			// is not listed yet: try until one was closed.
			ok := eventually(bound, func() bool {
				n, err := srv.CloseConnections(ctx, name, "backplane conformance: disconnect")
				if err != nil {
					t.Logf("disconnect: %v", err)
				}
				return n > 0
			})
			if !ok {
				t.Fatalf("disconnect: no connection named %q on node %s", name, srv.Node())
			}
		},
		RestartBroker: func(t testing.TB) {
			t.Helper()
			if err := srv.TryRestart(); err != nil {
				t.Fatal(err)
			}
		},
		// rabbitmqctl takes a second or two, a restart several.
		Bound: 15 * time.Second,
	}
}

var harnesses = []shipped.Harness{
	{Name: "shared", Make: sharedHarness},
	{Name: "private", Make: privateHarness},
}

// TestConformance runs the Backplane suite on every harness.
func TestConformance(t *testing.T) { shipped.RunBackplane(t, harnesses) }

// TestCacheConformance runs the engine end to end over this transport with
// every store the module ships, on every harness.
func TestCacheConformance(t *testing.T) { shipped.RunCacheOn(t, harnesses) }
