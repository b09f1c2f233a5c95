// Package fxmodule wires a backplane cache into a go.uber.org/fx
// application, with the transport and the store chosen by configuration
// rather than in code.
//
// From examples/fxservice, a service over NATS (it imports
// transports/natstransport for nats:// URLs):
//
//	func main() {
//		fx.New(
//			fx.Provide(NewDB),
//			Service,
//			fx.Invoke(serve),
//		).Run()
//	}
//
//	// Service is the service without its HTTP listener: configuration, the
//	// backplane Module, the database dependency and the handler.
//	var Service = fx.Options(
//		fx.Provide(loadConfig),
//		fxmodule.Module,
//		fx.Provide(NewHandler),
//	)
//
// Module provides *core.Cache, core.Backplane, core.LocalStore and
// HealthCheck from the Config in the graph: ConfigFromEnv("BACKPLANE_"),
// ConfigFromYAML(path), fx.Supply(cfg), or a constructor of the
// application's own (loadConfig above, with LoadEnvOver).
//
// The transport is chosen by the configured URL, among the transports the
// application imports: each transport package registers its schemes when
// imported, so an application links only the SDKs of those it imports.
// fxmodule itself registers mem:// only (in-process, no SDK).
//
//	scheme                import
//	mem://                (fxmodule)
//	redis://, rediss://   _ "github.com/backplane-go/backplane/transports/redistransport"
//	nats://, tls://       _ "github.com/backplane-go/backplane/transports/natstransport"
//	sb://, servicebus://  _ "github.com/backplane-go/backplane/transports/servicebustransport"
//	postgres://, postgresql://  _ "github.com/backplane-go/backplane/transports/pgtransport"
//	amqp://, amqps://     _ "github.com/backplane-go/backplane/transports/rabbitmqtransport"
//
// A scheme whose package is not imported fails the start with an error
// that names the import.
//
// Module builds the cache from the Config in the graph. Its constructor
// does no I/O; OnStart dials, subscribes and returns once delivery is
// active, bounded by the start context and Config.StartTimeout, so an
// unreachable broker fails the application's start with the cause instead
// of hanging; OnStop drains pending invalidations (bounded by the stop
// context) and closes the cache, its transport and its store. When the
// graph holds a redis.UniversalClient, a *nats.Conn, a *pgxpool.Pool or
// an *amqp091.Connection shared with UseClient, the matching transport
// uses it instead of dialling, and leaves it open. A
// *core.Keyring in the graph (built from the application's secrets) signs
// every message and makes the cache drop unsigned and forged ones;
// Config.ReplayWindow and Config.AcceptUnsigned tune it. The HealthCheck it
// provides reports whether invalidations are flowing, for a readiness
// probe; with Config.CanaryInterval it also reports an instance whose
// invalidations stopped getting through although its connection looks
// fine.
//
// Nothing picks a transport the configuration does not name: without
// transport_url (BACKPLANE_TRANSPORT_URL), the start fails with an error
// that names the setting and where it was read from.
//
// Everything works without fx too: OpenBackplane, OpenStore,
// Config.CoreOptions and core.New.
//
// # Configuration
//
// Config has one field per setting, with yaml and json tags. LoadEnv reads
// the environment: the variable of a field is the prefix (BACKPLANE_ by
// default) and the field's YAML path in upper case, dots as underscores.
// LoadYAML reads a document with the same keys. An unknown key or
// variable, or a value that does not parse or is out of range, is an error
// that names the field as it was written (BACKPLANE_TTL, or "ttl in
// backplane.yaml"); every such error is reported at once. Both start from
// DefaultConfig.
//
//	YAML key                             default   meaning
//	namespace                            (none)    required; instances share invalidations within it
//	transport_url                        (none)    required; the transport, by URL (see URLs)
//	transition_url                       (none)    a second transport published on and read too, while a fleet moves (see Moving)
//	store.name                           bigcache  a registered store: bigcache, otter, or your own
//	store.bigcache.shards                256       a power of two
//	store.bigcache.max_size_mb           256       memory bound in MiB (0: none)
//	store.bigcache.life_window           10m       bigcache's own eviction; keep it >= ttl
//	store.bigcache.clean_window          1m        cleanup period (0: no cleanup goroutine)
//	store.bigcache.max_entries_in_window 10000     initial sizing
//	store.bigcache.max_entry_size        512       initial sizing, bytes
//	store.otter.max_size_mb              256       memory bound in MiB: keys, values, overhead (0: by entries)
//	store.otter.max_entries              0         entry bound, with max_size_mb 0 (both 0: none)
//	store.otter.max_value_len            1048576   largest value in bytes (0: what fits max_size_mb)
//	store.otter.initial_capacity         0         initial sizing, entries (0: otter's)
//	store.otter.expire                   true      the store expires entries by ttl too
//	store.otter.clock_resolution         1s        the store's expiry clock (0: precise, slower reads)
//	store.params.<key>                   (none)    settings of another registered store
//	ttl                                  10m       entry lifetime (0: none)
//	ttl_jitter                           0.1       spread of expiries, in [0, 1)
//	on_disconnect                        flush     flush or keep while the link is down
//	on_reconnect                         flush     flush or keep when it is back
//	on_gap                               flush     flush or keep when messages were lost
//	heartbeat_interval                   1s        0 disables heartbeats and silence detection
//	heartbeat_timeout                    0         silence that counts as down (0: 3 x interval)
//	max_keys_per_call                    10000     keys of one Invalidate
//	max_batch_keys                       16384     keys of one publish round
//	max_payload                          0         message size cap (0: the transport's limit; above it: an error)
//	queue_size                           1024      Invalidate and Clear calls waiting to publish
//	publish_timeout                      5s        one publish round trip
//	ack_timeout                          0         an acknowledged call's wait (0: heartbeat_timeout)
//	reorder_window                       250ms     wait for an overtaken message (Redis)
//	max_peers                            1024      peers tracked (above the instances of a namespace)
//	max_missing                          4096      sequence numbers waited for, over all peers
//	max_tags_per_entry                   8         tags one cached entry carries (1 to 255)
//	canary_interval                      0         canary probe period (0: off)
//	canary_timeout                       0         overdue canary (0: the engine's default)
//	replay_window                        2m        signed messages' clock window (with a Keyring)
//	accept_unsigned                      false     accept unsigned messages (with a Keyring)
//	start_timeout                        10s       dial and subscribe at start
//	close_timeout                        5s        drain at close when no context bounds it
//
// The environment variable of store.bigcache.shards is
// BACKPLANE_STORE_BIGCACHE_SHARDS, that of store.otter.max_size_mb
// BACKPLANE_STORE_OTTER_MAX_SIZE_MB, that of ttl BACKPLANE_TTL, and so on.
// Another variable with the prefix is an error that names the closest
// valid one (BACKPLANE_TRANSPORTURL: did you mean BACKPLANE_TRANSPORT_URL?),
// except those of this module's tests and tools (see Config.ApplyEnv).
// Durations are written like 500ms, 5s or 10m. The engine settings are
// those of core.Options (Config.CoreOptions converts them).
//
// # Stores
//
// store.name picks the local store; only the section of the chosen store is
// read (the other's settings are ignored, and store.params is for stores
// registered with RegisterStore).
//
//   - bigcache (stores/bigcachestore, the default): entries in a few large
//     byte arrays the garbage collector does not scan, evicted oldest first
//     per shard; one life window for all entries. Suits millions of small
//     entries where garbage-collection time matters most.
//   - otter (stores/otterstore): W-TinyLFU eviction, which keeps the
//     entries that are read often, and per-entry expiry by the engine's TTL.
//     A better hit ratio when the working set does not fit, and values of
//     any size up to store.otter.max_value_len.
//
// For example, in YAML:
//
//	store:
//	  name: otter
//	  otter:
//	    max_size_mb: 512
//
// or in the environment BACKPLANE_STORE_NAME=otter and
// BACKPLANE_STORE_OTTER_MAX_SIZE_MB=512.
//
// # URLs
//
// OpenBackplane (transports.Open) picks the transport by the URL's scheme,
// the way gocloud.dev opens URLs, among the registered schemes: mem:// and
// those of the imported transport packages. Every scheme accepts
// namespace=, which overrides
// Config.Namespace. An unknown scheme, or a query parameter the scheme does
// not know, is an error that lists the valid ones. Error messages never
// contain a URL's password.
//
//	mem://[name]       the process-wide in-memory hub name ("default"), see MemHub
//	    max_payload=N  queue_size=N   (applied when the hub is first used)
//
//	redis://[user:password@]host:port[/db]    Redis pub/sub (transports/redistransport)
//	rediss://...                              the same over TLS
//	    sharded=true|false      sharded (SPUBLISH/SSUBSCRIBE) or classic pub/sub;
//	                            default: sharded on a cluster, classic otherwise
//	    addr=host:port          another cluster node (repeatable): a cluster client
//	    cluster=true            a cluster client from the URL's host alone
//	    max_payload=N           largest message (default 1 MiB)
//	    channel_prefix=S        channel is S{namespace} (default "backplane:")
//	    client_name=S           CLIENT SETNAME (default "backplane")
//	    health_check_interval=D, health_check_timeout=D   subscriber PING (3s, 5s)
//	    concurrent_publish=N    publish calls in flight at once (default 1: in order)
//	    mode=pubsub|stream      stream: Redis Streams, a log every instance reads
//	                            from its last entry (core.Limits.Durable)
//	    maxlen=N, retention=D   the stream's trim by count (100000) and age (10m)
//	    replay=true             the stream: read the retained log first (tools)
//	    tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=S   rediss:// only
//	    and go-redis's own: db, protocol, dial_timeout, read_timeout, write_timeout,
//	    pool_size, pool_timeout, pool_fifo, min_idle_conns, max_idle_conns,
//	    max_active_conns, conn_max_idle_time, conn_max_lifetime, max_retries,
//	    min_retry_backoff, max_retry_backoff, skip_verify, and for clusters
//	    max_redirects, read_only, route_by_latency, route_randomly
//
//	nats://[user:password@|token@]host:port   NATS core pub/sub (transports/natstransport)
//	tls://...                                 the same, TLS required
//	    addr=host:port          another server (repeatable; may be a full URL)
//	    name=S                  connection name (default "backplane:<namespace>")
//	    subject_prefix=S        subject is S.<namespace> (default "backplane")
//	    max_payload=N           cap below the server's max_payload
//	    connect_timeout=D, reconnect_wait=D, ping_interval=D, flush_timeout=D
//	    pending_msgs=N, pending_bytes=N   slow-consumer limits
//	    concurrent_publish=N    rounds awaiting the server's confirmation at once
//	                            (default 1)
//	    jetstream=true          JetStream: a stream per namespace, each instance an
//	                            ordered consumer that resumes (core.Limits.Durable)
//	    storage=file|memory, replicas=N, retention=D, max_msgs=N, max_bytes=N
//	                            the stream (file, 1, 10m without other limits)
//	    token=S, credentials=FILE, nkey=FILE
//	    tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=S
//
//	sb://host[:port]?key_name=K&key=S   Azure Service Bus topic (transports/servicebustransport)
//	servicebus://...                    the same
//	    key_name=K, key=S       a shared access policy of the namespace (required;
//	                            URL-encode the key; it never appears in errors)
//	    topic=S                 default "backplane.<namespace>"
//	    subscription=S          a pre-provisioned subscription for this instance
//	    provision=admin|none    without subscription: admin (default) creates one per
//	                            instance with the admin client, deleted on Close
//	    peek_lock=true          PeekLock + Complete instead of ReceiveAndDelete
//	    max_message_size=N, receive_batch=N
//	    emulator=true           plain AMQP without TLS (the Service Bus emulator)
//
//	postgres://[user:password@]host[:port]/dbname   PostgreSQL LISTEN/NOTIFY (transports/pgtransport)
//	postgresql://...                                the same
//	    channel_prefix=S        channel is S<namespace> (default "backplane:"; a
//	                            channel over 63 bytes ends in a hash of the namespace)
//	    max_payload=N           largest message (default and maximum 5997: base64
//	                            of it stays below NOTIFY's 8000 bytes)
//	    ping_interval=D, ping_timeout=D   listener ping after silence (3s, 5s)
//	    reconnect_backoff=D, max_reconnect_backoff=D   listener redial (50ms, 2s)
//	    concurrent_publish=N    publish calls in flight at once (default 1: in order)
//	    pending_msgs=N          notifications waiting for the handler before they
//	                            are dropped with core.EventLoss (default 16384)
//	    and pgx's own: sslmode, sslrootcert, sslcert, sslkey, sslpassword, sslsni,
//	    sslcertmode, sslnegotiation, connect_timeout, application_name, options,
//	    target_session_attrs, host, port, dbname, user, password, passfile, service,
//	    servicefile, channel_binding, require_auth, krbsrvname, krbspn,
//	    min_protocol_version, max_protocol_version, statement_cache_capacity,
//	    description_cache_capacity, default_query_exec_mode, pool_max_conns,
//	    pool_min_conns, pool_min_idle_conns, pool_max_conn_lifetime,
//	    pool_max_conn_idle_time, pool_max_conn_lifetime_jitter,
//	    pool_health_check_period, pool_ping_timeout
//	amqp://[user:password@]host:port[/vhost]  RabbitMQ (transports/rabbitmqtransport)
//	amqps://...                               the same over TLS
//	                            a fanout exchange per namespace, an exclusive queue
//	                            per instance, publisher confirms
//	    exchange_prefix=S       exchange is S<namespace> (default "backplane.")
//	    queue_name=S            the instance's queue (default: named by the broker)
//	    max_payload=N           largest message (default 1 MiB)
//	    queue_max_length=N|none, queue_max_bytes=N|none   the queue's limits, past
//	                            which the broker drops the oldest, reported as a
//	                            loss (100000, 64 MiB)
//	    prefetch=N              unacknowledged messages in flight (default 256)
//	    concurrent_publish=N    rounds awaiting confirmation at once (default 1)
//	    heartbeat=D             AMQP heartbeat (default 5s; 0: the broker's)
//	    connect_timeout=D, reconnect_backoff=D, max_reconnect_backoff=D   (10s, 50ms, 2s)
//	    connection_name=S       connection_name client property
//	    tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=S   amqps:// only
//
// A transport that uses a client from the graph (UseClient, or WithClient)
// ignores the URL's address, credentials and connection
// parameters; the transport parameters (namespace, sharded, max_payload,
// channel_prefix, subject_prefix, ...) still apply.
//
// # Moving between transports
//
// A fleet moves from one transport or mode to another (Redis pub/sub to
// Redis Streams, Redis to NATS, and back) by two rolling deploys, without
// an instance missing the invalidations of an instance on the other side:
//
//  1. every instance with transport_url set to the new URL and
//     transition_url to the old one: it publishes on both and reads both
//     (transports.Dual);
//  2. every instance with transport_url alone.
//
// Core NATS and JetStream need no transition: both use the subject
// <subject_prefix>.<namespace>, the stream captures what core NATS
// instances publish and core NATS instances receive what JetStream
// instances publish, so a fleet may run both while it moves. Redis pub/sub
// and Redis Streams do not see each other's messages: a move between them
// needs the transition.
//
// # Extending
//
// transports.Register (or RegisterTransport) adds a scheme and
// RegisterStore a store, typically from an init function of the package
// that implements them. An opener does no I/O and rejects parameters it
// does not know with CheckParams.
package fxmodule
