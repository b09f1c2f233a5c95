package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

const (
	// maxExactPayload is the largest Limits().MaxPayload the suite sends as
	// one exact-size payload; above it the payload case uses
	// fallbackPayload bytes instead.
	maxExactPayload = 16 << 20
	fallbackPayload = 1 << 20
	// maxOversizePayload is the largest MaxPayload for which the suite
	// builds a MaxPayload+1 payload.
	maxOversizePayload = 64 << 20
	// publishInterval paces the background publishers of the close and
	// restart cases, so that they do not spin while a broker is down.
	publishInterval = 2 * time.Millisecond
)

// RunBackplane runs the Backplane conformance suite against the transport
// that h makes. Call it from a test of the transport's package:
//
//	func TestConformance(t *testing.T) {
//		conformance.RunBackplane(t, conformance.BackplaneHarness{
//			New: func(t testing.TB, ns string) core.Backplane { return mytransport.New(ns) },
//		})
//	}
//
// Every case gets a fresh namespace of its own (derived from the case name
// plus a random suffix, made of [a-zA-Z0-9._-]), creates its instances
// through h.New and closes them when it ends. The cases run in parallel
// in the subtest group "Backplane"; the cases that restart the broker run
// afterwards, one at a time, in the group "BackplaneFaults". RunBackplane
// returns once every case has finished, so the caller may stop its broker
// right after it.
//
// The suite waits for deliveries by polling with a deadline of h.Bound
// (recoveries after a disconnect or a broker restart get three times
// that); it never sleeps to synchronise. With -short it sends fewer
// messages. Cases that need a harness capability (Disconnect, Stall,
// RestartBroker, Ordered) are skipped when the harness lacks it, and say
// so.
//
// The cases check the Backplane contract of package core: delivery,
// broadcast fan-out, delivery right after Subscribe returns, echo of a
// publisher's own messages, namespace isolation, payload edge cases,
// multi-payload Publish (identical payloads included), concurrent
// publishers without loss, order (when h.Ordered), context cancellation
// (also while another Publish waits on a stalled link, when h.Stall),
// Subscribe twice, Close semantics,
// handler panics and slow handlers, connection events, and recovery after
// Disconnect and RestartBroker. Every handler call is also checked for
// overlap with another call of the same handler. See the package
// documentation for what each case promises.
func RunBackplane(t *testing.T, h BackplaneHarness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("conformance: BackplaneHarness.New is nil")
	}
	s := &bpSuite{h: h}
	t.Run("Backplane", func(t *testing.T) {
		for _, c := range backplaneCases {
			t.Run(c.name, func(t *testing.T) {
				t.Parallel()
				c.run(s.env(t))
			})
		}
	})
	t.Run("BackplaneFaults", func(t *testing.T) {
		for _, c := range backplaneSerialCases {
			t.Run(c.name, func(t *testing.T) { c.run(s.env(t)) })
		}
	})
}

type bpCase struct {
	name string
	run  func(e *env)
}

// backplaneCases run in parallel with each other.
var backplaneCases = []bpCase{
	{"Limits", (*env).caseLimits},
	{"Delivery", (*env).caseDelivery},
	{"FanOut", (*env).caseFanOut},
	{"PublishRightAfterSubscribe", (*env).caseSubscribeThenPublish},
	{"Echo", (*env).caseEcho},
	{"NamespaceIsolation", (*env).caseIsolation},
	{"PayloadBinary", (*env).casePayloadBinary},
	{"PayloadEmpty", (*env).casePayloadEmpty},
	{"PayloadMax", (*env).casePayloadMax},
	{"PayloadTooLarge", (*env).casePayloadTooLarge},
	{"MultiPayload", (*env).caseMultiPayload},
	{"IdenticalPayloads", (*env).caseIdenticalPayloads},
	{"PublishNoPayloads", (*env).caseNoPayloads},
	{"ConcurrentPublishers", (*env).caseConcurrentPublishers},
	{"PerPublisherOrder", (*env).casePerPublisherOrder},
	{"SenderOrder", (*env).caseSenderOrder},
	{"CancelledContext", (*env).caseCancelledContext},
	{"ContextWhilePublishWaits", (*env).caseContextWhilePublishWaits},
	{"SubscribeTwice", (*env).caseSubscribeTwice},
	{"SubscribeContextEnds", (*env).caseSubscribeContextEnds},
	{"ConnectedEvent", (*env).caseConnectedEvent},
	{"Close", (*env).caseClose},
	{"NoHandlerAfterClose", (*env).caseNoHandlerAfterClose},
	{"CloseDuringHandler", (*env).caseCloseDuringHandler},
	{"PanickingHandler", (*env).casePanickingHandler},
	{"SlowHandler", (*env).caseSlowHandler},
	{"Disconnect", (*env).caseDisconnect},
	{"ResumeOrLoss", (*env).caseResumeOrLoss},
}

// backplaneSerialCases run one at a time, after backplaneCases.
var backplaneSerialCases = []bpCase{
	{"BrokerRestart", (*env).caseBrokerRestart},
}

type bpSuite struct {
	h BackplaneHarness
}

// env is one case's environment: its namespace and the marker its
// payloads carry.
type env struct {
	t      *testing.T
	h      BackplaneHarness
	ns     string
	marker string
	bound  time.Duration
	seq    atomic.Int64
}

func (s *bpSuite) env(t *testing.T) *env {
	return &env{
		t:      t,
		h:      s.h,
		ns:     newNamespace(t),
		marker: newMarker(t),
		bound:  s.h.bound(),
	}
}

// recoverBound is how long a recovery (disconnect, broker restart) may
// take.
func (e *env) recoverBound() time.Duration { return 3 * e.bound }

