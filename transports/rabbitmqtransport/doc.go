// Package rabbitmqtransport is a backplane transport over RabbitMQ (AMQP
// 0-9-1, github.com/rabbitmq/amqp091-go): a core.Backplane, and a
// core.Sender, that publishes to one fanout exchange per namespace,
// "backplane.<namespace>" by default (Options.ExchangePrefix), and gives
// every instance an exclusive, auto-delete queue of its own bound to it, so
// that every instance receives every message, its own included.
//
// Use Open with a broker URL to let the Transport make and own the
// connection, or New with an *amqp091.Connection you already have (the
// Transport never closes it). Neither does I/O: the connection is dialled,
// and the exchange declared, by Connect, or else by the first Subscribe or
// Publish, which fits frameworks whose constructors must not block (fx:
// construct, then Subscribe in OnStart).
//
// Importing the package registers the amqp:// and amqps:// schemes with
// transports.Open and fxmodule.
//
// # Message Delivery Semantics
//
// Fan-out is at-most-once. The exchange routes a message to the queues
// bound to it at that moment, one copy each; a queue lives as long as its
// instance's connection (it is exclusive), so messages are not kept for an
// instance that is not connected. The exchange is transient and
// auto-deleted: the broker removes it when the namespace's last queue goes
// (and at a restart), so namespaces leave nothing behind, and every
// Transport declares it when it connects. A Transport that only publishes
// (it never subscribed) on a namespace whose last instance has just left
// finds its exchange gone: the broker closes its channel (NOT_FOUND), that
// Publish fails with ErrNotConnected, and the Transport reconnects and
// declares the exchange again. Nobody was listening, so nothing was lost.
// An exchange that never had a queue (a namespace only ever published to)
// is not auto-deleted: it stays until the broker restarts.
//
// While an instance is disconnected, messages published to the exchange do
// not reach it: the broker deletes the exclusive queue with the
// connection, and what it held, delivered or not, is lost with it. The
// Transport reports core.EventDisconnected (with the cause: the
// connection or a channel closed, the broker cancelled the consumer, a
// heartbeat timed out), reconnects with backoff (Options.ReconnectBackoff,
// doubling up to MaxReconnectBackoff), declares a new queue, binds it and
// consumes again, then reports core.EventReconnected with Resumed false:
// the engine treats it as "messages may be missing" and, by default,
// flushes the local store. Limits is never Durable.
//
// Publish puts the namespace's payloads on one channel in confirm mode and
// returns once the broker confirmed every one of them (basic.ack: the
// broker routed the message to every bound queue). A negative confirmation
// (basic.nack) fails the call with ErrNacked; a channel or connection that
// closes before the confirmation fails it with ErrNotConnected; a context
// that ends first fails it with the context's error (the message may still
// be delivered: the engine's sequence numbers make a duplicate harmless).
// Publish does not buffer while disconnected: it fails with
// ErrNotConnected and sends nothing. While the broker has blocked the
// connection (connection.blocked, a memory or disk alarm) Publish fails
// with ErrBlocked instead of waiting behind it.
//
// Order: messages published on one channel reach every queue in the order
// they were published, and a queue delivers in order, so receivers see an
// instance's messages in publish order. Send (core.Sender) writes the next
// round on the same channel while earlier ones wait for their
// confirmations, up to Options.ConcurrentPublish rounds (1 by default).
// There is no order between instances.
//
// Subscribe returns once the broker confirmed the consumer
// (basic.consume-ok) on a queue already bound to the exchange: a message
// published to the exchange afterwards reaches it. On a cluster, the
// exchange and bindings are known to every node, and the exclusive queue
// lives on the node the instance is connected to; a node that goes down
// takes its queues with its connections, which reconnect elsewhere.
//
// # Queue Limits
//
// A slow instance must not make the broker hold unbounded memory. Each
// queue has x-max-length (Options.QueueMaxLength, 100,000 messages) and
// x-max-length-bytes (Options.QueueMaxBytes, 64 MiB) with
// x-overflow=drop-head: past a limit the broker drops the oldest ready
// message. Those it drops are dead-lettered, through the default exchange,
// to a second exclusive queue of the instance that holds at most one
// message; the Transport consumes it, on a channel of its own, and reports
// each delivery from it as core.EventLoss (Err wrapping ErrOverflow), so
// the engine knows messages are missing (it would also see the gap in the
// sequence numbers). Several drops in a row may be reported as one loss.
// Without limits (queue_max_length=none and queue_max_bytes=none) there is
// no loss queue.
//
// The client holds at most Options.Prefetch (256) unacknowledged messages
// (basic.qos): the broker sends no more until the handler has taken them.
// Messages are acknowledged in batches, after each half of the prefetch
// and whenever no more are waiting; a message that was delivered but not
// yet acknowledged when the connection drops is lost with the queue.
//
// # Message Size
//
// A payload is one message body, without headers or properties. Limits
// reports Options.MaxPayload (1 MiB by default, at most 512 MiB), and
// Publish refuses a larger payload with core.ErrPayloadTooLarge before
// sending anything. The broker's own limit, max_message_size (128 MiB by
// default), must not be lower: the broker closes the channel of a message
// over it, which the Transport reports and recovers from as a dropped
// channel. amqp091-go splits a large body into frames of the negotiated
// frame size.
//
// # Heartbeats and Reconnects
//
// A connection made by Open negotiates an AMQP heartbeat of
// Options.Heartbeat (5 s); amqp091-go closes a connection on which nothing
// arrived for three intervals, so a broker that died without closing the
// TCP connection is noticed within about 15 s. amqp091-go does not
// reconnect by itself: the Transport watches the close notifications of
// the connection and of both its channels (and the consumer's
// cancellation), and replaces the whole session (connection, channels,
// exchange, queues, consumer) when one fires.
//
// With New, the application owns the connection and its reconnects. The
// Transport opens its channels on it, and reopens them (with the same
// backoff, reporting a disconnect and a reconnect) when a channel closes
// while the connection stays open. When the connection itself closes, the
// Transport reports core.EventDisconnected and stays disconnected for
// good: Publish and Send fail with ErrNotConnected (wrapping
// ErrConnectionClosed), and the engine notices the silence. Make a new
// Transport (and Cache) on the new connection. A connection with
// amqp091-go's experimental automatic recovery is not supported.
//
// # Handler Calls
//
// The handler is called one call at a time: messages and losses from the
// delivery goroutine of the current session, disconnects from the
// supervisor once that goroutine ended, never from within Subscribe or
// Publish. EventConnected is the first call after Subscribe succeeded,
// EventReconnected the first of each new session. A panicking handler is
// recovered and logged. Close waits for a handler call in progress; a
// handler never calls Publish or Close (core.Handler).
//
// # URLs
//
//	amqp://guest:guest@127.0.0.1:5672/
//	amqps://user:password@rabbit.internal:5671/vhost?tls_ca=/etc/ca.pem
//
// transports.Open (and fxmodule) accept these query parameters besides
// namespace; any other is an error:
//
//	exchange_prefix=S        the exchange is S<namespace> (default "backplane.")
//	queue_name=S             the instance's queue (default: named by the broker)
//	max_payload=N            largest payload in bytes (default 1 MiB)
//	queue_max_length=N|none  x-max-length of the queue (default 100000)
//	queue_max_bytes=N|none   x-max-length-bytes of the queue (default 64 MiB)
//	prefetch=N               unacknowledged messages in flight (default 256)
//	concurrent_publish=N     rounds awaiting confirmation at once (default 1)
//	heartbeat=D              AMQP heartbeat (default 5s; 0: the broker's)
//	connect_timeout=D        dial and handshake (default 10s)
//	reconnect_backoff=D, max_reconnect_backoff=D   (default 50ms, 2s)
//	connection_name=S        connection_name client property
//	                         (default "backplane:<namespace>")
//	tls_ca=FILE, tls_cert=FILE, tls_key=FILE, tls_server_name=S   amqps:// only
//
// The user, password, host, port and vhost (the path, "/" when empty) are
// amqp091-go's. If the request carries an *amqp091.Connection
// (transports.WithClient, fxmodule.UseClient), the Transport uses it as
// New does, and the URL's address and connection parameters are ignored.
package rabbitmqtransport
