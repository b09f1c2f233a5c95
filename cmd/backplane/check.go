package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
)

// checkCase is one check. Every case runs on namespaces of its own, so the
// checks are safe on a shared production broker: they never fault the
// broker or touch anyone else's namespace.
type checkCase struct {
	name string
	what string
	run  func(ctx context.Context, k *checker) error
}

var checkCases = []checkCase{
	{"subscribe", "a subscription becomes active", caseSubscribe},
	{"delivery", "a published message reaches a subscriber", caseDelivery},
	{"fan-out", "every one of three subscribers receives every message", caseFanOut},
	{"echo", "a subscriber receives its own messages (the engine's liveness probe)", caseEcho},
	{"isolation", "namespaces do not see each other's messages", caseIsolation},
	{"binary-payload", "all 256 byte values arrive unchanged", caseBinary},
	{"max-payload", "a payload of the transport's limit arrives unchanged", caseMaxPayload},
	{"too-large", "a payload over the limit fails with ErrPayloadTooLarge, nothing sent", caseTooLarge},
	{"batch-order", "one Publish of several payloads delivers all, in order", caseBatchOrder},
	{"publisher-order", "200 messages of one publisher arrive in order", casePublisherOrder},
	{"cancelled-context", "Publish with a cancelled context fails", caseCancelled},
	{"subscribe-twice", "a second Subscribe fails with ErrAlreadySubscribed", caseSubscribeTwice},
	{"close", "after Close, Publish fails with ErrClosed; Close is idempotent", caseClose},
	{"canary", "engine round trip: an Invalidate on one instance evicts the key on another", caseCanary},
	{"canary-clear", "engine round trip: a Clear on one instance empties another", caseCanaryClear},
}

type checker struct {
	g      *globals
	url    string
	prefix string
	bound  time.Duration
	mu     sync.Mutex
	closer []func()
}

// ns returns a fresh namespace for the case.
func (k *checker) ns(tag string) string { return k.prefix + tag + "-" + randomNamespace("") }

func (k *checker) open(ctx context.Context, ns string) (core.Backplane, error) {
	bp, err := k.g.openBackplane(ctx, k.url, ns)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	k.closer = append(k.closer, func() { _ = bp.Close() })
	k.mu.Unlock()
	return bp, nil
}

func (k *checker) closeAll() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, c := range k.closer {
		c()
	}
	k.closer = nil
}

// recorder keeps what a subscription received.
type recorder struct {
	mu     sync.Mutex
	msgs   [][]byte
	events []core.EventKind
	notify chan struct{}
}

func newRecorder() *recorder { return &recorder{notify: make(chan struct{}, 1)} }

func (r *recorder) HandleMessage(p []byte) {
	r.mu.Lock()
	r.msgs = append(r.msgs, bytes.Clone(p))
	r.mu.Unlock()
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) HandleEvent(ev core.Event) {
	r.mu.Lock()
	r.events = append(r.events, ev.Kind)
	r.mu.Unlock()
}

func (r *recorder) snapshot() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.msgs...)
}