// scaled returns full normally and short under -short.
func scaled(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

// instanceOn returns a new instance on namespace ns, closed when the case
// ends.
func (e *env) instanceOn(ns string) core.Backplane {
	e.t.Helper()
	bp := e.h.New(e.t, ns)
	if bp == nil {
		e.t.Fatal("conformance: BackplaneHarness.New returned nil")
	}
	t := e.t
	t.Cleanup(func() {
		if err := closeWithin(bp, e.bound); err != nil && !errors.Is(err, core.ErrClosed) {
			t.Errorf("Close at the end of the case: %v", err)
		}
	})
	return bp
}

// instance returns a new instance on the case's namespace.
func (e *env) instance() core.Backplane {
	e.t.Helper()
	return e.instanceOn(e.ns)
}

// recorder returns a new recorder for the case's marker.
func (e *env) recorder(name string) *recorder {
	return newRecorder(e.t, name, e.marker)
}

// subscribe subscribes bp to h and fails the case when that fails.
func (e *env) subscribe(bp core.Backplane, h core.Handler) {
	e.t.Helper()
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	if err := subscribeSafely(ctx, bp, h); err != nil {
		e.t.Fatalf("Subscribe: %v", err)
	}
}

// subscribeSafely calls Subscribe and turns a panic into an error, so that
// a transport calling the handler synchronously does not crash the suite.
func subscribeSafely(ctx context.Context, bp core.Backplane, h core.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("Subscribe panicked (a transport calls the handler from its own goroutine "+
				"and recovers handler panics): %v", r)
		}
	}()
	return bp.Subscribe(ctx, h)
}

// subscribed returns a new instance on the case's namespace, subscribed
// with a new recorder.
func (e *env) subscribed(name string) (core.Backplane, *recorder) {
	e.t.Helper()
	bp := e.instance()
	rec := e.recorder(name)
	e.subscribe(bp, rec)
	return bp, rec
}

// msg returns a marked payload: marker + tag + ":" + i.
func (e *env) msg(tag string, i int) string {
	return e.marker + tag + ":" + strconv.Itoa(i)
}

// fresh returns a marked payload never used before in this case.
func (e *env) fresh(tag string) string {
	return e.msg(tag, int(e.seq.Add(1)))
}

// publish publishes payloads in one call and fails the case on an error.
func (e *env) publish(bp core.Backplane, payloads ...string) {
	e.t.Helper()
	ps := make([][]byte, len(payloads))
	for i, p := range payloads {
		ps[i] = []byte(p)
	}
	e.publishBytes(bp, ps...)
}

// publishBytes is publish for byte payloads.
func (e *env) publishBytes(bp core.Backplane, payloads ...[]byte) {
	e.t.Helper()
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	if err := bp.Publish(ctx, payloads...); err != nil {
		e.t.Fatalf("Publish of %d payloads: %v", len(payloads), err)
	}
}

// waitAll waits until every recorder received every payload in ps and
// fails the case, naming what is missing, when the bound passes first.
func (e *env) waitAll(recs []*recorder, ps []string, why string) {
	e.t.Helper()
	if eventually(e.bound, func() bool {
		for _, r := range recs {
			if !r.hasAll(ps) {
				return false
			}
		}
		return true
	}) {
		return
	}
	for _, r := range recs {
		if n, first := r.missing(ps); n > 0 {
			extra := ""
			if s := r.strayReport(); s != "" {
				extra = "; it also received " + s
			}
			e.t.Errorf("%s received %d of %d messages within %v; first missing %q%s",
				r.name, len(ps)-n, len(ps), e.bound, shorten(first), extra)
		}
	}
	if why != "" {
		e.t.Log(why)
	}
	e.t.FailNow()
}

// fence publishes a fresh message from pub and waits until every recorder
// has it. Used after an action that must deliver nothing: once the fence
// arrived, a message published before it would have had time to arrive as
// well (exactly so for an ordered transport, within the bound otherwise).
func (e *env) fence(pub core.Backplane, recs ...*recorder) {
	e.t.Helper()
	p := e.fresh("fence")
	e.publish(pub, p)
	e.waitAll(recs, []string{p}, "")
}

// publishUntil publishes fresh messages tagged tag from pub, one every
// 50ms, until every recorder received one of them or d passes. Publish
// errors are tolerated meanwhile (the transport may still be recovering).
// It fails the case when d passes.
func (e *env) publishUntil(pub core.Backplane, tag string, d time.Duration, recs ...*recorder) {
	e.t.Helper()
	prefix := e.marker + tag + ":"
	deadline := time.Now().Add(d)
	var lastErr error
	published := 0
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := pub.Publish(ctx, []byte(e.fresh(tag)))
		cancel()
		if err != nil {
			lastErr = err
		} else {
			published++
		}
		wait := min(50*time.Millisecond, time.Until(deadline))
		if eventually(wait, func() bool {
			for _, r := range recs {
				if !r.hasPrefix(prefix) {
					return false
				}
			}
			return true
		}) {
			return
		}
	}
	for _, r := range recs {
		if !r.hasPrefix(prefix) {
			e.t.Errorf("%s received none of the %d messages published successfully (last Publish error: %v) within %v",
				r.name, published, lastErr, d)
		}
	}
	e.t.FailNow()
}

// checkOrder fails the case when rec received the payloads tagged tag out
// of their sequence order.
func (e *env) checkOrder(rec *recorder, tag string) {
	e.t.Helper()
	prefix := e.marker + tag + ":"
	last := -1
	for _, p := range rec.received() {
		if !strings.HasPrefix(p, prefix) {
			continue
		}
		i, err := strconv.Atoi(p[len(prefix):])
		if err != nil {
			continue
		}
		if i <= last {
			e.t.Errorf("%s received %s message %d after %d: an ordered transport delivers one publisher's messages in publish order",
				rec.name, tag, i, last)
			return
		}
		last = i
	}
}

// ---------------------------------------------------------------------
// Cases.

// caseLimits: Limits reports a positive MaxPayload, before and after
// Subscribe.
func (e *env) caseLimits() {
	bp := e.instance()
	l := bp.Limits()
	if l.MaxPayload <= 0 {
		e.t.Fatalf("Limits().MaxPayload = %d; want > 0", l.MaxPayload)
	}
	e.subscribe(bp, e.recorder("subscriber"))
	if l2 := bp.Limits(); l2 != l {
		e.t.Errorf("Limits() changed after Subscribe: %+v, then %+v", l, l2)
	}
}

