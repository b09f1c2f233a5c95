// Package core is the backplane engine: a per-instance in-memory cache kept
// coherent across the instances of a scaled-out service.
//
// Every instance reads from its own LocalStore at memory speed. When data
// changes, the instance that changed it calls Invalidate: the keys are
// evicted locally, then broadcast over a Backplane (Redis, NATS, Service
// Bus, or the in-process memtransport) and every other instance evicts them
// when the message arrives.
//
//	store, _ := bigcachestore.New(bigcachestore.DefaultConfig())
//	bp, _ := redistransport.Open("redis://localhost:6379/0", "catalog")
//	cache, err := core.Open(ctx, store, bp)
//	...
//	p, err := core.NewTyped[Product](cache).GetOrLoad(ctx, "product:42", loadProduct)
//	...
//	db.UpdateProduct(...)
//	err = cache.Invalidate(ctx, "product:42") // returns once the broker has it
//
// # Guarantees
//
//   - Invalidate returns nil only once the invalidation is on the broker;
//     concurrent calls are coalesced and de-duplicated into few messages.
//
//   - A load that overlaps an eviction of its key (local or remote
//     Invalidate, Clear, or a safety flush) is returned to its callers but
//     never cached, so an in-flight load cannot resurrect stale data.
//
//   - Each instance numbers its messages. A receiver that sees a gap in a
//     peer's numbers, or a heartbeat announcing messages it never got,
//     flushes its local store (Options.OnGap). A transport's reconnect
//     flushes too (Options.OnReconnect), because pub/sub transports lose
//     what was published while a subscriber was away.
//
//   - Every instance hears its own heartbeats come back. When the newest one
//     that came back is older than Options.HeartbeatTimeout (by the
//     instance's own clock: nothing arrives, or everything arrives late
//     behind a backlog), or the transport reports a disconnect, the
//     instance flushes and stops caching (Options.OnDisconnect) until the
//     link is back: reads keep being served, through the loader.
//
//   - A closing instance says goodbye (OpLeave). A peer that goes quiet for
//     HeartbeatTimeout without one (it crashed, or a broken route keeps its
//     messages away) may have published invalidations that never arrived:
//     the instance flushes (cause "peer-lost", Options.OnGap). Every
//     instance of a namespace should therefore run with heartbeats on.
//
//   - Every entry expires after Options.TTL (with jitter), enforced by the
//     engine whatever the store does: the last safety net.
//
//   - Over a Durable transport (a log: Redis Streams, JetStream; see
//     Limits.Durable), a disconnect, a silence or a lost peer costs no
//     flush: the store is kept but nothing is served from it until
//     delivery has caught up (an own message sent since came back through
//     the log, so everything published before it has been applied).
//     Only a reconnect that could not resume (Event.Resumed false) or a
//     gap the log should have prevented flushes.
//
// The staleness bound after Invalidate returns is therefore the transport's
// propagation time while the link is up, and at most HeartbeatTimeout plus
// one heartbeat interval when a link silently breaks. A single message lost
// while the link stays up is noticed when the peer's next message or
// heartbeat arrives, plus Options.ReorderWindow over a transport whose
// messages may overtake one another.
//
// # Publishing
//
// An idle instance's caller publishes its own invalidation, without handing
// it to another goroutine. Calls that arrive while a round is being
// published queue and go out together in the next round, de-duplicated and
// split by the transport's payload limit. A transport that keeps the order
// of what it sends (a Sender, such as natstransport) lets the next round go
// out while earlier ones wait for the broker's confirmation. A transport
// that publishes on several connections at once (Limits.ConcurrentPublish,
// such as redistransport) lets rounds overlap likewise; an instance's
// messages may then overtake one another, and receivers wait up to
// Options.ReorderWindow for an overtaken message before they count it as
// lost (its keys are evicted whenever it arrives). Once the rounds in
// flight reach their bound (Limits.ConcurrentPublish; one round at a time
// unless the transport declares more), calls queue and go out together, so
// that under load rounds grow rather than multiply.
//
// # Canary and signing
//
// With Options.CanaryInterval, every instance periodically invalidates
// CanaryKey through the normal path; Health.SyncBroken reports an instance
// whose own canary, or a live peer's, is overdue: invalidations are not
// getting through although the connection looks fine.
//
// With a Keyring (WithKeyring), every message carries an HMAC-SHA256 under a
// shared key with a key ID; unsigned and forged messages are dropped and
// counted (Stats.Rejected). Two keys are accepted during a rotation. A copy
// of a message already applied, and any message of a peer that left, is
// dropped and counted (Stats.Replayed). Health.Rejecting reports an
// instance that drops what it hears: a peer with another key or format
// version, which neither instance would otherwise notice.
//
// # Hostile peers
//
// Whatever arrives, the receive side's memory stays within Options.MaxPeers
// and MaxMissing. A message under an instance's own ID counts as its own
// echo only if the instance sent it. A forged sequence number far ahead of
// a peer's costs a flush, and the peer's real messages restart its
// numbering. Every wipe of the store is counted with its cause, a peer's
// Clear included, and costs the instance little: entries carry the epoch
// of their fill, and a wipe moves the epoch.
//
// # Limits
//
// Keys are 1 to MaxKeyLen (1024) bytes. One Invalidate call takes at most
// Options.MaxKeysPerCall keys. Messages carry at most MaxKeysPerMessage keys
// and never exceed the transport's payload limit.
//
// # Wire format
//
// Messages are a small versioned binary envelope (see Envelope and
// DecodeEnvelope). A payload that does not decode is counted and dropped.
//
// # Observability
//
// Logging goes to log/slog (Options.Logger). Metrics go through the
// OpenTelemetry metric API when Options.MeterProvider is set: cache hits and
// misses, messages published and received by op, own messages ignored,
// decode errors, flushes by cause, publish errors, publish duration and
// propagation lag. Stats and Health give the same figures without
// OpenTelemetry.
//
// # Inside the engine
//
// Each file of this package holds one part of the engine and opens with a
// line that says which: the read path (reads.go, loads.go), the publisher
// (publisher.go, rounds.go), the receiver (receiver.go, peers.go), liveness
// (liveness.go), lifecycle (lifecycle.go), the coarse clock (clock.go) and
// health (health.go). ARCHITECTURE.md at the repository's root describes
// the parts, what flows between them and which goroutines exist.
package core
