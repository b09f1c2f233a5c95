package conformance

import (
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// BackplaneHarness tells the suite how to make instances of a transport and,
// where it can, how to inject faults. Only New is required.
type BackplaneHarness struct {
	// New returns a fresh, not yet subscribed Backplane on namespace ns.
	// The suite gives every test its own namespace, so tests may share one
	// broker and run in parallel. The suite closes what New returns.
	New func(t testing.TB, ns string) core.Backplane

	// Ordered declares that messages of one publisher arrive in publish
	// order at every subscriber.
	Ordered bool

	// Disconnect cuts bp's connection to the broker in a way the transport
	// must notice and recover from by itself (for example CLIENT KILL on
	// Redis). The broker keeps running. nil when the harness cannot.
	Disconnect func(t testing.TB, bp core.Backplane)

	// RestartBroker stops the broker abruptly and starts it again on the
	// same address, returning once it accepts connections. nil when the
	// harness cannot (for example a shared broker). Tests that use it do
	// not run in parallel with each other.
	RestartBroker func(t testing.TB)

	// Stall holds bp's link to the broker so that nothing bp publishes
	// is accepted: a Publish of bp waits until its context ends or until
	// the returned resume lifts the stall. The connection stays open (a
	// broker that stopped answering, not one that went away), and bp need
	// not notice. The suite calls resume once. nil when the harness
	// cannot.
	Stall func(t testing.TB, bp core.Backplane) (resume func())

	// Bound is how long delivery may take before the suite calls a message
	// lost. Zero means 5 seconds.
	Bound time.Duration
}

// CacheHarness is what RunCache needs: a transport harness and a store
// constructor.
type CacheHarness struct {
	Backplane BackplaneHarness
	// NewStore returns a fresh, empty LocalStore. The suite closes it
	// through the Cache.
	NewStore func(t testing.TB) core.LocalStore
	// Options are applied to every Cache after the suite's own (which set
	// a 100 ms heartbeat with a 500 ms timeout).
	Options []core.Option
	// StaleBound is how long after an Invalidate returns an instance may
	// still serve the old value: the propagation bound the consistency
	// check enforces, faults included. Zero means 2 seconds: the suite's
	// heartbeat timeout (500 ms) plus an interval, with room for a loaded
	// CI machine running -race.
	StaleBound time.Duration
}

func (h CacheHarness) staleBound() time.Duration {
	if h.StaleBound > 0 {
		return h.StaleBound
	}
	return 2 * time.Second
}

func (h BackplaneHarness) bound() time.Duration {
	if h.Bound > 0 {
		return h.Bound
	}
	return 5 * time.Second
}
