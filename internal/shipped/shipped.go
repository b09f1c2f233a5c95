package shipped

import (
	"testing"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/stores/otterstore"
)

// Store is one shipped LocalStore.
type Store struct {
	Name string
	New  func(t testing.TB) core.LocalStore
}

// Stores returns every LocalStore the module ships. A new store is added
// here, and every transport's cache conformance test picks it up.
func Stores() []Store {
	return []Store{
		{"bigcache", func(t testing.TB) core.LocalStore {
			s, err := bigcachestore.New(bigcachestore.DefaultConfig())
			if err != nil {
				t.Fatalf("bigcachestore: %v", err)
			}
			return s
		}},
		{"otter", func(t testing.TB) core.LocalStore {
			s, err := otterstore.New(otterstore.DefaultConfig())
			if err != nil {
				t.Fatalf("otterstore: %v", err)
			}
			return s
		}},
	}
}

// RunCache runs conformance.RunCache over the transport harness with every
// shipped store, one subtest per store.
func RunCache(t *testing.T, harness func(t *testing.T) conformance.BackplaneHarness) {
	t.Helper()
	for _, s := range Stores() {
		t.Run(s.Name, func(t *testing.T) {
			conformance.RunCache(t, conformance.CacheHarness{Backplane: harness(t), NewStore: s.New})
		})
	}
}
