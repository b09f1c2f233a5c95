// Package conformance holds the test suites that every adapter of
// backplane runs: RunStore for a core.LocalStore, RunBackplane for a
// core.Backplane (a transport), and RunCache for the engine end to end over
// a store and a transport. The suites are ordinary Go tests made of
// subtests; they are exported so that adapters written outside this module
// prove the same contract with the same cases, in a few lines of their own
// _test.go file.
//
// A suite checks the contracts documented in package core, and nothing
// else. Capability flags (core.StoreCaps, and the optional fields of
// BackplaneHarness) skip what an adapter declares it cannot do; they never
// excuse a failure. A skipped case says why.
//
// # Using the suites
//
// Import the package from a test file of your adapter and call the suite
// from a test function. This is a complete test file of a third-party
// module that provides a store and a transport:
//
//	package mytransport_test
//
//	import (
//		"testing"
//
//		"github.com/backplane-go/backplane/conformance"
//		"github.com/backplane-go/backplane/core"
//
//		"example.com/mytransport"
//		"example.com/mytransport/mystore"
//		"example.com/mytransport/testbroker"
//	)
//
//	// newStore returns a store with a capacity of a few MiB, so that the
//	// eviction case fills it quickly.
//	func newStore(t testing.TB) core.LocalStore {
//		s, err := mystore.New(mystore.Config{MaxBytes: 4 << 20})
//		if err != nil {
//			t.Fatal(err)
//		}
//		return s
//	}
//
//	// harness makes transport instances on a broker private to the test
//	// (the suite restarts it) and injects faults.
//	func harness(t *testing.T) conformance.BackplaneHarness {
//		broker := testbroker.Start(t) // stopped by t.Cleanup
//		return conformance.BackplaneHarness{
//			New: func(t testing.TB, ns string) core.Backplane {
//				bp, err := mytransport.New(broker.Addr(), ns)
//				if err != nil {
//					t.Fatal(err)
//				}
//				return bp
//			},
//			Ordered: true,
//			// Cut the instance's connection from the broker's side; the
//			// transport must notice and reconnect by itself.
//			Disconnect: func(t testing.TB, bp core.Backplane) {
//				broker.KickClient(t, bp.(*mytransport.Transport).ClientID())
//			},
//			RestartBroker: func(t testing.TB) { broker.Restart(t) },
//		}
//	}
//
//	func TestStoreConformance(t *testing.T) {
//		conformance.RunStore(t, newStore, core.StoreCaps{
//			Eviction:    true,
//			MaxValueLen: 64 << 10,
//		})
//	}
//
//	func TestBackplaneConformance(t *testing.T) {
//		conformance.RunBackplane(t, harness(t))
//	}
//
//	// The engine end to end over this store and this transport.
//	func TestCacheConformance(t *testing.T) {
//		conformance.RunCache(t, conformance.CacheHarness{
//			Backplane: harness(t),
//			NewStore:  newStore,
//		})
//	}
//
// RunCache runs the engine (core.Cache) end to end over a store and a
// transport, with several instances and a randomized multi-instance
// consistency check across injected disconnects and broker restarts, the
// same check with acknowledged invalidation (core.Cache.InvalidateAcked)
// and a zero bound for the writes it confirmed, and a peer that does not
// acknowledge (the call fails naming it, never hangs); see RunCache and
// CacheHarness. RunMigration checks a fleet's rolling move between
// transports.
//
// Run the tests with -race: several cases are concurrency checks. With
// -short the suites send fewer messages and do fewer operations.
//
// # The harness
//
// BackplaneHarness.New makes one instance (one service process's
// connection) on a namespace. Every case asks for a fresh namespace of its
// own, derived from the case's name plus a random suffix and made only of
// the characters [a-zA-Z0-9._-], so cases run in parallel on one shared
// broker and never see each other's messages, and two runs against the
// same broker do not interfere. The suite closes every instance it made
// when its case ends.
//
// Disconnect, Stall and RestartBroker are optional: the cases that need
// them are skipped when they are nil. Stall holds an instance's link (a
// broker that stopped answering, with the connection still open) until the
// function it returns lifts it; a TCP proxy in front of the broker that
// stops forwarding the broker's replies does it. RestartBroker must restart a broker that only
// this test uses; the cases that call it run after all other cases, one at
// a time. Ordered declares per-publisher order; the order checks are
// skipped without it. Bound is how long a delivery may take (5 seconds by
// default); recoveries after a disconnect or a restart may take three times
// as long.
//
// # What RunBackplane promises to check
//
// Waiting is always polling against a deadline. An absence ("nothing was
// delivered") is checked with a fence: after the action, a later message
// from the same publisher is awaited, and then the absent message must not
// have arrived. For an ordered transport this is exact; for others it is a
// check within the delivery bound.
//
// Every payload a case publishes carries a marker unique to the case (and
// a tag and a counter), so a message from elsewhere is recognised and
// reported as foreign rather than counted.
//
// The cases:
//
//   - Limits: Limits().MaxPayload > 0, and it does not change on Subscribe.
//   - Delivery: a peer that never subscribed publishes; the subscriber gets
//     it.
//   - FanOut: several subscribers each receive every message. Fan-out is a
//     broadcast, never competing consumers. Duplicates are tolerated (and
//     logged).
//   - PublishRightAfterSubscribe: a Publish, by a peer or by the
//     subscriber itself, that starts right after Subscribe returned is
//     delivered; repeated with fresh instances.
//   - Echo: a subscribed publisher receives its own messages.
//   - NamespaceIsolation: namespaces that extend or prefix each other
//     (ns, ns.sub, ns-x, ns_x, a prefix of ns, xns) see only their own
//     messages.
//   - PayloadBinary, PayloadEmpty, PayloadMax: all 256 byte values and
//     random binary payloads arrive unchanged; an empty (or nil) payload
//     arrives as an empty payload; a payload of exactly MaxPayload bytes
//     arrives (above 16 MiB, a 1 MiB payload is sent instead).
//   - PayloadTooLarge: MaxPayload+1 bytes fail with an error wrapping
//     core.ErrPayloadTooLarge, also among valid payloads of one call, and
//     nothing of that call is delivered (skipped above a 64 MiB limit).
//   - MultiPayload: one Publish call with ten payloads delivers all of
//     them to every subscriber, in order when Ordered.
//   - IdenticalPayloads: one Publish call with the same payload three
//     times delivers it three times (at least), to a peer and to the
//     publisher: each payload is a message, identical or not.
//   - PublishNoPayloads: Publish with no payloads returns nil and sends
//     nothing.
//   - ConcurrentPublishers: four publishers, 200 messages each (50 with
//     -short), lose nothing; in per-publisher order when Ordered.
//   - PerPublisherOrder (needs Ordered): one publisher's messages, sent one or
//     several per call, arrive in order, at a peer and at itself.
//   - CancelledContext: Publish with an already cancelled, or already
//     expired, context returns an error wrapping context.Canceled
//     (context.DeadlineExceeded) and delivers nothing. A transport can
//     always keep this promise by checking the context before sending; a
//     context that ends while a Publish is in flight promises nothing about
//     delivery and is not checked.
//   - ContextWhilePublishWaits (needs Stall): while a Publish with a long
//     context waits on a stalled link, later Publish calls of the same
//     instance with short contexts each return an error wrapping
//     context.DeadlineExceeded, and the first call is still waiting when
//     they do (the order is checked; the deadlines are safety bounds).
//     A transport that serialises Publish calls on a lock it waits for
//     regardless of the context fails it. Once the stall is lifted the
//     first call returns (with or without an error) and the instance
//     publishes again.
//   - SubscribeTwice: the second Subscribe fails with an error wrapping
//     core.ErrAlreadySubscribed, its handler is never called, and the first
//     subscription keeps working.
//   - SubscribeContextEnds: cancelling the context given to Subscribe,
//     once Subscribe returned, does not end delivery.
//   - ConnectedEvent: EventConnected arrives once after Subscribe, as the
//     first event, with a non-zero Time; a healthy connection reports no
//     other event.
//   - Close: Close of a fresh, a publishing and a subscribed instance
//     returns nil; Close called again, or concurrently, returns nil or an
//     error wrapping core.ErrClosed; afterwards Publish and Subscribe fail
//     with an error wrapping core.ErrClosed.
//   - NoHandlerAfterClose: while a peer keeps publishing, the handler of
//     a closed instance is not called once Close returned (checked while a
//     second subscriber receives twenty more messages).
//   - CloseDuringHandler: Close called while a handler call is running
//     does not return before that call returns (observed for a short
//     window, which can miss a violation but never invent one), and
//     returns once it has. The case cannot hang the suite: Close runs in
//     its own goroutine and the handler is always released.
//   - PanickingHandler: a handler that panics in HandleMessage, or in
//     HandleEvent, keeps receiving later messages.
//   - SlowHandler: a handler blocked while a burst is published keeps its
//     subscription: once it returns, delivery resumes. Loss during the
//     burst (with or without EventLoss) and Publish errors or waits are
//     allowed, and logged; Publish must still honour its context.
//   - Disconnect (needs Disconnect): the cut instance reports EventDisconnected,
//     then EventReconnected, and delivery to it and from it resumes; it
//     does not report EventConnected again.
//   - BrokerRestart (needs RestartBroker; runs alone): the same for two
//     subscribers across a broker restart, while both keep publishing;
//     those publishes may fail or succeed, but must return within their
//     context.
//
// The suite's handlers never call Publish or Close of the instance that
// delivers to them, nor wait for such a call, as core.Handler promises of
// every handler: a transport may hold what its Publish or Close need
// during a handler call, and Close must wait for a handler call in
// progress (CloseDuringHandler). That promise is the engine's to keep; the
// core package's tests check it of core.Cache.
//
// Throughout, every handler call is checked for overlap with another call
// on the same handler (the Handler contract says one call at a time), and
// every handler panic that escapes Subscribe is reported as a failure.
// A transport that lets a handler panic escape its own goroutine crashes
// the test binary; the stack trace then names the case.
//
// # What RunStore promises to check
//
// See RunStore. In short: misses, set/get/overwrite, deletes, Clear, Len,
// copies in and out (no aliasing of the caller's or the returned slice),
// empty and binary values, the value size limit, TTL, eviction, concurrent
// use under -race with a final consistency check, and use after Close.
//
// # The suite's own tests
//
// The package's tests run the suites against correct adapters (a map store
// and memtransport) and against deliberately broken ones (a transport that
// drops every tenth message, one that delivers each message to one
// subscriber only, one that sends identical payloads of a call once, one
// that serialises Publish on a lock regardless of the context, stores that
// alias slices, and others), and assert that the suite fails those in the
// expected cases. The broken runs happen in a
// subprocess of the test binary, since a failing subtest fails its parent.
package conformance
