// Package sbfake is a fake Azure Service Bus namespace for tests: an AMQP
// 1.0 server on 127.0.0.1 that the real azservicebus SDK (over go-amqp)
// talks to through a connection string with UseDevelopmentEmulator=true
// (plain AMQP, no TLS), as returned by Server.ConnectionString.
//
// It speaks what the SDK needs for topics and subscriptions: SASL
// ANONYMOUS; open, begin, attach, flow (credit, drain, echo), transfer,
// disposition, detach, end and close; empty frames as heartbeats; transfers
// split into frames both ways (the client's max-frame-size and the server's
// own); claims-based auth replies on $cbs (every token is accepted); the
// <entity>/$management links with peek (always empty), renew-lock and
// update-disposition; batches (message format 0x80013700); fan-out of every
// message sent to a topic to each of its subscriptions; ReceiveAndDelete
// (pre-settled deliveries) and PeekLock (deliveries locked until accepted,
// released, modified or rejected); amqp:not-found for unknown entities.
// Topics and subscriptions are created with Server.AddTopic, or through the
// administration API: Server.AdminTransport serves admin.Client's ATOM
// requests for topics and subscriptions in process (no HTTP, no TLS),
// including a subscription's runtime properties: its CreatedAt tells a
// subscription made again under the same name from the one before.
//
// Fault injection: DropAll and DropEntity close connections abruptly,
// Refuse closes new connections for a while, RemoveSubscription deletes a
// subscription under its receivers (as AutoDeleteOnIdle or an operator
// does), and DeadLetter moves waiting messages to the dead-letter count.
//
// It is not Service Bus. It has no filters or rules, no TTL, no lock expiry
// (a lost link's locked messages go back to the queue at once), no
// auto-delete on idle, no sessions, no dead-letter queue (rejected messages
// are dropped, and counted as dead-lettered), no duplicate detection and no
// quotas; it does not check tokens, and its management operations other
// than those above answer 501.
package sbfake
