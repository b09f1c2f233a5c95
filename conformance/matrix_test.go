package conformance_test

import (
	"errors"
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// stores lists every LocalStore the module ships.
var stores = map[string]func(t testing.TB) core.LocalStore{
	"bigcache": func(t testing.TB) core.LocalStore {
		s, err := bigcachestore.New(bigcachestore.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		return s
	},
}

// matrixMemHarness is the in-process transport, with fault injection.
func matrixMemHarness() conformance.BackplaneHarness {
	hub := memtransport.NewHub()
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

// transports lists every transport the module ships. Each returns its
// harness, or skips (loudly; fails in CI) when its server is missing.
var transports = map[string]func(t *testing.T) conformance.BackplaneHarness{
	"mem": func(*testing.T) conformance.BackplaneHarness { return matrixMemHarness() },
}

// TestCacheMatrix runs the engine end to end on every (store, transport)
// pair the module ships.
func TestCacheMatrix(t *testing.T) {
	for sname, newStore := range stores {
		for tname, harness := range transports {
			t.Run(sname+"/"+tname, func(t *testing.T) {
				conformance.RunCache(t, conformance.CacheHarness{
					Backplane: harness(t),
					NewStore:  newStore,
				})
			})
		}
	}
}