// waitFor polls until cond holds or bound passes.
func (k *checker) waitFor(ctx context.Context, cond func() bool) bool {
	deadline := time.Now().Add(k.bound)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return cond()
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func (k *checker) subscribed(ctx context.Context, ns string) (core.Backplane, *recorder, error) {
	bp, err := k.open(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	rec := newRecorder()
	if err := k.g.subscribe(ctx, k.url, bp, rec); err != nil {
		return nil, nil, err
	}
	return bp, rec, nil
}

// pair returns a subscribed instance's recorder and a publisher on a fresh
// namespace.
func (k *checker) pair(ctx context.Context, tag string) (pub core.Backplane, rec *recorder, err error) {
	ns := k.ns(tag)
	if _, rec, err = k.subscribed(ctx, ns); err != nil {
		return nil, nil, err
	}
	if pub, err = k.open(ctx, ns); err != nil {
		return nil, nil, err
	}
	return pub, rec, nil
}

func (k *checker) publish(ctx context.Context, bp core.Backplane, payloads ...[]byte) error {
	ctx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	if err := bp.Publish(ctx, payloads...); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	return nil
}

// expect waits until rec received every payload of want.
func (k *checker) expect(ctx context.Context, rec *recorder, who string, want ...[]byte) error {
	has := func() int {
		got := rec.snapshot()
		n := 0
		for _, w := range want {
			for _, g := range got {
				if bytes.Equal(g, w) {
					n++
					break
				}
			}
		}
		return n
	}
	if !k.waitFor(ctx, func() bool { return has() == len(want) }) {
		return fmt.Errorf("%s received %d of %d messages within %v", who, has(), len(want), k.bound)
	}
	return nil
}

func caseSubscribe(ctx context.Context, k *checker) error {
	_, _, err := k.subscribed(ctx, k.ns("subscribe"))
	return err
}

func caseDelivery(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "delivery")
	if err != nil {
		return err
	}
	msg := []byte("delivery " + randomNamespace(""))
	if err := k.publish(ctx, pub, msg); err != nil {
		return err
	}
	return k.expect(ctx, rec, "the subscriber", msg)
}

func caseFanOut(ctx context.Context, k *checker) error {
	ns := k.ns("fanout")
	var recs []*recorder
	for range 3 {
		_, rec, err := k.subscribed(ctx, ns)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	pub, err := k.open(ctx, ns)
	if err != nil {
		return err
	}
	var msgs [][]byte
	for i := range 5 {
		msgs = append(msgs, []byte("fan-out "+strconv.Itoa(i)))
	}
	if err := k.publish(ctx, pub, msgs...); err != nil {
		return err
	}
	for i, rec := range recs {
		if err := k.expect(ctx, rec, fmt.Sprintf("subscriber %d", i+1), msgs...); err != nil {
			return fmt.Errorf("%w (a queue group or competing consumer instead of broadcast?)", err)
		}
	}
	return nil
}

func caseEcho(ctx context.Context, k *checker) error {
	bp, rec, err := k.subscribed(ctx, k.ns("echo"))
	if err != nil {
		return err
	}
	msg := []byte("echo")
	if err := k.publish(ctx, bp, msg); err != nil {
		return err
	}
	return k.expect(ctx, rec, "the publishing subscriber", msg)
}

func caseIsolation(ctx context.Context, k *checker) error {
	nsA, nsB := k.ns("iso-a"), k.ns("iso-b")
	_, recA, err := k.subscribed(ctx, nsA)
	if err != nil {
		return err
	}
	_, recB, err := k.subscribed(ctx, nsB)
	if err != nil {
		return err
	}
	pubA, err := k.open(ctx, nsA)
	if err != nil {
		return err
	}
	pubB, err := k.open(ctx, nsB)
	if err != nil {
		return err
	}
	a, b := []byte("for A"), []byte("for B")
	if err := k.publish(ctx, pubA, a); err != nil {
		return err
	}
	if err := k.publish(ctx, pubB, b); err != nil {
		return err
	}
	// B's own message arriving bounds how long A's could take.
	if err := k.expect(ctx, recA, "namespace A's subscriber", a); err != nil {
		return err
	}
	if err := k.expect(ctx, recB, "namespace B's subscriber", b); err != nil {
		return err
	}
	for _, m := range recB.snapshot() {
		if bytes.Equal(m, a) {
			return errors.New("namespace B received namespace A's message")
		}
	}
	for _, m := range recA.snapshot() {
		if bytes.Equal(m, b) {
			return errors.New("namespace A received namespace B's message")
		}
	}
	return nil
}

func caseBinary(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "binary")
	if err != nil {
		return err
	}
	msg := make([]byte, 0, 512)
	for i := range 256 {
		msg = append(msg, byte(i))
	}
	for i := 255; i >= 0; i-- {
		msg = append(msg, byte(i))
	}
	if err := k.publish(ctx, pub, msg); err != nil {
		return err
	}
	return k.expect(ctx, rec, "the subscriber", msg)
}

// filled returns a payload of size bytes with a recognisable pattern.
func filled(tag string, size int) []byte {
	p := bytes.Repeat([]byte{0}, size)
	for i := range p {
		p[i] = byte(i*7 + 3)
	}
	copy(p, tag)
	return p
}

// maxCheckedPayload caps the payload the check sends, so that it stays
// polite on a shared broker.
const maxCheckedPayload = 8 << 20

func caseMaxPayload(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "max")
	if err != nil {
		return err
	}
	size := pub.Limits().MaxPayload
	if size <= 0 {
		return fmt.Errorf("the transport reports a payload limit of %d", size)
	}
	if size > maxCheckedPayload {
		size = maxCheckedPayload
	}
	msg := filled("max", size)
	if err := k.publish(ctx, pub, msg); err != nil {
		return fmt.Errorf("a %d-byte payload (the limit the transport reports): %w; is the broker's own limit lower (NATS max_payload, Redis proto-max-bulk-len)?", size, err)
	}
	return k.expect(ctx, rec, "the subscriber", msg)
}

