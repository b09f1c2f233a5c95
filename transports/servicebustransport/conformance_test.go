package servicebustransport_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv/sbfake"
	"github.com/backplane-go/backplane/transports/servicebustransport"
)

// dropper cuts one instance's connection on the fake: the connection that
// holds the receiver of its subscription (and its sender).
func dropper(srv *sbfake.Server) func(t testing.TB, bp core.Backplane) {
	return func(t testing.TB, bp core.Backplane) {
		tr := bp.(*servicebustransport.Transport)
		path := tr.Topic() + "/Subscriptions/" + tr.Subscription()
		if !eventually(waitTimeout, func() bool { return srv.DropEntity(path) > 0 }) {
			t.Fatalf("no connection with a link to %s within %v", path, waitTimeout)
		}
	}
}

// restarter drops every connection and refuses new ones for a moment; the
// fake's topics and subscriptions (with their messages) stay, as a
// restarted namespace keeps them.
func restarter(srv *sbfake.Server) func(t testing.TB) {
	return func(testing.TB) {
		srv.Refuse(300 * time.Millisecond)
		srv.DropAll()
	}
}

// preprovisionedHarness gives every instance a subscription made on the
// fake beforehand (Options.Subscription) and a client of its own (Open),
// connected through a TCP proxy of its own so that Stall can hold the
// fake's replies to it.
func preprovisionedHarness(t *testing.T) conformance.BackplaneHarness {
	srv := startFake(t)
	var n atomic.Int64
	var proxies shipped.Proxies
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			sub := fmt.Sprintf("instance-%d", n.Add(1))
			srv.AddTopic(servicebustransport.DefaultTopicPrefix+ns, sub)
			p := proxies.Start(t, srv.Addr())
			conn := strings.Replace(srv.ConnectionString(), srv.Addr(), p.Addr(), 1)
			tr, err := servicebustransport.Open(conn, ns,
				servicebustransport.WithSubscription(sub),
				servicebustransport.WithClientOptions(fastRetries),
				servicebustransport.WithLogger(quiet))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			proxies.Add(tr, p)
			return tr
		},
		Ordered:       true,
		Disconnect:    dropper(srv),
		Stall:         proxies.Stall,
		RestartBroker: restarter(srv),
	}
}

// provisionedHarness gives every instance a subscription made by an
// AdminProvisioner (with the SDK's admin.Client, whose requests the fake
// serves in process), a client the harness made (New), and PeekLock. PeekLock is not ordered:
// the SDK releases messages that arrive between two receive calls, and they
// come back after later ones.
func provisionedHarness(t *testing.T) conformance.BackplaneHarness {
	srv := startFake(t)
	adm := adminClient(t, srv)
	return conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			srv.AddTopic(servicebustransport.DefaultTopicPrefix + ns)
			c, err := azservicebus.NewClientFromConnectionString(srv.ConnectionString(), fastRetries)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close(t.Context()) })
			tr, err := servicebustransport.New(c, ns,
				servicebustransport.WithProvisioner(servicebustransport.NewAdminProvisioner(adm)),
				servicebustransport.WithPeekLock(true),
				servicebustransport.WithLogger(quiet))
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			return tr
		},
		Ordered:       false,
		Disconnect:    dropper(srv),
		RestartBroker: restarter(srv),
	}
}

var harnesses = []shipped.Harness{
	{Name: "preprovisioned", Make: preprovisionedHarness},
	{Name: "provisioned-peeklock", Make: provisionedHarness},
}

// TestConformance runs the Backplane suite on every harness.
func TestConformance(t *testing.T) { shipped.RunBackplane(t, harnesses) }

// TestCacheConformance runs the engine end to end over this transport with
// every store the module ships, on every harness.
func TestCacheConformance(t *testing.T) { shipped.RunCacheOn(t, harnesses) }