// caseDelivery: a message published by a peer that never subscribed
// reaches a subscriber.
func (e *env) caseDelivery() {
	_, rec := e.subscribed("subscriber")
	pub := e.instance()
	ps := []string{e.msg("delivery", 0), e.msg("delivery", 1)}
	e.publish(pub, ps[0])
	e.publish(pub, ps[1])
	e.waitAll([]*recorder{rec}, ps, "")
}

// caseFanOut: every subscribed instance receives every message.
func (e *env) caseFanOut() {
	nsubs, nmsgs := scaled(4, 3), scaled(20, 10)
	recs := make([]*recorder, nsubs)
	for i := range recs {
		_, recs[i] = e.subscribed(fmt.Sprintf("subscriber %d of %d", i+1, nsubs))
	}
	pub := e.instance()
	ps := make([]string, nmsgs)
	for i := range ps {
		ps[i] = e.msg("fanout", i)
		e.publish(pub, ps[i])
	}
	e.waitAll(recs, ps, "fan-out is broadcast: every subscribed instance receives every message "+
		"(never a queue group or competing consumers)")
	for _, r := range recs {
		for _, p := range ps {
			if c := r.countOf(p); c > 1 {
				e.t.Logf("%s received %q %d times (duplicates are tolerated, but cost work)", r.name, p, c)
			}
		}
	}
}

// caseSubscribeThenPublish: a Publish that starts right after Subscribe
// returned is delivered, from a peer and from the subscriber itself.
// Repeated with fresh instances, because a transport that returns from
// Subscribe before its subscription is active loses the message only
// sometimes.
func (e *env) caseSubscribeThenPublish() {
	rounds := scaled(10, 3)
	for round := range rounds {
		ns := e.ns + "-" + strconv.Itoa(round)
		sub := e.instanceOn(ns)
		pub := e.instanceOn(ns)
		rec := e.recorder(fmt.Sprintf("subscriber (round %d)", round))
		e.subscribe(sub, rec)
		ps := []string{e.msg("peer", round), e.msg("self", round)}
		e.publish(pub, ps[0])
		e.publish(sub, ps[1])
		e.waitAll([]*recorder{rec}, ps, "Subscribe returns only once delivery is active: "+
			"a Publish that starts after it returned must reach the handler")
		for _, bp := range []core.Backplane{sub, pub} {
			if err := closeWithin(bp, e.bound); err != nil {
				e.t.Fatalf("Close: %v", err)
			}
		}
	}
}

// caseEcho: a subscribed publisher receives its own messages, as do its
// peers.
func (e *env) caseEcho() {
	self, selfRec := e.subscribed("publisher's own subscription")
	_, peerRec := e.subscribed("peer")
	ps := []string{e.msg("echo", 0), e.msg("echo", 1)}
	e.publish(self, ps...)
	e.waitAll([]*recorder{selfRec, peerRec}, ps, "a publisher's own messages are delivered to its own "+
		"subscription: the engine uses them as a liveness probe of its link")
}

// caseIsolation: instances on different namespaces never see each other's
// messages, including namespaces that extend or prefix each other.
func (e *env) caseIsolation() {
	names := []string{e.ns, e.ns + ".sub", e.ns + "-x", e.ns + "_x", e.ns[:len(e.ns)-1], "x" + e.ns}
	recs := make([]*recorder, len(names))
	pubs := make([]core.Backplane, len(names))
	for i, ns := range names {
		sub := e.instanceOn(ns)
		recs[i] = newRecorder(e.t, fmt.Sprintf("subscriber on namespace %q", ns), e.marker)
		e.subscribe(sub, recs[i])
		pubs[i] = e.instanceOn(ns)
	}
	for round := range 2 {
		for i := range names {
			e.publish(pubs[i], e.msg("ns"+strconv.Itoa(i), round))
		}
		for i := range names {
			e.waitAll(recs[i:i+1], []string{e.msg("ns"+strconv.Itoa(i), round)}, "")
		}
	}
	for i, r := range recs {
		own := e.marker + "ns" + strconv.Itoa(i) + ":"
		for _, p := range r.received() {
			if !strings.HasPrefix(p, own) {
				from := "another namespace"
				if j, err := strconv.Atoi(strings.TrimPrefix(strings.SplitN(p, ":", 2)[0], e.marker+"ns")); err == nil && j >= 0 && j < len(names) {
					from = fmt.Sprintf("namespace %q", names[j])
				}
				e.t.Errorf("%s received %q, published on %s", r.name, p, from)
			}
		}
		if s := r.strayReport(); s != "" {
			e.t.Errorf("%s received %s", r.name, s)
		}
	}
}

// casePayloadBinary: payloads are opaque bytes, delivered unchanged.
func (e *env) casePayloadBinary() {
	bp, rec := e.subscribed("subscriber")
	pub := e.instance()
	limit := bp.Limits().MaxPayload
	all := []byte(e.marker + "bin:")
	for i := range 256 {
		all = append(all, byte(i))
	}
	for i := 255; i >= 0; i-- {
		all = append(all, byte(i))
	}
	payloads := [][]byte{all}
	r := rand.New(rand.NewPCG(rand.Uint64(), 1))
	for i := range 5 {
		size := r.IntN(min(limit, 4096) + 1)
		p := []byte(e.msg("rnd", i) + ":")
		for range size {
			p = append(p, byte(r.UintN(256)))
		}
		payloads = append(payloads, p)
	}
	var want []string
	for _, p := range payloads {
		if len(p) > limit {
			continue
		}
		want = append(want, string(p))
		e.publishBytes(pub, p)
	}
	if len(want) == 0 {
		e.t.Skipf("Limits().MaxPayload = %d is too small for this case", limit)
	}
	e.waitAll([]*recorder{rec}, want, "payloads are opaque bytes and must arrive unchanged (all 256 byte values)")
}

