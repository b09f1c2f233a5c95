package natstransport_test

import (
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// Core NATS and JetStream share the namespace's subject: a fleet moves
// from one to the other and back by plain rolling deploys, with no
// transition setting and no stale read.
func TestRollingSwitchCoreJetStream(t *testing.T) {
	if testing.Short() {
		t.Skip("a rolling switch under load takes about half a minute")
	}
	url := testenv.NATSURL(t)
	var drop dropStreams
	open := func(t *testing.T, ns string, opts ...natstransport.Option) *natstransport.Transport {
		tr, err := natstransport.Open(url, ns, append([]natstransport.Option{natstransport.WithReconnectWait(50 * time.Millisecond)}, opts...)...)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		return tr
	}
	plain := func(t *testing.T, ns string) core.Backplane { return open(t, ns) }
	js := func(t *testing.T, ns string) core.Backplane {
		tr := open(t, ns, jsOpt(natstransport.StorageMemory))
		drop.add(t, url, tr)
		return tr
	}
	store := func(t *testing.T) core.LocalStore { return shipped.Stores()[0].New(t) }
	conformance.RunMigration(t, store, plain, js, plain)
}
