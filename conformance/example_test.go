package conformance_test

import (
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// A store's package runs the LocalStore suite from one of its tests. The
// function below is what the test file declares as
// func TestConformance(t *testing.T).
func ExampleRunStore() {
	testConformance := func(t *testing.T) {
		// A small cache, so that the eviction case fills it quickly.
		cfg := bigcachestore.DefaultConfig()
		cfg.Shards = 16
		cfg.HardMaxCacheSize = 4 // MiB
		newStore := func(t testing.TB) core.LocalStore {
			s, err := bigcachestore.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		probe := newStore(t)
		caps := probe.(*bigcachestore.Store).Caps()
		_ = probe.Close()
		conformance.RunStore(t, newStore, caps)
	}
	_ = testConformance
}

// A transport's package runs the Backplane suite from one of its tests,
// with a harness that makes instances and injects faults. The function
// below is what the test file declares as
// func TestConformance(t *testing.T).
func ExampleRunBackplane() {
	testConformance := func(t *testing.T) {
		hub := memtransport.NewHub() // the broker, private to this test
		t.Cleanup(func() { _ = hub.Close() })
		conformance.RunBackplane(t, conformance.BackplaneHarness{
			New: func(_ testing.TB, ns string) core.Backplane {
				return hub.New(ns)
			},
			Ordered: true,
			Disconnect: func(_ testing.TB, bp core.Backplane) {
				tr := bp.(*memtransport.Transport)
				tr.Disconnect(nil)
				tr.Reconnect()
			},
			RestartBroker: func(testing.TB) { hub.Restart() },
		})
	}
	_ = testConformance
}