// casePayloadEmpty: an empty payload (empty or nil slice) is delivered as
// an empty payload.
func (e *env) casePayloadEmpty() {
	_, rec := e.subscribed("subscriber")
	pub := e.instance()
	e.publishBytes(pub, []byte{})
	e.publishBytes(pub, nil)
	if !eventually(e.bound, func() bool { return rec.emptyCount() >= 2 }) {
		e.t.Fatalf("%s received %d of 2 empty payloads within %v", rec.name, rec.emptyCount(), e.bound)
	}
}

// casePayloadMax: a payload of exactly Limits().MaxPayload bytes is
// delivered unchanged.
func (e *env) casePayloadMax() {
	bp, rec := e.subscribed("subscriber")
	pub := e.instance()
	size := bp.Limits().MaxPayload
	if size > maxExactPayload {
		e.t.Logf("Limits().MaxPayload = %d is too large to send in a test; sending %d bytes instead", size, fallbackPayload)
		size = fallbackPayload
	}
	p := e.filled("max", size)
	if p == nil {
		e.t.Skipf("Limits().MaxPayload = %d is too small for this case", size)
	}
	e.publishBytes(pub, p)
	e.waitAll([]*recorder{rec}, []string{string(p)}, fmt.Sprintf("a payload of exactly MaxPayload (%d) bytes is delivered", size))
}

// filled returns a marked payload of exactly size bytes, or nil when the
// marker does not fit.
func (e *env) filled(tag string, size int) []byte {
	head := e.marker + tag + ":"
	if size < len(head) {
		return nil
	}
	p := make([]byte, size)
	copy(p, head)
	for i := len(head); i < size; i++ {
		p[i] = byte('a' + i%26)
	}
	return p
}

// casePayloadTooLarge: a payload of MaxPayload+1 bytes fails with
// ErrPayloadTooLarge, alone or among valid payloads of the same call, and
// nothing of that call is delivered.
func (e *env) casePayloadTooLarge() {
	pub, rec := e.subscribed("subscriber")
	limit := pub.Limits().MaxPayload
	if limit > maxOversizePayload {
		e.t.Skipf("Limits().MaxPayload = %d is too large to build a MaxPayload+1 payload in a test", limit)
	}
	over := e.filled("over", limit+1)
	if over == nil {
		e.t.Skipf("Limits().MaxPayload = %d is too small for this case", limit)
	}
	before, after := e.msg("before", 0), e.msg("after", 0)
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	if err := pub.Publish(ctx, over); !errors.Is(err, core.ErrPayloadTooLarge) {
		e.t.Errorf("Publish of MaxPayload+1 = %d bytes: error %v; want an error wrapping core.ErrPayloadTooLarge", len(over), err)
	}
	if err := pub.Publish(ctx, []byte(before), over, []byte(after)); !errors.Is(err, core.ErrPayloadTooLarge) {
		e.t.Errorf("Publish of [valid, MaxPayload+1 bytes, valid]: error %v; want an error wrapping core.ErrPayloadTooLarge", err)
	}
	e.fence(pub, rec)
	for _, p := range []string{string(over), before, after} {
		if rec.has(p) {
			e.t.Errorf("%q was delivered; a Publish that fails with ErrPayloadTooLarge sends nothing", shorten(p))
		}
	}
}

// caseMultiPayload: one Publish call with several payloads delivers all of
// them (in order, when the harness declares Ordered).
func (e *env) caseMultiPayload() {
	_, rec1 := e.subscribed("subscriber 1")
	_, rec2 := e.subscribed("subscriber 2")
	pub := e.instance()
	ps := make([]string, 10)
	for i := range ps {
		ps[i] = e.msg("multi", i)
	}
	e.publish(pub, ps...)
	e.waitAll([]*recorder{rec1, rec2}, ps, "Publish sends each payload of the call as one message")
	if e.h.Ordered {
		e.checkOrder(rec1, "multi")
		e.checkOrder(rec2, "multi")
	}
}

// caseIdenticalPayloads: identical payloads in one Publish call are
// separate messages; each arrives, at a peer and at the publisher itself.
// A transport may deliver a message more than once, so only too few
// copies fail the case.
func (e *env) caseIdenticalPayloads() {
	_, peer := e.subscribed("subscriber")
	pub, self := e.subscribed("publisher")
	const copies = 3
	p := e.fresh("same")
	ps := make([]string, copies)
	for i := range ps {
		ps[i] = p
	}
	e.publish(pub, ps...)
	for _, r := range []*recorder{peer, self} {
		if !eventually(e.bound, func() bool { return r.countOf(p) >= copies }) {
			e.t.Errorf("%s received %d of %d identical payloads published in one call within %v; "+
				"Publish sends each payload as one message, identical or not", r.name, r.countOf(p), copies, e.bound)
		}
	}
}

// caseNoPayloads: Publish with no payloads succeeds and sends nothing.
func (e *env) caseNoPayloads() {
	_, rec := e.subscribed("subscriber")
	pub := e.instance()
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	if err := pub.Publish(ctx); err != nil {
		e.t.Errorf("Publish with no payloads: %v; want nil", err)
	}
	e.fence(pub, rec)
	if c := rec.emptyCount(); c != 0 {
		e.t.Errorf("Publish with no payloads delivered %d empty payloads; want none", c)
	}
}

