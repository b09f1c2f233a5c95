// Package servicebustransport is a backplane transport over Azure Service
// Bus (github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus): a
// core.Backplane that sends to one topic and receives from one
// subscription of that topic per instance, so that every instance receives
// every message, its own included (the way SignalR's Service Bus scale-out
// works).
//
// The topic is Options.Topic, or "backplane.<namespace>" by default; it
// must exist (create it with the Azure portal, Bicep, Terraform or
// admin.Client.CreateTopic). Every instance needs a subscription of its own
// on it; see Provisioning.
//
// Use New with an *azservicebus.Client you already have (Close does not
// close it), Open with a connection string, or OpenWithCredential with a
// fully qualified namespace and an azcore.TokenCredential (for example from
// azidentity); the last two make a client that Close closes. None of them
// does I/O: the connection is made by the first Subscribe or Publish.
//
// Importing the package registers the sb:// and servicebus:// schemes with
// transports.Open and fxmodule (their parameters are listed in the
// fxmodule documentation).
//
// # Provisioning
//
// Exactly one of two ways gives an instance its subscription:
//
//   - Options.Provisioner (WithProvisioner) creates it in Subscribe and
//     deletes it in Close. NewAdminProvisioner does that through the
//     administration API (an *admin.Client, which needs the Manage right),
//     with a random name ("bp-" and 24 hex digits) and AutoDeleteOnIdle
//     (5 minutes by default, the service's minimum), so that the
//     subscriptions of instances that died without Close are deleted by
//     Service Bus. Provisioner is an interface: implement it to provision
//     another way.
//   - Options.Subscription (WithSubscription) names a subscription made
//     beforehand, for namespaces where the application has no Manage
//     right. Each instance must have its own: two instances on one
//     subscription compete for its messages, and each receives only some.
//     Give such subscriptions AutoDeleteOnIdle or a default message TTL if
//     instances come and go, or a subscription without a receiver keeps
//     accumulating messages until its entity quota is full.
//
// A subscription receives only the messages sent after it exists. It keeps
// them until they are received (or expire, by the subscription's default
// message TTL): it is durable. A pre-provisioned subscription may therefore
// hold messages from before this instance started (sent while a previous
// instance on it was away); they are delivered first. For invalidations
// that is harmless: an extra eviction.
//
// # Message Delivery Semantics
//
// Subscribe returns once the subscription exists and the receiver link
// (and the subscription's management link) is attached; an unknown topic
// or subscription, or missing rights, fail Subscribe. On Service Bus
// "delivery active" means the subscription exists: from then on every
// message sent to the topic is kept for this instance, whether or not its
// receiver is connected at that moment. A Publish by anyone that starts
// after Subscribe returns therefore reaches the handler.
//
// Messages are received in ReceiveAndDelete mode by default: Service Bus
// deletes a message as it sends it to the receiver, so each message costs
// no settlement round trip, no lock and no lock renewal, and is never
// delivered twice. The price is a small window of loss: messages the
// service sent on a connection that breaks before the client read them are
// gone. That is at-most-once, which is what the engine expects of every
// transport (core.Cache detects gaps by per-source sequence numbers and
// heartbeats, and per-entry TTLs bound staleness). Options.PeekLock
// (WithPeekLock) receives in PeekLock mode instead and completes each
// message after the handler returned (at-least-once): nothing is lost when
// a connection breaks, at the cost of one settlement per message, lost
// ordering (the SDK releases messages that arrive between two receive
// calls, and they come back after later ones; Limits reports Reorders, so
// that the engine waits core.Options.ReorderWindow for an overtaken message
// before it counts a gap) and duplicates when a lock expires or a
// completion fails.
//
// The SDK recovers broken connections and links by itself, on the next
// receive or send. The Transport follows its receive calls: when one ends
// without messages and without the Transport's own cancellation, the SDK
// saw the link or the connection fail, and the Transport reports
// core.EventDisconnected (with the SDK's error when it gave one). It then
// re-attaches by peeking (one management round trip, which makes the SDK
// rebuild the connection and both links), retrying with a growing pause
// (Options.RecoverWait doubling up to 5 s), and reports
// core.EventReconnected once that succeeded; "After an Outage" says what
// that event tells of the messages published meanwhile.
//
// If a link fails while a receive call is returning messages, the SDK
// returns the messages, swallows the error and recovers the link on the
// next call: no event is reported for that failure. The messages the
// subscription kept meanwhile still arrive; only ReceiveAndDelete's
// in-flight loss applies, and the engine's sequence numbers catch it.
//
// Publish sends its payloads as Service Bus message batches (one AMQP
// transfer per batch, split where a batch would exceed the topic's max
// message size) and returns once the service accepted every batch. Sends
// are retried by the SDK according to the client's RetryOptions, within
// Publish's context; Open and OpenWithCredential use the SDK's defaults
// with a 100 ms first delay and a 2 s cap. A call whose later batch fails
// may have sent its earlier batches; duplicates of invalidations are
// harmless. Messages of one publisher are sent in order; ReceiveAndDelete
// delivers them in order on a topic without sessions in the normal case,
// but Service Bus does not promise FIFO without sessions.
//
// Limits reports Options.MaxMessageSize (256 KiB by default, the Standard
// tier's max message size; Premium allows up to 100 MB per entity, set the
// option to use it) minus MessageOverhead (512 bytes for the encoding of
// one message in a batch). A payload over it fails Publish with
// core.ErrPayloadTooLarge before anything is sent. If the topic's real
// limit is smaller than MaxMessageSize, a payload that does not fit fails
// with core.ErrPayloadTooLarge when its batch is built.
//
// # After an Outage
//
// A subscription keeps the messages sent to the topic while its instance
// is away, but the Transport never reports core.EventReconnected with
// Resumed, and Limits never reports Durable: what the engine needs of a
// Durable transport (every message published meanwhile delivered once and
// in order, so that an own message coming back proves that everything
// before it arrived) is more than Service Bus lets it prove:
//
//   - Without sessions a subscription does not promise FIFO order ("to
//     realize a FIFO guarantee in Service Bus, use sessions", the service's
//     documentation says; a partitioned topic does not keep order across
//     partitions). An own message may overtake a peer's earlier one.
//   - ReceiveAndDelete: the service deletes a message as it sends it.
//     Messages it had sent on a connection that broke before the client
//     read them are gone, and nothing on the client tells whether there
//     were any.
//   - PeekLock: messages on the broken link stay locked until their lock
//     expires (LockDuration, a minute by default) and are then delivered
//     again, after later ones and to the handler a second time if it had
//     them already; messages released between two receive calls come back
//     after later ones even without an outage; a message delivered more
//     than MaxDeliveryCount times is dead-lettered.
//   - Messages past their time to live expire while the instance is away.
//
// So the engine treats an outage as it does over any pub/sub transport
// (core.Options.OnDisconnect and OnReconnect: flush by default). What
// comes late does no harm then: a message delivered again, or one that
// comes back when its lock expired, evicts its keys once more, and within
// one peer's messages the engine's sequence numbers count one overtaken
// by more than core.Options.ReorderWindow as a gap (core.Options.OnGap).
// The Err of every core.EventReconnected says what is known, for
// operators and logs:
//
//   - ErrSubscriptionRecreated: the subscription was deleted while the
//     instance was away (by AutoDeleteOnIdle after an outage longer than
//     its interval, or by someone) and delivery goes on from one made
//     again: the messages published meanwhile are lost. The Transport
//     knows it when an attach failed with amqp:not-found during the outage,
//     or, with an Inspector, when the subscription's CreatedAt changed.
//     With a Provisioner it does not wait for a deleted subscription to
//     come back: it provisions a new one (Subscription then returns its
//     name, and Close deletes it) and reports the loss. A pre-provisioned
//     subscription cannot be made again by the Transport: it logs an error
//     naming the subscription and keeps retrying, disconnected, until it
//     exists again.
//   - ErrResumeUnproven: delivery goes on from the subscription attached
//     to before (shown by an unchanged CreatedAt with an Inspector;
//     assumed without one), which kept the messages published meanwhile
//     but for those past their time to live, and the error names the
//     receive mode's caveat above. With an Inspector
//     it also says how many messages were dead-lettered during the outage
//     (lost to this instance).
//
// Options.Inspector (an *admin.Client, which needs the Manage right) reads
// the subscription's runtime properties at Subscribe and after every
// outage; an AdminProvisioner's admin.Client is used by default. Without
// one (a pre-provisioned subscription without the Manage right), a
// subscription deleted and made again while the Transport could not reach
// the namespace looks like the one before.
//
// A Durable mode would need subscriptions with sessions (every instance
// publishing to one session ID, each subscription's session received in
// order under a session lock), which this transport does not offer, and
// which the test fake does not implement.
//
// # Handler Calls
//
// One goroutine per Transport makes every handler call, one at a time:
// core.EventConnected first (once, after Subscribe returned), then messages
// and events in the order they happen, never from within Subscribe or
// Publish. A panicking handler is recovered and logged, and delivery goes
// on. Close cancels the receive call, waits for a running handler call to
// return, and makes no handler call afterwards (a handler never calls
// Publish or Close, core.Handler says). A slow handler slows receiving:
// messages wait in the subscription (at most ReceiveBatch of them in the
// client), nothing is dropped. In
// PeekLock mode a second goroutine completes the messages the handler has
// returned from, so that a slow or failing completion (which the SDK
// retries) does not hold up delivery.
//
// # What the Tests Prove
//
// No Azure namespace can be reached from this project's CI, so the tests
// run the real SDK (and go-amqp, its AMQP 1.0 client) against
// internal/testenv/sbfake, an AMQP 1.0 server written for the tests that
// speaks the protocol the SDK uses: SASL, claims-based auth on $cbs, links,
// credit, multi-frame transfers, batches, fan-out of a topic to its
// subscriptions, both receive modes, settlement (also through the
// management link), not-found for unknown entities, and dropped or refused
// connections. It also answers the administration API's requests for
// topics and subscriptions in process (an azcore transport given to
// admin.Client, so the SDK's ATOM encoding is exercised but not HTTP or
// TLS). The conformance suites (conformance.RunBackplane and
// conformance.RunCache, with the consistency checks across dropped
// connections and a simulated restart) pass on it for both provisioning
// ways (pre-provisioned, and AdminProvisioner with the SDK's admin.Client)
// and both receive modes. That proves the SDK code path end to end and the
// Transport's own logic: setup, provisioning, batching and limits, fan-out
// to one subscription per instance, settlement, recovery after a broken
// connection and its events, what EventReconnected says after an outage
// (the fake gives each subscription made under a name a CreatedAt of its
// own, counts dead-lettered messages, and deletes subscriptions on
// request), provisioning again after a deletion, Close.
//
// It does not prove Service Bus semantics: the fake has no filters or
// rules, no message TTL, no lock expiry (a broken link's locked messages
// are available again at once), no auto-delete on idle (the property is
// sent, and ignored; the tests delete subscriptions themselves), no quotas
// or throttling, and no token validation. The same suites run against a
// real namespace when SERVICEBUS_CONNECTION_STRING is set (the connection
// string needs the Manage right: the tests create a topic per test
// namespace and provision subscriptions with an AdminProvisioner); they are
// skipped otherwise.
//
// BenchmarkPropagation measures the engine over the fake next to the raw
// SDK over the fake and the engine over memtransport. The fake runs in the
// same process on loopback, so its numbers measure the SDK and this
// package, not Service Bus: they do not predict Azure's latency or
// throughput, which network round trips and the tier's throttling
// dominate.
package servicebustransport
