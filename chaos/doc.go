// Package chaos holds the chaos suite of backplane: the engine (core.Cache)
// over every broker of a table (brokers_test.go: Redis pub/sub, Redis
// Streams with appendfsync always and without persistence, core NATS,
// JetStream with file storage, PostgreSQL LISTEN/NOTIFY, RabbitMQ), with
// every instance connected to the
// broker through its own fault proxy (internal/faultproxy), under a steady
// load of writes and reads while faults are injected. The package has no
// code of its own; everything is in its tests.
//
// Each scenario starts several instances over a private broker (a
// redis-server process, an embedded nats-server, a postgres server, a
// rabbitmq-server node), writers that update a
// shared source of truth and then call Invalidate, and readers that call
// GetOrLoad on every instance. A consistency checker compares every read
// with the writes whose Invalidate had returned before the read started,
// and fails the scenario if a read returned a value older than the
// staleness bound allows:
//
//	bound = HeartbeatTimeout + HeartbeatInterval + injected latency + slack
//
// (see RELIABILITY.md at the repository root for the derivation). Every
// scenario reports the largest staleness it observed, the engine's flushes
// by cause and its suspensions (over a durable mode), the keys evicted
// while suspended, the loads on the origin during the fault and after it
// against the baseline scenario, the time until the hit ratio is back to
// 90% of the baseline's, transport events, and the invalidation messages
// that an instance never received against those the engine detected as
// possibly lost. RELIABILITY.md defines each figure.
//
// Over the durable modes whose broker keeps its log the reset, partition,
// blackhole, slow-subscriber and broker-kill scenarios must not flush; over
// Redis Streams without persistence the broker-kill must flush (the
// restart lost the log).
//
// # Running
//
// The reduced form runs with the ordinary tests, a few seconds per
// scenario with generous bounds (over the durable modes only the baseline
// and the scenarios that must not flush):
//
//	go test -race ./chaos/
//
// The full form runs every scenario over every broker, longer and with
// tighter heartbeats, and measures the broker cost of the durable modes
// (TestChaosBrokerCost):
//
//	BACKPLANE_CHAOS_FULL=1 BACKPLANE_CHAOS_REPORT=matrix.md go test -race -run 'Chaos|Shutdown' -v -timeout 60m ./chaos/
//	go test -tags chaos -run Chaos -v -timeout 60m ./chaos/
//
// Both forms fail on any read past the bound, on any blackhole the engine
// does not detect by itself, and on a flush where a durable mode must not
// flush.
// RELIABILITY.md has the figures of the full run.
//
// Both need redis-server, PostgreSQL's initdb and postgres, and
// rabbitmq-server on the machine (otherwise those brokers' scenarios are
// skipped, or fail with BACKPLANE_REQUIRE_SERVICES=1); NATS is embedded.
package chaos