// caseConcurrentPublishers: several publishers publishing at once lose
// nothing, and every subscriber gets every message (in per-publisher
// order, when Ordered).
func (e *env) caseConcurrentPublishers() {
	npub, per := 4, scaled(200, 50)
	_, rec1 := e.subscribed("subscriber 1")
	_, rec2 := e.subscribed("subscriber 2")
	pubs := make([]core.Backplane, npub)
	for i := range pubs {
		pubs[i] = e.instance()
	}
	var want []string
	for p := range npub {
		for i := range per {
			want = append(want, e.msg("p"+strconv.Itoa(p), i))
		}
	}
	budget := max(30*time.Second, 10*e.bound)
	ctx, cancel := ctxFor(budget)
	defer cancel()
	errs := make(chan error, npub)
	var wg sync.WaitGroup
	for p, bp := range pubs {
		wg.Go(func() {
			for i := range per {
				if err := bp.Publish(ctx, []byte(e.msg("p"+strconv.Itoa(p), i))); err != nil {
					errs <- fmt.Errorf("publisher %d, message %d: %w", p, i, err)
					return
				}
			}
		})
	}
	if !waitGroupWithin(&wg, budget+e.bound) {
		e.t.Fatalf("%d publishers did not finish %d messages each within %v (Publish must honour its context)", npub, per, budget+e.bound)
	}
	close(errs)
	for err := range errs {
		e.t.Errorf("Publish: %v", err)
	}
	if e.t.Failed() {
		e.t.FailNow()
	}
	e.waitAll([]*recorder{rec1, rec2}, want, fmt.Sprintf("%d concurrent publishers x %d messages must all arrive", npub, per))
	if e.h.Ordered {
		for p := range npub {
			e.checkOrder(rec1, "p"+strconv.Itoa(p))
			e.checkOrder(rec2, "p"+strconv.Itoa(p))
		}
	}
}

// waitGroupWithin waits for wg at most d and reports whether it finished.
func waitGroupWithin(wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// casePerPublisherOrder: with h.Ordered, one publisher's messages arrive
// in publish order at every subscriber, its own included, whether sent one
// per call or several per call.
func (e *env) casePerPublisherOrder() {
	if !e.h.Ordered {
		e.t.Skip("harness does not declare Ordered")
	}
	pub, selfRec := e.subscribed("publisher's own subscription")
	_, rec := e.subscribed("subscriber")
	total := scaled(200, 50)
	var want []string
	for i := 0; i < total; {
		batch := min(1+i%5, total-i)
		ps := make([]string, batch)
		for j := range ps {
			ps[j] = e.msg("seq", i+j)
		}
		e.publish(pub, ps...)
		want = append(want, ps...)
		i += batch
	}
	e.waitAll([]*recorder{selfRec, rec}, want, "")
	e.checkOrder(selfRec, "seq")
	e.checkOrder(rec, "seq")
}

// caseSenderOrder: a transport that is a core.Sender delivers what Send
// sent in the order of the Send and Publish calls, while earlier confirms
// have not been waited for, and every confirm succeeds afterwards.
func (e *env) caseSenderOrder() {
	pub, selfRec := e.subscribed("publisher's own subscription")
	sender, ok := pub.(core.Sender)
	if !ok {
		e.t.Skip("transport is not a core.Sender")
	}
	_, rec := e.subscribed("subscriber")
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	total := scaled(100, 30)
	var want []string
	var confirms []func(context.Context) error
	for i := 0; i < total; {
		batch := min(1+i%3, total-i)
		ps := make([]string, batch)
		bs := make([][]byte, batch)
		for j := range ps {
			ps[j] = e.msg("send", i+j)
			bs[j] = []byte(ps[j])
		}
		if i%10 == 9 {
			e.publish(pub, ps...) // a Publish between Sends keeps its place
		} else {
			confirm, err := sender.Send(ctx, bs...)
			if err != nil {
				e.t.Fatalf("Send: %v", err)
			}
			confirms = append(confirms, confirm)
		}
		want = append(want, ps...)
		i += batch
	}
	e.waitAll([]*recorder{selfRec, rec}, want, "Send delivers without waiting for its confirm")
	for i, confirm := range confirms {
		if err := confirm(ctx); err != nil {
			e.t.Errorf("confirm of Send %d: %v", i, err)
		}
	}
	if e.h.Ordered {
		e.checkOrder(selfRec, "send")
		e.checkOrder(rec, "send")
	}
	if _, err := sender.Send(ctx, e.filled("send-too-large", pub.Limits().MaxPayload+1)); !errors.Is(err, core.ErrPayloadTooLarge) {
		e.t.Errorf("Send of a payload over MaxPayload: %v; want ErrPayloadTooLarge", err)
	}
	ended, end := context.WithCancel(context.Background())
	end()
	if _, err := sender.Send(ended, []byte(e.msg("send-cancelled", 0))); !errors.Is(err, context.Canceled) {
		e.t.Errorf("Send with a cancelled context: %v; want an error wrapping context.Canceled", err)
	}
}

// caseCancelledContext: Publish with an already cancelled or expired
// context fails with an error wrapping the context's error and sends
// nothing. A transport can always keep this promise by checking ctx before
// it sends anything.
func (e *env) caseCancelledContext() {
	_, rec := e.subscribed("subscriber")
	pub := e.instance()
	cases := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"canceled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline-exceeded", func() (context.Context, context.CancelFunc) {
			return context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		}, context.DeadlineExceeded},
	}
	// Twice: once on a fresh publisher, once on one that has published.
	for round := range 2 {
		for _, c := range cases {
			p := e.msg(c.name, round)
			ctx, cancel := c.ctx()
			err := pub.Publish(ctx, []byte(p))
			cancel()
			if !errors.Is(err, c.want) {
				e.t.Errorf("Publish with a %s context (round %d): error %v; want an error wrapping %v", c.name, round, err, c.want)
			}
			e.fence(pub, rec)
			if rec.has(p) {
				e.t.Errorf("Publish with a %s context (round %d) delivered its payload; it must send nothing", c.name, round)
			}
		}
	}
}

