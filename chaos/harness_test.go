package chaos_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

// fullRun is set by the chaos build tag (full_test.go).
var fullRun bool

// config sizes a run. The reduced form must pass on a loaded two-core
// machine under -race: its heartbeats are slower and its slack larger, so
// that scheduling delays cannot pass for staleness; it checks the same
// properties.
type config struct {
	full         bool
	instances    int
	duration     time.Duration // of one scenario
	hbInterval   time.Duration
	hbTimeout    time.Duration
	slack        time.Duration // propagation and scheduling allowance
	latency      time.Duration // injected by the latency scenario
	after        time.Duration // of the load after the fault, measured
	downtime     time.Duration // of the broker in the kill scenario
	slowBPS      int           // bandwidth of the slow subscriber
	writers      int
	readersPer   int
	keys         int
	publishLimit time.Duration // core.Options.PublishTimeout
	wait         time.Duration // bound of every poll for a condition
}

func loadConfig() config {
	if fullRun || os.Getenv("BACKPLANE_CHAOS_FULL") == "1" {
		return config{
			full: true, instances: 4, duration: 20 * time.Second,
			hbInterval: 100 * time.Millisecond, hbTimeout: 500 * time.Millisecond,
			slack: 250 * time.Millisecond, latency: 150 * time.Millisecond,
			after: 4 * time.Second, downtime: 2 * time.Second, slowBPS: 4 << 10,
			writers: 3, readersPer: 2, keys: 64,
			publishLimit: time.Second, wait: 30 * time.Second,
		}
	}
	return config{
		instances: 3, duration: 3 * time.Second,
		hbInterval: 200 * time.Millisecond, hbTimeout: time.Second,
		slack: 2 * time.Second, latency: 100 * time.Millisecond,
		after: time.Second, downtime: 300 * time.Millisecond, slowBPS: 2 << 10,
		writers: 2, readersPer: 1, keys: 32,
		publishLimit: time.Second, wait: 60 * time.Second,
	}
}

// bound is the staleness bound of a scenario that injects latency lat:
// see RELIABILITY.md.
func (c config) bound(lat time.Duration) time.Duration {
	return c.hbTimeout + c.hbInterval + lat + c.slack
}

// detectBound is how soon after a link silently breaks the instance must
// notice: the last message arrives at most as the fault starts, the
// monitor checks every HeartbeatInterval/2 for HeartbeatTimeout of
// silence.
func (c config) detectBound() time.Duration {
	return c.hbTimeout + c.hbInterval + c.slack
}

var discard = slog.New(slog.DiscardHandler)

func newStore(t *testing.T) core.LocalStore {
	cfg := bigcachestore.DefaultConfig()
	cfg.Shards, cfg.HardMaxCacheSize = 16, 16
	s, err := bigcachestore.New(cfg)
	if err != nil {
		t.Fatalf("bigcachestore.New: %v", err)
	}
	return s
}

// msgID names one invalidate or clear message.
type msgID struct {
	src core.SourceID
	seq uint64
}

// ledger records every invalidate and clear message published (once
// Publish returned nil) and received, per instance.
type ledger struct {
	mu        sync.Mutex
	published map[msgID]pubTimes
	received  []map[msgID]time.Time      // per instance
	heard     []map[core.SourceID]uint64 // per instance: the highest Seq of any message of a peer
	// arrivals are, per instance and peer, the messages of the peer in the
	// order they arrived (heartbeats too), for the report of a loss.
	arrivals []map[core.SourceID][]arrival
	// failed are the messages whose Publish failed, and when it did.
	failed map[msgID]time.Time
}

type arrival struct {
	seq uint64
	op  core.Op
	at  time.Time
}

func newLedger(n int) *ledger {
	l := &ledger{published: map[msgID]pubTimes{}, received: make([]map[msgID]time.Time, n), heard: make([]map[core.SourceID]uint64, n),
		arrivals: make([]map[core.SourceID][]arrival, n), failed: map[msgID]time.Time{}}
	for i := range l.received {
		l.received[i] = map[msgID]time.Time{}
		l.heard[i] = map[core.SourceID]uint64{}
		l.arrivals[i] = map[core.SourceID][]arrival{}
	}
	return l
}

// decodeID returns the message's ID and whether it is an invalidate or
// clear message (ok is false for heartbeats and undecodable payloads;
// decoded tells the latter apart).
func decodeID(p []byte) (id msgID, ok, decoded bool) {
	id, ok, decoded, _, _ = decodeMsg(p)
	return id, ok, decoded
}

