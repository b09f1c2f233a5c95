// Package redistransport is a backplane transport over Redis, built on
// github.com/redis/go-redis/v9, in one of two modes: pub/sub (the default)
// or a Redis stream (mode=stream, WithStream).
//
// A Transport broadcasts the payloads of one namespace on one Redis channel,
// or in the stream mode as the entries of one stream,
// "backplane:{namespace}" by default (Options.ChannelPrefix). Every
// subscribed instance receives every message, its own included.
//
//	client := redis.NewClient(opts)
//	defer client.Close()
//
//	bp, err := redistransport.New(client, "orders", redistransport.WithMaxPayload(64<<10))
//
// New takes a client the application already has (redis.Client,
// redis.ClusterClient, redis.Ring or a failover client) and never closes
// it. Open makes a client from a URL and closes it in Close. Neither does
// any I/O: Subscribe connects.
//
// Publish honours its context's deadline while it waits for Redis only if
// the client does: Open's clients have ContextTimeoutEnabled set; give New
// a client with it set too, or its Publish waits up to the client's
// ReadTimeout for a server that stopped answering. A Publish that ends at
// its context's deadline returns an error wrapping the context's error.
//
// Importing the package registers the redis:// and rediss:// schemes with
// transports.Open and fxmodule (their parameters are listed in the
// fxmodule documentation); a rediss:// TLS handshake honours the caller's
// deadline, and one a plain server never answers fails saying so.
//
// # Message Delivery Semantics: pub/sub
//
// Redis pub/sub is at-most-once. Redis keeps no message for a subscriber:
// whatever is published while a subscriber's connection is down, being
// re-established or too slow (Redis closes a subscriber whose output
// buffer exceeds client-output-buffer-limit pubsub, 32 MB by default) is
// lost for that subscriber, and nothing is redelivered.
//
// The transport therefore reports every interruption. The subscription has
// a connection of its own; when it breaks, go-redis dials again and renews
// the subscription silently, so the transport watches for it: a failed read,
// a second subscription confirmation, a subscription the server ended (a
// cluster slot that moved) or a health-check PING without a reply
// (Options.HealthCheckInterval and HealthCheckTimeout, which catch half-open
// connections) all make it report core.EventDisconnected with the cause,
// and core.EventReconnected once Redis confirmed the subscription again.
// core.EventConnected is reported once, after the first subscription. The
// transport never drops a message it has read: it reads with its own loop
// (not PubSub.Channel, which drops messages after a send timeout) and calls
// the handler directly, so a slow handler slows the reading rather than
// losing messages in the process; when it slows it too much, Redis
// disconnects the subscriber, which is reported as above.
//
// The engine (core.Cache) turns this into safe caching. With its default
// policies it clears the instance's local store on EventDisconnected and
// stops caching until the subscription is back, then clears it again on
// EventReconnected, because invalidations may have been missed meanwhile.
// Per-source sequence numbers in every message reveal gaps that no event
// reports, and heartbeats reveal a link that went silent; both make it
// flush too. Per-entry TTLs bound staleness in any case.
//
// Publish sends the payloads of one call in one pipeline (one round trip)
// and returns when Redis answered every PUBLISH; the payloads of one call
// arrive in order. An error means some payloads may have been published and
// others not. Concurrent calls run on different connections of the client's
// pool, in parallel, and Redis may receive them in either order. The
// engine runs one call at a time by default (Options.ConcurrentPublish 1),
// so an instance's messages arrive in order. With more
// (WithConcurrentPublish(n), concurrent_publish=n), an invalidation need
// not wait for the round trip of the one before it, and receivers wait up
// to core.Options.ReorderWindow for a message that a later one overtook
// before they count it as lost. Give every instance of a namespace the same
// setting: an instance with 1 does not wait for overtaken messages of its
// peers (it flushes instead). A fleet of an earlier release, whose default
// was 4, keeps concurrent_publish=4 until every instance runs this one.
//
// # Message Delivery Semantics: stream
//
// In the stream mode (core.Limits.Durable) each payload is one entry of the
// namespace's stream (XADD, the payload as the binary-safe value of the
// field "p"), and every instance reads the stream with XREAD BLOCK from the
// ID of the last entry it read, on a client of its own (one connection per
// node, without go-redis's retries and redirects, so that no reconnect goes
// unnoticed). Subscribe places the instance at the stream's end (the last
// generated ID, as `$` would, but known by value) and returns: every entry
// added later is delivered, once, in the stream's order, which is the
// order in which Redis received the XADDs. Publish returns once Redis
// replied to every XADD of the call (one pipeline for several payloads);
// the engine publishes one call at a time (Limits.ConcurrentPublish 1,
// Options.ConcurrentPublish is ignored), so an instance's entries are in
// the stream in the order it published them, and no receiver needs a
// reorder window. The engine's group commit puts many invalidations into
// one call, which keeps a single call in flight fast enough (see the
// benchmarks).
//
// When the reader's connection breaks, or go-redis replaced it while idle,
// the transport reports core.EventDisconnected and, once Redis answers
// again, core.EventReconnected with Resumed true only when it can prove
// that every entry after its position is still in the stream; it then goes
// on reading from there. Otherwise Resumed is false, Err wraps
// ErrStreamLoss and says why, and the reader goes on from the stream's end
// (the engine flushes the instance's store). The proof uses XINFO STREAM
// (Redis 7: entries-added, max-deleted-entry-id, the first entry) and INFO:
//
//   - trimmed past: the reader counts the entries it read from the
//     entries-added value of its starting point. Trimming removes the oldest
//     entries, so the first entry left is number entries-added - length + 1;
//     when that is beyond the next entry the reader expected, entries it had
//     not read were trimmed (MaxLen or Retention too small for the time it
//     was cut off).
//   - deleted: max-deleted-entry-id beyond the position (an XDEL).
//   - gone or recreated: the key is missing once it existed, or the stream's
//     last ID or entries-added counter is behind the position (a restart
//     without persistence, a DEL, a failover to a replica that lacks
//     entries the reader had read).
//   - a different server: the run_id or the replication ID (master_replid)
//     of the server holding the stream changed (a restart, a failover, a
//     replica promoted or following another primary). A resume is then
//     claimed only if that server is a primary that was never a replica
//     (no second replication ID) with appendonly yes and appendfsync
//     always, which keeps every entry it acknowledged; a promoted replica
//     may lack entries its primary acknowledged but never sent, which no
//     counter on the replica reveals, so a failover is always a loss. A
//     server that denies INFO or CONFIG GET cannot prove anything: every
//     reconnect is a loss.
//
// A connected reader that falls behind a trimming publisher skips what was
// trimmed without an error from Redis; it therefore checks its position
// every StreamOptions.CheckInterval (one XINFO STREAM and INFO server replication, 1 s
// by default) and reports core.EventLoss when entries were trimmed before
// it read them.
//
// A restart of a Redis without persistence loses the stream: detected,
// reported as a loss, and every instance flushes once (the fleet's stores go
// cold together, as with pub/sub). With `--appendonly yes --appendfsync
// always` the stream survives the restart and instances resume warm;
// appendfsync everysec may lose the last second of entries, which the
// transport cannot rule out, so there a restart is a loss too. Entries a
// Redis acknowledged and then lost before any reader read them (a failover,
// appendfsync everysec) leave no trace in the stream; the engine's
// per-source sequence numbers still reveal them as gaps.
//
// What it costs Redis: the stream holds at most about MaxLen entries
// (default 100000, XADD MAXLEN ~) and none older than Retention (default 10
// minutes, trimmed with XTRIM MINID ~ once a second by each publisher, by
// its own clock), whichever is fewer. An entry costs its payload plus about
// 30 bytes (MEMORY USAGE on Redis 7.0: 231 bytes an entry of 200, 80 of
// 50); an engine message carries a batch of keys in one payload. At 100
// messages/s of 200 bytes, 10 minutes are 60000 entries, about 14 MB; at
// 1000 messages/s MaxLen caps the stream at 100000 entries (about 23 MB),
// which is then the retention: 100 s. The retention is how long an instance may be cut off (or a reader stalled)
// and still resume; beyond it, it reports a loss. With appendonly the AOF
// grows with every XADD until Redis rewrites it, and appendfsync always
// costs an fsync per write batch. Each instance holds one extra connection
// (the reader), which polls with XREAD BLOCK HealthCheckInterval (3 s)
// when idle. The stream is an ordinary key: it stays in Redis after the
// last instance closed (trimming happens as entries are added), until it
// is deleted.
//
// # Moving between modes
//
// Instances on pub/sub and instances on the stream mode do not hear each
// other. A fleet moves from one mode to the other by two rolling deploys,
// the first with transports.Dual (fxmodule: transition_url), which
// publishes on both and reads both (see transports.Dual). Without it, a
// fleet split across the modes shows in Health (core.Splitter): every
// Transport sets a marker key for its mode, <channel>:mode:pubsub,
// :stream or :bridge (expiring after three HealthCheckIntervals) at each
// HealthCheckInterval, and reports Split when it finds the other mode's;
// a stream-mode Transport on a single server also finds pub/sub
// subscribers that set no marker (earlier releases; PUBSUB NUMSUB), unless
// a bridge is up. That costs one pipelined SET and two or three reads per
// instance and interval.
//
// On Redis Cluster the stream is one key whose hash tag is the namespace,
// so it lives on one shard, like the sharded pub/sub channel. A moved slot
// is an error the reader reports as a disconnect; it refreshes the layout
// and reconnects to the new owner, which, being another server, is a loss.
// The stream mode needs a *redis.Client or *redis.ClusterClient (New
// rejects a Ring) and Redis 7 or later. The reader's client is made from
// the given client's options: hooks added to the given client do not see
// the reader's commands.
//
// # URLs
//
// Open accepts the URLs of redis.ParseURL:
//
//	redis://[user:password@]host:port[/db][?dial_timeout=3s&...]
//	rediss://[user:password@]host:port[/db]     TLS
//
// The transport's own parameters choose the mode:
//
//	mode=pubsub                 the default
//	mode=stream                 the stream mode (Options.Stream.Enabled)
//	maxlen=100000               StreamOptions.MaxLen; -1: no bound by length
//	retention=10m               StreamOptions.Retention (a Go duration); -1s: no bound by age
//	replay=true                 StreamOptions.Replay: deliver the retained log first (tools)
//
// for example redis://host:6379/0?mode=stream&retention=10m&maxlen=100000.
// They override the Options given to Open; maxlen, retention and replay
// need mode=stream. The stream mode's key lives in the URL's database.
//
// The user and password are those of a Redis ACL user (or only a password
// for requirepass). The db number does not matter for pub/sub, which Redis
// scopes to the server, not to a database: use namespaces to separate
// applications. Options.TLSConfig (WithTLSConfig) supplies the TLS settings,
// for example a private CA; with rediss:// and no TLSConfig the system roots
// verify the server.
//
// A URL with addr parameters (or cluster=true) makes a cluster client, in
// the form of redis.ParseClusterURL:
//
//	redis://host1:7000?addr=host2:7000&addr=host3:7000
//
// # Redis Cluster
//
// With a *redis.ClusterClient the transport uses sharded pub/sub
// (SPUBLISH/SSUBSCRIBE, Redis 7 or later): a namespace's channel lives on
// the shard that owns its hash slot (the namespace is the channel's hash
// tag), and messages stay on that shard instead of being broadcast over the
// cluster bus to every node. All instances of a namespace talk to the same
// shard. When the slot moves, Redis ends the subscription; the transport
// reports a disconnect, refreshes the cluster layout and subscribes again.
// WithPubSubMode(PubSubClassic) falls back to PUBLISH/SUBSCRIBE, for
// example for Redis 6 clusters or proxies that do not support sharded
// pub/sub; WithPubSubMode(PubSubSharded) uses sharded pub/sub on a
// standalone server too.
package redistransport