// caseContextWhilePublishWaits (needs h.Stall): while one Publish of an
// instance waits for a broker that does not answer, later Publish calls of
// the same instance still end with their contexts. The first Publish gets
// a long context and must still be waiting when each later one returns
// with an error wrapping context.DeadlineExceeded; the deadlines are only
// safety bounds, what is checked is that order. Several later calls are
// made one after another, so that one of them comes after the first has
// taken whatever the transport serialises its calls on.
func (e *env) caseContextWhilePublishWaits() {
	if e.h.Stall == nil {
		e.t.Skip("the harness cannot stall an instance's link (BackplaneHarness.Stall is nil)")
	}
	_, rec := e.subscribed("subscriber")
	pub := e.instance()
	// Connected and published once, so that the stall holds an
	// established link.
	e.publish(pub, e.fresh("before"))
	resume := e.h.Stall(e.t, pub)
	var once sync.Once
	unstall := func() { once.Do(resume) }
	defer unstall()

	ctxA, cancelA := ctxFor(e.recoverBound())
	defer cancelA()
	first := e.fresh("first")
	doneA := make(chan error, 1)
	go func() { doneA <- pub.Publish(ctxA, []byte(first)) }()

	short := min(e.bound/10, 200*time.Millisecond)
	for i := range 3 {
		ctxB, cancelB := context.WithTimeout(context.Background(), short)
		doneB := make(chan error, 1)
		go func() { doneB <- pub.Publish(ctxB, []byte(e.fresh("later"))) }()
		var err error
		select {
		case err = <-doneB:
		case err = <-doneA:
			cancelB()
			e.t.Fatalf("the first Publish returned (%v) while the harness stalled the link; "+
				"the harness's Stall must hold Publish until it is lifted", err)
		case <-time.After(short + e.bound):
			cancelB()
			e.t.Fatalf("Publish #%d with a %v context did not return within %v while another Publish of the instance waited; "+
				"Publish honours its context also while another call holds the connection", i+2, short, short+e.bound)
		}
		cancelB()
		if !errors.Is(err, context.DeadlineExceeded) {
			e.t.Errorf("Publish #%d with a %v context while the link was stalled: error %v; want an error wrapping context.DeadlineExceeded",
				i+2, short, err)
		}
		select {
		case err := <-doneA:
			e.t.Fatalf("the first Publish returned (%v) while the harness stalled the link; "+
				"the harness's Stall must hold Publish until it is lifted", err)
		default:
		}
	}
	unstall()
	select {
	case err := <-doneA:
		if err != nil {
			e.t.Logf("the first Publish failed after the stall was lifted: %v", err)
		}
	case <-time.After(e.recoverBound() + e.bound):
		e.t.Fatalf("the first Publish did not return within %v after the stall was lifted (its context ended by then)", e.recoverBound()+e.bound)
	}
	e.publishUntil(pub, "after", e.recoverBound(), rec)
}

// caseSubscribeTwice: a second Subscribe fails with ErrAlreadySubscribed,
// never calls the second handler, and leaves the first subscription
// working.
func (e *env) caseSubscribeTwice() {
	bp, rec := e.subscribed("first handler")
	second := e.recorder("second handler")
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	if err := subscribeSafely(ctx, bp, second); !errors.Is(err, core.ErrAlreadySubscribed) {
		e.t.Errorf("second Subscribe: error %v; want an error wrapping core.ErrAlreadySubscribed", err)
	}
	pub := e.instance()
	e.fence(pub, rec)
	if c := second.calls.Load(); c != 0 {
		e.t.Errorf("the handler of the failed second Subscribe was called %d times", c)
	}
}

// caseSubscribeContextEnds: the context given to Subscribe bounds the
// setup only; delivery goes on after it is cancelled.
func (e *env) caseSubscribeContextEnds() {
	sub := e.instance()
	rec := e.recorder("subscriber")
	ctx, cancel := context.WithCancel(context.Background())
	if err := subscribeSafely(ctx, sub, rec); err != nil {
		cancel()
		e.t.Fatalf("Subscribe: %v", err)
	}
	cancel()
	pub := e.instance()
	ps := make([]string, 3)
	for i := range ps {
		ps[i] = e.msg("after-cancel", i)
		e.publish(pub, ps[i])
	}
	e.waitAll([]*recorder{rec}, ps, "Subscribe's context bounds the subscription setup only: "+
		"delivery goes on after it ends")
}

// caseConnectedEvent: EventConnected fires exactly once after Subscribe,
// first, with a time; a healthy connection reports nothing else.
func (e *env) caseConnectedEvent() {
	_, rec := e.subscribed("subscriber")
	if !eventually(e.bound, func() bool { return rec.eventCount(core.EventConnected) > 0 }) {
		e.t.Fatalf("no EventConnected within %v after Subscribe returned", e.bound)
	}
	e.fence(e.instance(), rec)
	kinds := rec.eventKinds()
	if len(kinds) != 1 || kinds[0] != core.EventConnected {
		e.t.Errorf("events of a healthy subscription: %v; want exactly [connected]", kinds)
	}
	rec.mu.Lock()
	ev := rec.events[0]
	rec.mu.Unlock()
	if ev.Time.IsZero() {
		e.t.Errorf("EventConnected has a zero Time; want when the transport observed it")
	}
}

// caseClose: Close is idempotent (also when called concurrently); after
// it, Publish and Subscribe fail with ErrClosed. A second Close returns
// nil or an error wrapping ErrClosed.
func (e *env) caseClose() {
	ctx, cancel := ctxFor(e.bound)
	defer cancel()
	check := func(what string, bp core.Backplane) {
		e.t.Helper()
		if err := closeWithin(bp, e.bound); err != nil && !errors.Is(err, core.ErrClosed) {
			e.t.Errorf("%s: second Close: %v; want nil or an error wrapping core.ErrClosed", what, err)
		}
		if err := bp.Publish(ctx, []byte(e.fresh("closed"))); !errors.Is(err, core.ErrClosed) {
			e.t.Errorf("%s: Publish after Close: error %v; want an error wrapping core.ErrClosed", what, err)
		}
		if err := subscribeSafely(ctx, bp, e.recorder("late handler")); !errors.Is(err, core.ErrClosed) {
			e.t.Errorf("%s: Subscribe after Close: error %v; want an error wrapping core.ErrClosed", what, err)
		}
		_ = bp.Limits() // must not panic
	}

	fresh := e.instance()
	if err := closeWithin(fresh, e.bound); err != nil {
		e.t.Errorf("Close of a never subscribed instance: %v", err)
	}
	check("never subscribed instance", fresh)

	used := e.instance()
	e.publish(used, e.fresh("used"))
	if err := closeWithin(used, e.bound); err != nil {
		e.t.Errorf("Close of a publishing instance: %v", err)
	}
	check("publishing instance", used)

	sub, _ := e.subscribed("subscriber")
	const closers = 4
	errs := make(chan error, closers)
	var wg sync.WaitGroup
	for range closers {
		wg.Go(func() { errs <- sub.Close() })
	}
	if !waitGroupWithin(&wg, e.bound) {
		e.t.Fatalf("%d concurrent Close calls did not return within %v", closers, e.bound)
	}
	close(errs)
	nils := 0
	for err := range errs {
		switch {
		case err == nil:
			nils++
		case !errors.Is(err, core.ErrClosed):
			e.t.Errorf("concurrent Close: %v; want nil or an error wrapping core.ErrClosed", err)
		}
	}
	if nils == 0 {
		e.t.Errorf("none of %d concurrent Close calls returned nil", closers)
	}
	check("subscribed instance", sub)
}

