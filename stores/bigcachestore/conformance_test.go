package bigcachestore_test

import (
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

// conformanceConfig is a small cache (4 MiB in 16 shards) so that the
// eviction case fills it quickly.
func conformanceConfig() (*bigcachestore.Store, error) {
	cfg := bigcachestore.DefaultConfig()
	cfg.Shards = 16
	cfg.HardMaxCacheSize = 4
	return bigcachestore.New(cfg)
}

func TestConformance(t *testing.T) {
	probe, err := conformanceConfig()
	if err != nil {
		t.Fatal(err)
	}
	caps := probe.Caps()
	_ = probe.Close()
	conformance.RunStore(t, func(t testing.TB) core.LocalStore {
		s, err := conformanceConfig()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, caps)
}
