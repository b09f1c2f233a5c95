// Package pgtransport is a backplane transport over PostgreSQL
// LISTEN/NOTIFY, built on github.com/jackc/pgx/v5: an application that
// already has PostgreSQL needs no broker of its own.
//
// A Transport broadcasts the payloads of one namespace on one channel,
// "backplane:" + namespace by default (Options.ChannelPrefix; see
// ChannelName for namespaces past PostgreSQL's 63-byte identifier limit).
// The channel is always quoted, so it keeps its case. Every subscribed
// instance receives every message, its own included.
//
//	pool, err := pgxpool.New(ctx, "postgres://app:secret@db.internal:5432/app")
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer pool.Close()
//
//	bp, err := pgtransport.New(pool, "orders")
//
// New takes the *pgxpool.Pool the application already has and never
// closes it: Publish borrows one of its connections per call, and the
// listener dials a connection of its own with the pool's connection
// configuration (its BeforeConnect and AfterConnect hooks included),
// because a LISTEN belongs to a session that a pooled connection does not
// keep. Open makes a pool from a URL and closes it in Close. Neither does
// any I/O: Subscribe dials the listener, Publish the pool's connections,
// and Connect checks the server eagerly.
//
// Importing the package registers the postgres:// and postgresql://
// schemes with transports.Open and fxmodule (their parameters are listed
// in the fxmodule documentation); an unknown parameter is rejected rather
// than sent to the server as a setting. A *pgxpool.Pool offered with
// transports.WithClient (fxmodule.UseClient) is used instead of dialling.
//
// All instances of a namespace must use the same database: channels are
// per database. They must reach the primary: a standby accepts neither
// LISTEN nor NOTIFY. The listener's connection must hold a session: go
// directly to the server, or through a pooler in session mode (PgBouncer's
// transaction mode cannot keep a LISTEN; publishing through it works).
//
// Any role that can connect to the database may NOTIFY on any channel and
// LISTEN to any: PostgreSQL has no permissions on channels. Sign the
// messages (core.WithKeyring) where other roles share the database.
//
// # Message Delivery Semantics
//
// LISTEN/NOTIFY is at-most-once pub/sub. PostgreSQL keeps a notification
// only for the sessions listening when its transaction commits: whatever is
// committed while an instance's listener connection is down, or being
// dialled and LISTENing again, is lost for that instance, and nothing is
// redelivered. The transport is not Durable.
//
// The transport therefore reports every interruption. The listener
// connection's failure (the server terminated the backend, restarted, or
// the network dropped it), or a ping without a reply, makes it report
// core.EventDisconnected with the cause, close the connection, dial again
// with backoff (Options.ReconnectBackoff up to MaxReconnectBackoff) and
// LISTEN, then report core.EventReconnected, never Resumed: the engine
// counts everything published meanwhile as lost and flushes the instance's
// store (core.Options.OnDisconnect). core.EventConnected is reported once,
// after the first LISTEN. A connection that stays open while the server
// stops answering (a half-open TCP connection, a frozen server) is found
// by a ping after Options.PingInterval of silence that must be answered
// within Options.PingTimeout (3 s and 5 s by default; the cause is
// ErrPing), and by TCP keepalive probes. Publish fails while the server
// cannot be reached; the pool dials again on the next call.
//
// Order: PostgreSQL delivers notifications to a listener in the order
// their transactions committed, and those of one transaction in the order
// they were sent. Publish runs each payload as a transaction of its own
// (pg_notify then an implicit commit), in order, on one connection of the
// pool, and returns once the server committed them all; the engine runs one
// Publish call at a time by default (Options.ConcurrentPublish 1), so an
// instance's messages arrive in the order it published them. With more
// (concurrent_publish=N), calls commit on different connections in either
// order and receivers wait up to core.Options.ReorderWindow for a message
// that a later one overtook; give every instance of a namespace the same
// setting.
//
// Transactions: NOTIFY is transactional. A notification is delivered when
// the transaction that sent it commits, and never if it rolls back; a
// NOTIFY of a transaction that is still open is not yet visible to anyone.
// Within one transaction PostgreSQL folds identical notifications (same
// channel, same payload) into one, and the engine may publish identical
// payloads: that is why Publish never puts two payloads in one
// transaction. It pipelines them instead (one round trip, a Sync after
// each NOTIFY ends its implicit transaction). Publish never runs in a
// transaction of the caller.
//
// Size: a NOTIFY payload is text that must stay below 8000 bytes (in the
// default build of the server). The transport sends each payload as its
// base64 text, so the largest payload is 5997 bytes (MaxPayload, the
// default and the highest Options.MaxPayload); the engine splits
// invalidations so that no message exceeds it.
//
// The queue: the server keeps every committed notification in one queue
// for the whole cluster (8 GB in PostgreSQL 16 and earlier; 17 sizes it
// with max_notify_queue_pages) until every listening session of every
// database has read past it. One listener that stops reading therefore
// holds the queue back for every application on the server: past half full
// the server logs a warning naming the PID of the session that lags, and
// once it is full every NOTIFY fails at commit ("too many notifications in
// the NOTIFY queue"), for every channel, until that session reads again or
// ends. A session that LISTENs and then sits in a long transaction does the
// same. The transport keeps its listener reading: notifications go from the
// connection into a bounded queue in the process (Options.PendingMessages,
// 16384 by default), and the handler is called from another goroutine;
// when the handler falls that far behind, the transport drops
// notifications rather than stop reading, and reports core.EventLoss
// (cause ErrPendingLimit; the engine flushes). A listener connection
// that stops answering is closed after the ping timeout, which ends its
// session on the server once the server notices. A full queue makes
// Publish fail with the server's error.
//
// Cost on the server: each Publish payload is a transaction (an XID and a
// commit), and the transactions that NOTIFY commit one at a time on the
// whole server (PostgreSQL holds a lock from their queue insertion through
// their commit, to keep the queue in commit order). PostgreSQL wakes every
// session of the database that LISTENs, whatever its channel, for every
// committed NOTIFY: n instances on one database, of all namespaces
// together, cost the server n wakeups per message, heartbeats included. The engine's group commit keeps the
// messages few (see BENCHMARKS.md). Where many other sessions of the
// application's database LISTEN, give the backplane a database of its own
// (a pool, or a URL, of that database).
//
// A failover to a replica loses the notifications that were in the queue
// (the queue is not replicated), which the transport reports as a
// disconnect like any other.
package pgtransport
