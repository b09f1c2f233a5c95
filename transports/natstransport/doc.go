// Package natstransport is a backplane transport over NATS
// (github.com/nats-io/nats.go): a core.Backplane that publishes and
// subscribes on one plain subject derived from the namespace,
// "backplane.<namespace>" by default. It has two modes: core NATS
// pub/sub, the default, and JetStream (Options.JetStream, or
// jetstream=true in the URL), where a stream of that subject keeps the
// messages so that a subscriber resumes where it stopped.
//
// Every Transport subscribes with its own plain subscription, never a queue
// group, so every instance receives every message, its own included.
//
// Use New with a *nats.Conn you already have (the Transport neither closes it
// nor replaces its callbacks), or Open with server URLs to let the Transport
// make and own the connection. Neither does I/O: Open's connection is dialled
// by Connect, or else by the first Subscribe or Publish, which fits
// frameworks whose constructors must not block (fx: construct, then Connect
// and Subscribe in OnStart). Until it has connected, a Transport made by Open
// reports DefaultMaxPayload (1 MiB, the NATS default) in Limits, since the
// server's value is unknown, and never reports more afterwards; see
// Transport.Limits for servers configured below that.
//
// Importing the package registers the nats:// and tls:// schemes with
// transports.Open and fxmodule (their parameters are listed in the
// fxmodule documentation). A connect honours the caller's deadline; one to
// a server that accepts the connection but does not speak NATS (a Redis
// port, say) fails saying so.
//
// # Message Delivery Semantics (core NATS)
//
// Core NATS is at-most-once. A message is delivered to the subscriptions the
// server knows at the moment it routes the message, and to nobody else: it is
// not stored. Messages published while a subscriber is disconnected are lost
// for that subscriber, and a subscriber that falls behind by more than its
// pending limits (Options.PendingMsgs, Options.PendingBytes) has messages
// dropped by nats.go (a "slow consumer").
//
// The Transport reports what it knows about such losses as events:
// core.EventDisconnected when the connection drops (with the cause when
// known), core.EventReconnected once the connection is back and the server has
// processed the re-sent subscription, and core.EventLoss when nats.go drops
// messages for a slow consumer. The engine (core.Cache) treats a reconnect and
// a loss as "messages may be missing" and, by default, flushes the local
// store; it also detects silent gaps with per-source sequence numbers and
// missed heartbeats. Per-entry TTLs bound staleness in the worst case.
//
// Subscribe returns once the server it is connected to has the interest (a
// round trip after the subscription), so a message published through the same
// server after Subscribe returns is delivered. In a cluster, interest travels
// to the other nodes over routes a moment later; a message published through
// another node in that moment may miss the new subscriber. The window is
// about one route hop (well under a millisecond on a LAN) and exists only
// right after Subscribe and after a failover to another node; the per-entry
// TTL covers it. Single-server deployments do not have it.
//
// Publish writes all its payloads without waiting, then makes one round trip
// (a flush), so it returns once the server has received every payload of the
// call. Publish does not buffer while disconnected: it fails with
// ErrNotConnected and sends nothing, so that the caller learns about the
// outage instead of having its messages queue up in nats.go's reconnect
// buffer. (If the connection drops during a call, payloads written just
// before may still be sent after the reconnect; duplicates of invalidations
// are harmless.) Messages of one publisher arrive in publish order.
//
// Transport is also a core.Sender: Send is Publish without the round trip,
// and its confirm makes the round trip. One connection keeps the order of
// what is written to it, so the engine sends an instance's next round while
// earlier ones still wait for their confirmation, up to
// Options.ConcurrentPublish rounds (1 by default: one round at a time);
// beyond that, calls queue and go out together. Receivers see an instance's messages in order
// whatever that bound is, so instances of one namespace need not agree on
// it.
//
// # Message Delivery Semantics (JetStream)
//
// In the JetStream mode every message of a namespace is stored, in one
// total order, in one stream (named after the subject, see
// Transport.Stream) with limits retention: it keeps a message for
// JetStreamOptions.MaxAge (10 minutes by default) and/or until MaxMsgs or
// MaxBytes push it out, oldest first. The first Transport that needs the
// stream creates it with its own settings (storage, replicas, retention);
// the others use it as they find it. Limits reports Durable, so the engine
// keeps its store through a disconnect instead of flushing, and serves it
// again once delivery has caught up (core.Limits.Durable).
//
// Publish returns once the stream has stored every payload of the call:
// the payloads go out as asynchronous JetStream publishes, in order, on
// the one connection, and Publish (or Send's confirm) waits for the
// stream's acknowledgement of each. A payload is one message; nothing is
// de-duplicated (no Nats-Msg-Id header), and no header is added, so
// Limits.MaxPayload is the server's max_payload as in core NATS. A publish
// that got no acknowledgement within Options.FlushTimeout fails, and may
// still have been stored (the engine's sequence numbers make a duplicate
// harmless).
//
// Each Transport reads with an ordered consumer of its own (ephemeral, in
// the server's memory, no acknowledgements) that Subscribe starts right
// after the last message the stream held, so that every message stored
// after Subscribe returns is delivered. The Transport hands a message to
// the handler only if its stream sequence is the one after the last it
// delivered: a lower one is a redelivery and skipped, so messages arrive
// once and in order; a higher one means the messages in between are gone
// from the stream, and EventLoss (Err wrapping ErrStreamLoss) precedes it.
//
// After a reconnect, the Transport reads the stream's state before it
// reports core.EventReconnected, and sets Resumed only when it can prove
// that delivery goes on exactly after the last message it delivered: the
// stream has the creation time it had (it was not deleted and created
// again), its last sequence is not below the position (not purged), its
// first sequence is at most the position plus one (retention removed
// nothing undelivered), and no jump of the sequence was seen meanwhile.
// Otherwise EventReconnected has Resumed false and Err wrapping
// ErrStreamLoss saying which; the consumer starts again at the stream's
// end (a stream that is gone is created again). The same check runs while
// connected when the consumer reports that it was deleted or could not
// recreate itself, and reports EventLoss. Losses therefore come from a
// subscriber away for longer than the retention, a stream deleted or
// purged, or a server that lost the stream: with StorageMemory (and one
// replica) a restart of the server loses the stream and every subscriber
// reports the loss on reconnect; with StorageFile the stream survives and
// subscribers resume. Retention bounds what a resume can cover, not how
// long the engine's entries may live: per-entry TTLs still bound
// staleness.
//
// What it costs the broker: every message is kept for the retention. A
// message costs its payload, the subject and about 50 bytes of the
// store's own (file or memory alike; a memory stream takes it from the
// server's RAM, a file stream from its disk plus a small index in RAM).
// The engine publishes a round of invalidations as one payload of tens to
// a few hundred bytes, and every instance publishes a heartbeat
// (core.Options.HeartbeatInterval, 1 s by default) into the same stream.
// At 1,000 messages per second of 200-byte payloads on a subject of 30
// bytes, 10 minutes of retention keep 600,000 messages of about 280
// bytes: about 170 MB, per replica; 20 instances add 12,000 heartbeats.
// Lower the rate by letting the engine group invalidations into rounds,
// and size MaxAge as the longest outage to ride out: MaxBytes caps the
// stream whatever the rate (beyond it, the oldest messages go, and a
// subscriber behind them reports a loss).
//
// A Transport stopped while away leaves its consumer on the server for
// 30 seconds of inactivity, then the server removes it.
//
// # Handler Calls
//
// The handler is called one call at a time: messages from nats.go's delivery
// goroutine of the subscription, events from the Transport's own goroutine,
// never from within Subscribe or Publish. EventConnected is the first call
// after Subscribe succeeded. Messages that arrive right after a reconnect may
// reach the handler shortly before EventReconnected (which waits for a round
// trip proving the subscription is active again); both orders are safe for
// the engine. A panicking handler is recovered and logged. Close waits for a
// handler call in progress; a handler never calls Publish or Close
// (core.Handler).
//
// Limits reports the server's max_payload (from the server's INFO), lowered
// to Options.MaxPayload if that is smaller (and to DefaultMaxPayload if
// Limits was read before the connection existed). Payloads are published
// without NATS headers, so the whole limit is available to the payload.
//
// # URLs
//
// Open takes one server URL or a comma-separated list of them; with several
// the client picks one, learns the rest of the cluster from the server, and
// fails over to another on a disconnect:
//
//	nats://127.0.0.1:4222
//	nats://user:password@nats.internal:4222
//	tls://nats.internal:4222
//	nats://n1:4222,nats://n2:4222,nats://n3:4222
//
// Query parameters select the JetStream mode (JetStreamURLOptions lists
// them and their defaults; any other parameter is an error):
//
//	nats://127.0.0.1:4222?jetstream=true
//	nats://127.0.0.1:4222?jetstream=true&retention=10m&storage=file&replicas=1
//	nats://127.0.0.1:4222?jetstream=true&storage=memory&max_msgs=100000
//
// The connection made by Open reconnects forever (nats.MaxReconnects(-1)),
// waiting Options.ReconnectWait between attempts to the same server, and
// pings the server every Options.PingInterval to notice dead connections.
//
// # Authentication and TLS
//
// User and password come from the URL or WithUserInfo; a token from
// WithToken; a decentralised-auth credentials file (user JWT and NKey seed)
// from WithCredentialsFile; a bare NKey seed file from WithNKeySeedFile. TLS
// is used for tls:// URLs, when the server requires it, or with
// WithTLSConfig or WithRootCAFiles. Anything else nats.go offers can be passed
// with WithNATSOptions. Wrong credentials fail the first Subscribe or Publish
// promptly with an error wrapping nats.ErrAuthorization.
package natstransport