func caseTooLarge(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "large")
	if err != nil {
		return err
	}
	size := pub.Limits().MaxPayload
	pctx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	small := []byte("before the large one")
	err = pub.Publish(pctx, small, make([]byte, size+1))
	if !errors.Is(err, core.ErrPayloadTooLarge) {
		return fmt.Errorf("Publish of %d bytes (limit %d) returned %v, want ErrPayloadTooLarge", size+1, size, err)
	}
	// Nothing of the rejected call may be sent: publish a marker and make
	// sure it is the first thing that arrives.
	marker := []byte("marker")
	if err := k.publish(ctx, pub, marker); err != nil {
		return err
	}
	if err := k.expect(ctx, rec, "the subscriber", marker); err != nil {
		return err
	}
	for _, m := range rec.snapshot() {
		if bytes.Equal(m, small) {
			return errors.New("part of a rejected Publish call was sent")
		}
	}
	return nil
}

func inOrder(got [][]byte, want [][]byte) error {
	if len(got) < len(want) {
		return fmt.Errorf("received %d of %d messages", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			return fmt.Errorf("message %d is %q, want %q (out of order or lost)", i, got[i], want[i])
		}
	}
	return nil
}

func caseBatchOrder(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "batch")
	if err != nil {
		return err
	}
	var msgs [][]byte
	for i := range 50 {
		msgs = append(msgs, []byte("batch "+strconv.Itoa(i)))
	}
	if err := k.publish(ctx, pub, msgs...); err != nil {
		return err
	}
	if !k.waitFor(ctx, func() bool { return len(rec.snapshot()) >= len(msgs) }) {
		return fmt.Errorf("received %d of %d messages within %v", len(rec.snapshot()), len(msgs), k.bound)
	}
	return inOrder(rec.snapshot(), msgs)
}

func casePublisherOrder(ctx context.Context, k *checker) error {
	pub, rec, err := k.pair(ctx, "order")
	if err != nil {
		return err
	}
	var msgs [][]byte
	for i := range 200 {
		m := []byte("order " + strconv.Itoa(i))
		msgs = append(msgs, m)
		if err := k.publish(ctx, pub, m); err != nil {
			return err
		}
	}
	if !k.waitFor(ctx, func() bool { return len(rec.snapshot()) >= len(msgs) }) {
		return fmt.Errorf("received %d of %d messages within %v", len(rec.snapshot()), len(msgs), k.bound)
	}
	return inOrder(rec.snapshot(), msgs)
}

func caseCancelled(ctx context.Context, k *checker) error {
	pub, err := k.open(ctx, k.ns("cancel"))
	if err != nil {
		return err
	}
	// Connect first, so that the failure is the context's, not a dial's.
	if err := k.publish(ctx, pub, []byte("warm up")); err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := pub.Publish(cctx, []byte("never")); err == nil {
		return errors.New("Publish with a cancelled context succeeded")
	}
	return nil
}

func caseSubscribeTwice(ctx context.Context, k *checker) error {
	bp, _, err := k.subscribed(ctx, k.ns("twice"))
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	if err := bp.Subscribe(sctx, newRecorder()); !errors.Is(err, core.ErrAlreadySubscribed) {
		return fmt.Errorf("second Subscribe returned %v, want ErrAlreadySubscribed", err)
	}
	return nil
}

