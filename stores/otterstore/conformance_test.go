package otterstore_test

import (
	"errors"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// conformanceConfigs are small stores (a few MiB or a few thousand
// entries) so that the eviction case fills them quickly, with a clock fine
// enough that the TTL case ends soon.
var conformanceConfigs = map[string]otterstore.Config{
	"bytes":               {MaxBytes: 4 << 20, MaxValueLen: 256 << 10, TTL: true, ClockResolution: 10 * time.Millisecond},
	"bytes-derived-limit": {MaxBytes: 4 << 20, TTL: true},
	"entries":             {MaxEntries: 4096, TTL: true},
	"entries-no-ttl":      {MaxEntries: 4096},
}

func opener(cfg otterstore.Config) func(t testing.TB) core.LocalStore {
	return func(t testing.TB) core.LocalStore {
		s, err := otterstore.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	for name, cfg := range conformanceConfigs {
		t.Run(name, func(t *testing.T) {
			probe, err := otterstore.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			caps := probe.Caps()
			_ = probe.Close()
			conformance.RunStore(t, opener(cfg), caps)
		})
	}
}

// TestCacheConformance runs the engine end to end over the store and the
// in-process transport, with its injected disconnects and restarts. The
// transports' own tests run it over Redis, NATS and Service Bus with every
// shipped store (internal/shipped).
func TestCacheConformance(t *testing.T) {
	hub := memtransport.NewHub()
	conformance.RunCache(t, conformance.CacheHarness{
		Backplane: conformance.BackplaneHarness{
			New:     func(t testing.TB, ns string) core.Backplane { return hub.New(ns) },
			Ordered: true,
			Disconnect: func(t testing.TB, bp core.Backplane) {
				tr := bp.(*memtransport.Transport)
				tr.Disconnect(errors.New("otterstore test: cut"))
				tr.Reconnect()
			},
			RestartBroker: func(testing.TB) { hub.Restart() },
		},
		NewStore: opener(otterstore.DefaultConfig()),
	})
}