// caseNoHandlerAfterClose: once Close returned, the handler is not called
// again, while peers keep publishing.
func (e *env) caseNoHandlerAfterClose() {
	var closed atomic.Bool
	var after atomic.Int64
	victim := e.instance()
	vrec := e.recorder("closed subscriber")
	vrec.onMessage = func([]byte) {
		if closed.Load() {
			after.Add(1)
		}
	}
	vrec.onEvent = func(core.Event) {
		if closed.Load() {
			after.Add(1)
		}
	}
	e.subscribe(victim, vrec)
	_, witness := e.subscribed("witness subscriber")
	pub := e.instance()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(publishInterval)
		defer tick.Stop()
		for i := 0; ; i++ {
			ctx, cancel := ctxFor(e.bound)
			_ = pub.Publish(ctx, []byte(e.msg("run", i)))
			cancel()
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	defer func() {
		close(stop)
		if !waitGroupWithin(&wg, 2*e.bound) {
			e.t.Errorf("publisher did not stop within %v (Publish must honour its context)", 2*e.bound)
		}
	}()
	prefix := e.marker + "run:"
	if !eventually(e.bound, func() bool { return vrec.hasPrefix(prefix) }) {
		e.t.Fatalf("%s received nothing within %v", vrec.name, e.bound)
	}
	if err := closeWithin(victim, e.bound); err != nil {
		e.t.Fatalf("Close while messages arrive: %v", err)
	}
	closed.Store(true)
	mark := witness.countPrefix(prefix)
	const more = 20
	if !eventually(e.bound, func() bool { return witness.countPrefix(prefix) >= mark+more }) {
		e.t.Fatalf("%s received %d of %d further messages within %v", witness.name, witness.countPrefix(prefix)-mark, more, e.bound)
	}
	if c := after.Load(); c > 0 {
		e.t.Errorf("the handler was called %d times after Close returned; want none", c)
	}
}

// blockFirst makes rec's first message call block until releaseHandler is
// called (at the latest when the test ends); entered closes when it starts.
func (e *env) blockFirst(rec *recorder) (entered chan struct{}, releaseHandler func()) {
	entered = make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	releaseHandler = func() { once.Do(func() { close(release) }) }
	e.t.Cleanup(releaseHandler)
	var first atomic.Bool
	rec.onMessage = func([]byte) {
		if first.CompareAndSwap(false, true) {
			close(entered)
			<-release
		}
	}
	return entered, releaseHandler
}

// caseCloseDuringHandler: Close called while a handler call is running
// waits for that call to return (after Close returns, no handler call
// happens, including one that started before), then returns. The case
// cannot deadlock the suite: Close runs in its own goroutine, the handler
// is always released, and both waits have deadlines.
func (e *env) caseCloseDuringHandler() {
	sub := e.instance()
	rec := e.recorder("blocked subscriber")
	entered, releaseHandler := e.blockFirst(rec)
	e.subscribe(sub, rec)
	e.publish(e.instance(), e.msg("block", 0))
	select {
	case <-entered:
	case <-time.After(e.bound):
		e.t.Fatalf("no message reached the handler within %v", e.bound)
	}
	closeDone := make(chan error, 1)
	go func() { closeDone <- sub.Close() }()
	// Observe for a moment that Close does not return under a running
	// handler. This window can only miss a violation, never invent one.
	window := min(e.bound/10, 200*time.Millisecond)
	select {
	case err := <-closeDone:
		e.t.Errorf("Close returned (error %v) while a handler call was still running; "+
			"Close must wait for running handler calls", err)
		releaseHandler()
		return
	case <-time.After(window):
	}
	releaseHandler()
	select {
	case err := <-closeDone:
		if err != nil {
			e.t.Errorf("Close: %v", err)
		}
	case <-time.After(e.bound):
		e.t.Errorf("Close did not return within %v after the running handler call returned", e.bound)
	}
}

// casePanickingHandler: a handler that panics (in HandleMessage or in
// HandleEvent) does not end the subscription: later messages arrive.
func (e *env) casePanickingHandler() {
	e.t.Run("Message", func(t *testing.T) {
		t.Parallel()
		e := e.sub(t)
		sub := e.instance()
		rec := e.recorder("panicking subscriber")
		var panicked atomic.Bool
		rec.onMessage = func([]byte) {
			if panicked.CompareAndSwap(false, true) {
				panic("conformance: deliberate panic in HandleMessage")
			}
		}
		e.subscribe(sub, rec)
		pub := e.instance()
		e.publish(pub, e.msg("boom", 0))
		if !eventually(e.bound, panicked.Load) {
			e.t.Fatalf("no message reached the handler within %v", e.bound)
		}
		after := []string{e.msg("after", 0), e.msg("after", 1)}
		e.publish(pub, after...)
		e.waitAll([]*recorder{rec}, after, "a transport recovers a panicking handler and keeps delivering")
	})
	e.t.Run("Event", func(t *testing.T) {
		t.Parallel()
		e := e.sub(t)
		sub := e.instance()
		rec := e.recorder("panicking subscriber")
		var panicked atomic.Bool
		rec.onEvent = func(core.Event) {
			if panicked.CompareAndSwap(false, true) {
				panic("conformance: deliberate panic in HandleEvent")
			}
		}
		e.subscribe(sub, rec)
		pub := e.instance()
		ps := []string{e.msg("after", 0), e.msg("after", 1)}
		e.publish(pub, ps...)
		e.waitAll([]*recorder{rec}, ps, "a transport recovers a panicking handler and keeps delivering")
	})
}

// sub returns an environment for subtest t of e's case, on a namespace of
// its own.
func (e *env) sub(t *testing.T) *env {
	return &env{t: t, h: e.h, ns: newNamespace(t), marker: newMarker(t), bound: e.bound}
}

// caseSlowHandler: a handler that blocks for a while does not end the
// subscription. The transport may drop messages meanwhile (and report
// EventLoss) and Publish may fail or wait meanwhile, but once the handler
// is fast again, delivery resumes.
func (e *env) caseSlowHandler() {
	sub := e.instance()
	rec := e.recorder("slow subscriber")
	entered, releaseHandler := e.blockFirst(rec)
	e.subscribe(sub, rec)
	pub := e.instance()
	e.publish(pub, e.msg("slow", 0))
	select {
	case <-entered:
	case <-time.After(e.bound):
		e.t.Fatalf("no message reached the handler within %v", e.bound)
	}
	// While the handler is blocked, publish a burst.
	burst := scaled(200, 50)
	ctx, cancel := ctxFor(e.bound)
	var failed atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= burst && ctx.Err() == nil; i++ {
			if err := pub.Publish(ctx, []byte(e.msg("slow", i))); err != nil {
				failed.Add(1)
			}
		}
	})
	ok := waitGroupWithin(&wg, 2*e.bound)
	cancel()
	if !ok {
		e.t.Errorf("Publish did not honour its context while a subscriber's handler was blocked")
	}
	if f := failed.Load(); f > 0 {
		e.t.Logf("%d of %d publishes failed while a subscriber's handler was blocked", f, burst)
	}
	releaseHandler()
	e.publishUntil(pub, "resumed", e.recoverBound(), rec)
	if got := rec.countPrefix(e.marker + "slow:"); got < burst+1 {
		e.t.Logf("the slow subscriber received %d of %d messages of the burst (loss under a slow handler is allowed; EventLoss: %d)",
			got, burst+1, rec.eventCount(core.EventLoss))
	}
}

