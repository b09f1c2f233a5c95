package conformance_test

import (
	"errors"
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// matrixMemHarness is the in-process transport, with fault injection.
func matrixMemHarness(opts ...memtransport.HubOption) conformance.BackplaneHarness {
	hub := memtransport.NewHub(opts...)
	return conformance.BackplaneHarness{
		New:     func(t testing.TB, ns string) core.Backplane { return hub.New(ns) },
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			tr := bp.(*memtransport.Transport)
			tr.Disconnect(errors.New("conformance: cut"))
			tr.Reconnect()
		},
		RestartBroker: func(testing.TB) { hub.Restart() },
	}
}

// transports lists the shipped transports that need no server.
var transports = map[string]func(t *testing.T) conformance.BackplaneHarness{
	"mem": func(*testing.T) conformance.BackplaneHarness { return matrixMemHarness() },
	"mem-durable": func(*testing.T) conformance.BackplaneHarness {
		return matrixMemHarness(memtransport.WithDurable(memtransport.DefaultQueueSize))
	},
}

// TestCacheMatrix runs the engine end to end on every (store, transport)
// pair the module ships whose transport needs no server. Each transport
// package runs the same (internal/shipped.RunCache) on its own harnesses,
// against real servers: transports/redistransport, natstransport and
// servicebustransport, TestCacheConformance.
func TestCacheMatrix(t *testing.T) {
	for tname, harness := range transports {
		t.Run(tname, func(t *testing.T) { shipped.RunCache(t, harness) })
	}
}
