// Package chaos holds the chaos suite of backplane: the engine (core.Cache)
// over Redis and NATS, with every instance connected to the broker through
// its own fault proxy (internal/faultproxy), under a steady load of writes
// and reads while faults are injected. The package has no code of its own;
// everything is in its tests.
//
// Each scenario starts a private broker (a redis-server process, an
// embedded nats-server), several instances, writers that update a shared
// source of truth and then call Invalidate, and readers that call
// GetOrLoad on every instance. A consistency checker compares every read
// with the writes whose Invalidate had returned before the read started,
// and fails the scenario if a read returned a value older than the
// staleness bound allows:
//
//	bound = HeartbeatTimeout + HeartbeatInterval + injected latency + slack
//
// (see RELIABILITY.md at the repository root for the derivation). Every
// scenario reports the largest staleness it observed, the engine's flushes
// by cause, transport events, and the invalidation messages that an
// instance never received against those the engine detected as possibly
// lost.
//
// # Running
//
// The reduced form runs with the ordinary tests, a few seconds per
// scenario with generous bounds:
//
//	go test -race ./chaos/
//
// The full form runs longer scenarios with tighter heartbeats:
//
//	go test -tags chaos -run Chaos -v -timeout 40m ./chaos/
//	BACKPLANE_CHAOS_FULL=1 go test -run Chaos -v -timeout 40m ./chaos/
//
// Both forms fail on any read past the bound and on any blackhole the
// engine does not detect by itself. RELIABILITY.md has the figures of the
// full run.
//
// Both need redis-server on PATH (otherwise the Redis scenarios are
// skipped, or fail with BACKPLANE_REQUIRE_SERVICES=1); NATS is embedded.
package chaos