// decodeMsg is decodeID that also returns the keys of an invalidate
// message (the canary's left out) and the message's op.
func decodeMsg(p []byte) (id msgID, ok, decoded bool, keys []string, op core.Op) {
	env, err := core.DecodeEnvelope(p)
	if err != nil {
		return msgID{}, false, false, nil, 0
	}
	if env.Op == core.OpInvalidate {
		for _, k := range env.Keys {
			if k != core.CanaryKey {
				keys = append(keys, k)
			}
		}
	}
	return msgID{env.Source, env.Seq}, env.Op == core.OpInvalidate || env.Op == core.OpClear, true, keys, env.Op
}

// pubTimes are when the Publish call that carried a message started and
// when it returned nil; the broker took the message in between.
type pubTimes struct{ start, end time.Time }

// tap is a Backplane between an instance's engine and its transport that
// records messages and events.
type tap struct {
	core.Backplane
	inst *instance
}

func (t *tap) Publish(ctx context.Context, payloads ...[]byte) error {
	start := time.Now()
	err := t.Backplane.Publish(ctx, payloads...)
	if err == nil {
		t.published(start, payloads)
	} else {
		t.failed(payloads)
	}
	return err
}

// failed records payloads whose publish failed.
func (t *tap) failed(payloads [][]byte) {
	now := time.Now()
	l := t.inst.run.ledger
	l.mu.Lock()
	for _, p := range payloads {
		if id, _, decoded := decodeID(p); decoded {
			l.failed[id] = now
		}
	}
	l.mu.Unlock()
}

// published records payloads as on the broker: their publish started at
// start and has just been confirmed.
func (t *tap) published(start time.Time, payloads [][]byte) {
	now := pubTimes{start, time.Now()}
	l := t.inst.run.ledger
	l.mu.Lock()
	for _, p := range payloads {
		if id, ok, _ := decodeID(p); ok {
			l.published[id] = now
		}
	}
	l.mu.Unlock()
}

// senderTap is a tap over a transport that is a core.Sender, so that the
// engine sends through it as it would without the tap.
type senderTap struct {
	*tap
	s core.Sender
}

func (t senderTap) Send(ctx context.Context, payloads ...[]byte) (func(context.Context) error, error) {
	start := time.Now()
	confirm, err := t.s.Send(ctx, payloads...)
	if err != nil {
		t.failed(payloads)
		return nil, err
	}
	return func(ctx context.Context) error {
		err := confirm(ctx)
		if err == nil {
			t.published(start, payloads)
		} else {
			t.failed(payloads)
		}
		return err
	}, nil
}

// newTap wraps bp, keeping it a core.Sender when it is one.
func newTap(bp core.Backplane, in *instance) core.Backplane {
	t := &tap{Backplane: bp, inst: in}
	if s, ok := bp.(core.Sender); ok {
		return senderTap{tap: t, s: s}
	}
	return t
}

func (t *tap) Subscribe(ctx context.Context, h core.Handler) error {
	return t.Backplane.Subscribe(ctx, tapHandler{t: t, h: h})
}

type tapHandler struct {
	t *tap
	h core.Handler
}

func (h tapHandler) HandleMessage(p []byte) {
	if id, ok, decoded, keys, op := decodeMsg(p); decoded && id.src != h.t.inst.id {
		now := time.Now()
		in := h.t.inst
		l := in.run.ledger
		i := in.idx
		l.mu.Lock()
		if _, dup := l.received[i][id]; ok && !dup {
			l.received[i][id] = now
		}
		l.heard[i][id.src] = max(l.heard[i][id.src], id.seq)
		l.arrivals[i][id.src] = append(l.arrivals[i][id.src], arrival{seq: id.seq, op: op, at: now})
		l.mu.Unlock()
		in.catchUp.note(in.cache.Health().Suspended, keys)
	}
	h.h.HandleMessage(p)
}

// catchUpKeys counts the keys a peer's invalidations evicted from an
// instance's store while it was suspended (Health.Suspended, over a durable
// transport): what catching up with the log cost the store, where a flush
// would have cost all of it. Keys are counted once per suspension (an
// episode ends with the first peer message that finds the store served
// again); deliveries counts every key delivered.
type catchUpKeys struct {
	mu         sync.Mutex
	episode    map[string]struct{}
	keys       int // distinct keys per episode, summed over the episodes
	deliveries int
}

