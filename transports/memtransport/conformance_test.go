package memtransport_test

import (
	"errors"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestConformance(t *testing.T) {
	hub := memtransport.NewHub()
	t.Cleanup(func() { _ = hub.Close() })
	conformance.RunBackplane(t, conformance.BackplaneHarness{
		New: func(t testing.TB, ns string) core.Backplane {
			return hub.New(ns)
		},
		Ordered: true,
		// A cut that the transport "recovers from by itself": the
		// reconnect follows at once.
		Disconnect: func(t testing.TB, bp core.Backplane) {
			tr := bp.(*memtransport.Transport)
			tr.Disconnect(errors.New("conformance: connection cut"))
			tr.Reconnect()
		},
		Stall: func(t testing.TB, bp core.Backplane) func() {
			tr := bp.(*memtransport.Transport)
			tr.Stall()
			return tr.Resume
		},
		RestartBroker: func(testing.TB) { hub.Restart() },
		Bound:         5 * time.Second,
	})
}
