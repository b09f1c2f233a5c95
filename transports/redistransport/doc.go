// Package redistransport is a backplane transport over Redis pub/sub, built
// on github.com/redis/go-redis/v9.
//
// A Transport broadcasts the payloads of one namespace on one Redis channel,
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
// # Message Delivery Semantics
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
// transport lets the engine run up to Options.ConcurrentPublish of them at
// once (default 4), so that an invalidation does not wait for the round
// trip of the one before it; receivers then wait up to
// core.Options.ReorderWindow for a message that a later one overtook before
// they count it as lost. WithConcurrentPublish(1) publishes one call at a
// time, in order; give every instance of a namespace the same setting, as
// an instance with 1 does not wait for overtaken messages of its peers (it
// flushes instead).
//
// # URLs
//
// Open accepts the URLs of redis.ParseURL:
//
//	redis://[user:password@]host:port[/db][?dial_timeout=3s&...]
//	rediss://[user:password@]host:port[/db]     TLS
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
