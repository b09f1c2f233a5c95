package shipped

import (
	"testing"

	"github.com/backplane-go/backplane/conformance"
)

// Harness is one named way a transport's tests make instances (a shared
// server, a private one, a cluster, ...).
type Harness struct {
	Name string
	Make func(t *testing.T) conformance.BackplaneHarness
}

// RunBackplane runs conformance.RunBackplane on every harness, one subtest
// per harness.
func RunBackplane(t *testing.T, hs []Harness) {
	t.Helper()
	for _, h := range hs {
		t.Run(h.Name, func(t *testing.T) { conformance.RunBackplane(t, h.Make(t)) })
	}
}

// RunCacheOn runs RunCache on every harness, one subtest per harness: the
// engine end to end over the transport with every shipped store.
func RunCacheOn(t *testing.T, hs []Harness) {
	t.Helper()
	for _, h := range hs {
		t.Run(h.Name, func(t *testing.T) { RunCache(t, h.Make) })
	}
}