func caseClose(ctx context.Context, k *checker) error {
	bp, _, err := k.subscribed(ctx, k.ns("close"))
	if err != nil {
		return err
	}
	if err := bp.Close(); err != nil {
		return fmt.Errorf("Close: %w", err)
	}
	if err := bp.Close(); err != nil {
		return fmt.Errorf("second Close: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	if err := bp.Publish(pctx, []byte("after close")); !errors.Is(err, core.ErrClosed) {
		return fmt.Errorf("Publish after Close returned %v, want ErrClosed", err)
	}
	return nil
}

// canary opens two engines on a fresh namespace.
func (k *checker) canary(ctx context.Context, tag string) (a, b *core.Cache, err error) {
	ns := k.ns(tag)
	for _, c := range []**core.Cache{&a, &b} {
		*c, err = k.g.openCache(ctx, k.url, ns, nil)
		if err != nil {
			return nil, nil, err
		}
		cc := *c
		k.mu.Lock()
		k.closer = append(k.closer, func() { _ = cc.Close() })
		k.mu.Unlock()
	}
	return a, b, nil
}

func caseCanary(ctx context.Context, k *checker) error {
	a, b, err := k.canary(ctx, "canary")
	if err != nil {
		return err
	}
	load := func(context.Context) ([]byte, error) { return []byte("v1"), nil }
	if _, err := b.GetOrLoad(ctx, "canary:key", load); err != nil {
		return err
	}
	if _, ok := b.Get("canary:key"); !ok {
		return errors.New("instance B did not cache the key (degraded link?)")
	}
	ictx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	if err := a.Invalidate(ictx, "canary:key"); err != nil {
		return fmt.Errorf("Invalidate on instance A: %w", err)
	}
	if !k.waitFor(ctx, func() bool { _, ok := b.Get("canary:key"); return !ok }) {
		return fmt.Errorf("instance B still serves the key %v after instance A's Invalidate returned", k.bound)
	}
	// The engine counts an eviction just after doing it: wait for the count.
	if !k.waitFor(ctx, func() bool { return b.Stats().KeysEvicted > 0 }) {
		return errors.New("instance B's key went away, but not by A's invalidation (TTL or flush?)")
	}
	return nil
}

func caseCanaryClear(ctx context.Context, k *checker) error {
	a, b, err := k.canary(ctx, "canary-clear")
	if err != nil {
		return err
	}
	for i := range 3 {
		if err := b.Set("k"+strconv.Itoa(i), []byte("v")); err != nil {
			return err
		}
	}
	cctx, cancel := context.WithTimeout(ctx, k.g.timeout)
	defer cancel()
	if err := a.Clear(cctx); err != nil {
		return fmt.Errorf("Clear on instance A: %w", err)
	}
	if !k.waitFor(ctx, func() bool {
		for i := range 3 {
			if _, ok := b.Get("k" + strconv.Itoa(i)); ok {
				return false
			}
		}
		return true
	}) {
		return fmt.Errorf("instance B still has entries %v after instance A's Clear returned", k.bound)
	}
	return nil
}

// logCase checks a durable mode's log: what was published before a
// subscriber opened with replay=true is delivered to it, in order. It runs
// when the transport says it is Durable.
var logCase = checkCase{"log", "the broker keeps a durable mode's log: a replaying subscriber reads what was published before it came",
	func(ctx context.Context, k *checker) error {
		ns := k.ns("log")
		pub, err := k.open(ctx, ns)
		if err != nil {
			return err
		}
		if err := k.g.subscribe(ctx, k.url, pub, core.HandlerFuncs{}); err != nil {
			return err
		}
		want := [][]byte{[]byte("log-1"), []byte("log-2"), []byte("log-3")}
		if err := k.publish(ctx, pub, want...); err != nil {
			return err
		}
		u, err := url.Parse(k.url)
		if err != nil {
			return err
		}
		q := u.Query()
		q.Set("replay", "true")
		u.RawQuery = q.Encode()
		replay := &checker{g: k.g, url: u.String(), prefix: k.prefix, bound: k.bound}
		defer replay.closeAll()
		_, rec, err := replay.subscribed(ctx, ns)
		if err != nil {
			return fmt.Errorf("subscriber with replay=true: %w", err)
		}
		if err := k.expect(ctx, rec, "the replaying subscriber", want...); err != nil {
			return err
		}
		return inOrder(rec.snapshot(), want)
	}}

// fleetCase listens on an application's namespace (check --namespace) with
// an engine, and fails if it rejects messages: peers it cannot hear.
func fleetCase(ns string, listen time.Duration) checkCase {
	return checkCase{"fleet", "an engine on the namespace hears its peers and rejects nothing (another signing key, another version)",
		func(ctx context.Context, k *checker) error {
			c, err := k.g.openCache(ctx, k.url, ns, nil)
			if err != nil {
				return err
			}
			k.mu.Lock()
			k.closer = append(k.closer, func() { _ = c.Close() })
			k.mu.Unlock()
			select {
			case <-time.After(listen):
			case <-ctx.Done():
				return ctx.Err()
			}
			h := c.Health()
			if h.Split != "" {
				return fmt.Errorf("the fleet on namespace %q is split across the transport's modes: %s (move it with transition_url)", ns, h.Split)
			}
			if h.Rejecting {
				hint := "a peer signs with another key, or none (--signing-key), or speaks another format version"
				return fmt.Errorf("%d messages on namespace %q rejected in %v, the last: %s (%s)", h.Rejected, ns, listen, h.RejectCause, hint)
			}
			fmt.Fprintf(k.g.stdout, "      namespace %q: %d peers heard in %v\n", ns, h.Peers, listen)
			return nil
		}}
}

func newCheckCmd(g *globals) *cobra.Command {
	var bound, listen time.Duration
	var prefix, ns string
	var only []string
	cmd := &cobra.Command{
		Use:   "check URL",
		Short: "Check that invalidation works through a broker",
		Long: `check answers "is invalidation working in this environment?": it runs the
transport conformance cases that are safe on a shared broker (delivery,
broadcast fan-out, echo, namespace isolation, payload limits, ordering,
cancellation, close) and a round-trip canary through the full engine, and
prints pass or fail per case.

Every case uses a fresh namespace of its own (prefix --prefix), so check never
disturbs the applications on the broker, and it never faults the broker.
With --namespace, a last case ("fleet") joins that namespace with an engine
(signing with --signing-key, if given) for --listen, and fails if it rejects
messages there: a peer with another signing key or format version, which
neither side hears. That engine takes part like any instance and says
goodbye when it leaves.
Exit code 1 if any case fails, 3 if the broker cannot be reached.`,
		Example: `  backplane check nats://127.0.0.1:4222
  backplane check rediss://:secret@cache.internal:6380 --bound 10s
  backplane check redis://127.0.0.1:6379 --case delivery,canary
  backplane check nats://127.0.0.1:4222 --namespace catalog --signing-key k1:/run/secrets/k1`,
		Args: urlArg(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			cases := checkCases
			if ns != "" {
				if listen <= 0 {
					return usagef("--listen must be positive")
				}
				cases = append(slices.Clone(cases), fleetCase(ns, listen))
			}
			return runCheck(cmd.Context(), g, args[0], prefix, bound, only, cases)
		},
	}
	cmd.Flags().DurationVar(&bound, "bound", 5*time.Second, "how long a message may take before it counts as lost")
	cmd.Flags().StringVar(&prefix, "prefix", "backplane-check-", "namespace prefix of the check's own namespaces")
	cmd.Flags().StringSliceVar(&only, "case", nil, "run only these cases (comma-separated names)")
	cmd.Flags().StringVarP(&ns, "namespace", "n", "", "also listen on this application namespace for rejected messages (case fleet)")
	cmd.Flags().DurationVar(&listen, "listen", 5*time.Second, "how long the fleet case listens")
	return cmd
}

func runCheck(ctx context.Context, g *globals, rawURL, prefix string, bound time.Duration, only []string, all []checkCase) error {
	if bound <= 0 {
		return usagef("--bound must be positive")
	}
	cases := all
	if len(only) > 0 {
		cases = nil
		for _, name := range only {
			found := false
			for _, c := range all {
				if c.name == name {
					cases, found = append(cases, c), true
				}
			}
			if !found {
				var names []string
				for _, c := range all {
					names = append(names, c.name)
				}
				return usagef("unknown case %q (cases: %v)", name, names)
			}
		}
	}
	// Connecting is not a case: a broker that cannot be reached is exit 3.
	probe, err := g.openBackplane(ctx, rawURL, prefix+"probe-"+randomNamespace(""))
	if err != nil {
		return err
	}
	err = g.subscribe(ctx, rawURL, probe, core.HandlerFuncs{})
	durable := probe.Limits().Durable
	_ = probe.Close()
	if err != nil {
		return err
	}
	mode := "pub/sub: an instance that loses its link flushes its cache"
	if durable {
		mode = "durable log: an instance that loses its link resumes from the log, warm"
		if len(only) == 0 {
			cases = append(slices.Clone(cases), logCase)
		}
	}
	fmt.Fprintf(g.stdout, "checking %s (bound %v)\nmode: %s\n", redact(rawURL), bound, mode)
	failed := 0
	for _, c := range cases {
		k := &checker{g: g, url: rawURL, prefix: prefix, bound: bound}
		start := time.Now()
		err := c.run(ctx, k)
		k.closeAll()
		if ierr := interrupted(ctx, nil); ierr != nil {
			return ierr
		}
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			failed++
			fmt.Fprintf(g.stdout, "FAIL  %-18s %v\n      (checks that %s)\n", c.name, err, c.what)
			continue
		}
		fmt.Fprintf(g.stdout, "ok    %-18s %-8v %s\n", c.name, took, c.what)
	}
	if failed > 0 {
		fmt.Fprintf(g.stdout, "%d of %d cases failed: invalidation is NOT reliable through %s\n", failed, len(cases), redact(rawURL))
		return silentError{fmt.Sprintf("%d check(s) failed", failed)}
	}
	fmt.Fprintf(g.stdout, "all %d cases passed: invalidation works through %s\n", len(cases), redact(rawURL))
	return nil
}