func (c *catchUpKeys) note(suspended bool, keys []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !suspended {
		c.keys += len(c.episode)
		c.episode = nil
		return
	}
	if c.episode == nil {
		c.episode = map[string]struct{}{}
	}
	for _, k := range keys {
		c.episode[k] = struct{}{}
	}
	c.deliveries += len(keys)
}

// totals returns the keys of the finished episodes and of the current one.
func (c *catchUpKeys) totals() (keys, deliveries int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.keys + len(c.episode), c.deliveries
}

func (h tapHandler) HandleEvent(ev core.Event) {
	h.t.inst.rec.event(ev.Kind.String())
	h.h.HandleEvent(ev)
}

// recorder is a MeterProvider that keeps the engine's counters by name
// and attributes, the time of every flush, and the largest value of every
// histogram.
type recorder struct {
	noop.MeterProvider
	mu      sync.Mutex
	counts  map[string]int64
	flushes []flushEvent
	events  map[string]int
	maxHist map[string]float64
}

type flushEvent struct {
	at    time.Time
	cause string
}

func newRecorder() *recorder {
	return &recorder{counts: map[string]int64{}, events: map[string]int{}, maxHist: map[string]float64{}}
}

// Meter returns a meter that records into r.
func (r *recorder) Meter(string, ...metric.MeterOption) metric.Meter { return recMeter{r: r} }

func (r *recorder) event(kind string) {
	r.mu.Lock()
	r.events[kind]++
	r.mu.Unlock()
}

// flushCauses returns the flushes by cause.
func (r *recorder) flushCauses() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for _, f := range r.flushes {
		m[f.cause]++
	}
	return m
}

func (r *recorder) flushTimes() []flushEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]flushEvent(nil), r.flushes...)
}

type recMeter struct {
	noop.Meter
	r *recorder
}

func (m recMeter) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return recCounter{r: m.r, name: name}, nil
}

func (m recMeter) Float64Histogram(name string, _ ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return recHist{r: m.r, name: name}, nil
}

type recCounter struct {
	noop.Int64Counter
	r    *recorder
	name string
}

func (c recCounter) Add(_ context.Context, n int64, opts ...metric.AddOption) {
	attrs := metric.NewAddConfig(opts).Attributes()
	key := c.name
	if attrs.Len() > 0 {
		var kv []string
		for _, a := range attrs.ToSlice() {
			kv = append(kv, string(a.Key)+"="+a.Value.Emit())
		}
		key += "{" + strings.Join(kv, ",") + "}"
	}
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	c.r.counts[key] += n
	if c.name == "backplane.flushes" {
		cause, _ := attrs.Value(attribute.Key("cause"))
		c.r.flushes = append(c.r.flushes, flushEvent{at: time.Now(), cause: cause.Emit()})
	}
}

type recHist struct {
	noop.Float64Histogram
	r    *recorder
	name string
}

func (h recHist) Record(_ context.Context, v float64, _ ...metric.RecordOption) {
	h.r.mu.Lock()
	defer h.r.mu.Unlock()
	if v > h.r.maxHist[h.name] {
		h.r.maxHist[h.name] = v
	}
}

// instance is one engine behind its own proxy.
type instance struct {
	idx   int
	run   *run
	proxy *faultproxy.Proxy
	cache *core.Cache
	id    core.SourceID
	rec   *recorder
	// started is when Start returned: the instance is subscribed.
	started time.Time
	// noWrite keeps the writers off the instance.
	noWrite atomic.Bool
	catchUp catchUpKeys
	// states are the instance's suspensions, as the window sampler saw
	// them: "suspend" when Health.Suspended turned true, "serve" when it
	// turned false (guarded by run.mu).
	states []flushEvent
}

// countMap renders a map in key order: "a=1 b=2".
func countMap[V int | int64](m map[string]V) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[k])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// eventually polls cond every few milliseconds until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

// reportFile appends a line to the file named by BACKPLANE_CHAOS_REPORT,
// if set: the rows of the fault matrix.
func reportLine(t *testing.T, line string) {
	path := os.Getenv("BACKPLANE_CHAOS_REPORT")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("report: %v", err)
		return
	}
	defer f.Close()
	_, _ = io.WriteString(f, line+"\n")
}