// caseDisconnect (needs h.Disconnect): after the harness cuts an
// instance's connection, the instance reports EventDisconnected, then
// EventReconnected, and delivery to and from it resumes.
func (e *env) caseDisconnect() {
	if e.h.Disconnect == nil {
		e.t.Skip("harness has no Disconnect")
	}
	a, recA := e.subscribed("disconnected subscriber")
	b, recB := e.subscribed("peer")
	if !eventually(e.bound, func() bool { return recA.eventCount(core.EventConnected) > 0 }) {
		e.t.Fatalf("no EventConnected within %v after Subscribe returned", e.bound)
	}
	e.h.Disconnect(e.t, a)
	e.expectRecovery(recA)
	e.publishUntil(b, "to-disconnected", e.recoverBound(), recA)
	e.publishUntil(a, "from-disconnected", e.recoverBound(), recA, recB)
	if c := recA.eventCount(core.EventConnected); c != 1 {
		e.t.Errorf("%s reported EventConnected %d times; want once (a reconnect is EventReconnected)", recA.name, c)
	}
}

// expectRecovery waits for EventDisconnected followed by EventReconnected
// on rec.
func (e *env) expectRecovery(rec *recorder) {
	e.t.Helper()
	var d int
	if !eventually(e.recoverBound(), func() bool {
		d = rec.indexAfter(core.EventDisconnected, 0)
		return d >= 0
	}) {
		e.t.Fatalf("%s: no EventDisconnected within %v (events: %v)", rec.name, e.recoverBound(), rec.eventKinds())
	}
	if !eventually(e.recoverBound(), func() bool { return rec.indexAfter(core.EventReconnected, d+1) >= 0 }) {
		e.t.Fatalf("%s: no EventReconnected after EventDisconnected within %v (events: %v)", rec.name, e.recoverBound(), rec.eventKinds())
	}
}

// caseBrokerRestart (needs h.RestartBroker; runs alone): across a broker
// restart, subscribers report EventDisconnected then EventReconnected and
// delivery resumes in every direction; publishers running during the
// restart get errors or success, and return within their context.
func (e *env) caseBrokerRestart() {
	if e.h.RestartBroker == nil {
		e.t.Skip("harness has no RestartBroker")
	}
	a, recA := e.subscribed("subscriber A")
	b, recB := e.subscribed("subscriber B")
	e.fence(e.instance(), recA, recB)

	stop := make(chan struct{})
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	for i, bp := range []core.Backplane{a, b} {
		wg.Go(func() {
			tick := time.NewTicker(publishInterval)
			defer tick.Stop()
			for j := 0; ; j++ {
				ctx, cancel := ctxFor(e.bound)
				if err := bp.Publish(ctx, []byte(e.msg("during"+strconv.Itoa(i), j))); err != nil {
					failed.Add(1)
				} else {
					ok.Add(1)
				}
				cancel()
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	stopped := false
	stopPublishers := func() {
		if stopped {
			return
		}
		stopped = true
		close(stop)
		if !waitGroupWithin(&wg, 2*e.bound) {
			e.t.Errorf("publishers did not stop within %v after the restart (Publish must honour its context)", 2*e.bound)
		}
	}
	defer stopPublishers()

	e.h.RestartBroker(e.t)
	e.expectRecovery(recA)
	e.expectRecovery(recB)
	e.publishUntil(a, "a-after", e.recoverBound(), recA, recB)
	e.publishUntil(b, "b-after", e.recoverBound(), recA, recB)
	stopPublishers()
	e.t.Logf("publishes during the restart: %d succeeded, %d failed", ok.Load(), failed.Load())
	for _, r := range []*recorder{recA, recB} {
		if c := r.eventCount(core.EventConnected); c != 1 {
			e.t.Errorf("%s reported EventConnected %d times; want once (a reconnect is EventReconnected)", r.name, c)
		}
	}
}

// countOf returns how many times p was received.
func (r *recorder) countOf(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[p]
}
