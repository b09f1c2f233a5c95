package chaos_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
)

// scenario is one fault schedule. inject runs once the load is steady and
// must lift its faults before it returns; it has about window to do its
// work. A scenario that waits before its fault calls run.faulted when it
// starts it, one that waits after lifting its faults calls run.lifted when
// it lifted them: the measured windows (see run.windows) start there.
type scenario struct {
	name    string
	latency func(c config) time.Duration // injected latency, part of the bound
	inject  func(r *run, window time.Duration)
}

func scenarios() []scenario {
	return []scenario{
		{name: "baseline", inject: func(r *run, w time.Duration) { r.pause(w) }},
		{name: "latency", latency: func(c config) time.Duration { return c.latency }, inject: func(r *run, w time.Duration) {
			r.insts[0].proxy.SetLatency(faultproxy.Both, r.cfg.latency)
			r.insts[1].proxy.SetLatency(faultproxy.Down, r.cfg.latency)
			r.pause(w)
			r.healAll()
		}},
		{name: "reset", inject: func(r *run, w time.Duration) {
			for range 4 {
				r.pause(w / 4)
				for _, in := range r.insts {
					in.proxy.Reset()
				}
			}
		}},
		{name: "partition", inject: func(r *run, w time.Duration) {
			// One instance loses its connection and cannot make a new one.
			p := r.insts[0].proxy
			p.SetRefuse(true)
			p.Reset()
			r.pause(w / 2)
			p.Heal()
			r.lifted()
			r.pause(w / 2)
		}},
		{name: "blackhole", inject: func(r *run, w time.Duration) {
			// Instance 0 hears nothing (its sends still reach the broker),
			// then instance 1 says nothing (it hears everything). Neither
			// socket closes, nothing is lost on the wire (the bytes wait,
			// as behind a network that drops the packets of one
			// direction): only heartbeats can tell.
			r.blackhole(0, faultproxy.Down, w/2)
			r.blackhole(1, faultproxy.Up, w/2)
		}},
		{name: "broker-kill", inject: func(r *run, w time.Duration) {
			r.pause(w / 4)
			r.faulted()
			r.brk.kill()
			r.pause(r.cfg.downtime)
			r.brk.start()
			r.lifted()
			r.pause(w / 2)
		}},
		{name: "slow-subscriber", inject: func(r *run, w time.Duration) {
			// Writers avoid the slow instance: its own Invalidate calls
			// would wait for the broker's replies stuck behind the backlog
			// and slow the whole load down to its pace.
			r.insts[0].noWrite.Store(true)
			defer r.insts[0].noWrite.Store(false)
			r.insts[0].proxy.SetBandwidth(faultproxy.Down, r.cfg.slowBPS)
			r.pause(w)
			r.healAll()
		}},
	}
}

// TestChaos runs the scenarios over every broker of the table (the reduced
// form a few of them over the durable modes, see brokerKind.reduced).
func TestChaos(t *testing.T) {
	cfg := loadConfig()
	if testing.Short() && !cfg.full {
		t.Skip("the chaos scenarios take a few minutes; run without -short")
	}
	for i := range brokers {
		kind := &brokers[i]
		t.Run(kind.name, func(t *testing.T) { runBroker(t, cfg, kind) })
	}
}

func runBroker(t *testing.T, cfg config, kind *brokerKind) {
	brk := kind.start(t)
	brk.kind, brk.name = kind, kind.name
	// The baseline scenario runs first: the others' loads and hit ratio
	// are measured against its.
	var base *windows
	for _, sc := range scenarios() {
		if !kind.runs(sc.name, cfg.full) {
			continue
		}
		t.Run(sc.name, func(t *testing.T) {
			w := runScenario(t, cfg, brk, sc, base)
			if sc.name == "baseline" && w != nil {
				base = w
			}
		})
	}
}

// run is one scenario in progress.
type run struct {
	t      *testing.T
	cfg    config
	brk    *broker
	insts  []*instance
	ledger *ledger
	chk    *checker
	ctx    context.Context // ends when the scenario's time is up

	srcMu  sync.Mutex
	source []int64 // the source of truth: the version of every key

	failedInvalidates atomic.Int64

	// base are the baseline scenario's windows (nil while it runs).
	base *windows

	mu         sync.Mutex
	samples    []sample // the window sampler's
	stall      stall    // the longest gap between them
	faultedAt  time.Time
	liftedAt   time.Time
	detections []detection
	// unhealthy counts, per state, the Health samples that showed it
	// during the load.
	unhealthy map[string]int
}

// sampleHealth samples every instance's Health every half heartbeat
// interval while the load runs.
func (r *run) sampleHealth() {
	t := time.NewTicker(r.cfg.hbInterval / 2)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
		for _, in := range r.insts {
			h := in.cache.Health()
			r.mu.Lock()
			if r.unhealthy == nil {
				r.unhealthy = map[string]int{}
			}
			for state, on := range map[string]bool{"disconnected": !h.Connected, "silent": h.Silent, "degraded": h.Degraded, "syncBroken": h.SyncBroken} {
				if on {
					r.unhealthy[state]++
				}
			}
			r.mu.Unlock()
		}
	}
}

// detection is a fault that the instance must notice by itself.
type detection struct {
	inst  int
	what  string
	start time.Time
}

// faulted notes that the scenario's fault starts now, for a scenario that
// waits before it: the fault window starts there.
func (r *run) faulted() {
	r.mu.Lock()
	r.faultedAt = time.Now()
	r.mu.Unlock()
}

// lifted notes that the scenario's faults are lifted now.
func (r *run) lifted() {
	r.mu.Lock()
	r.liftedAt = time.Now()
	r.mu.Unlock()
}

// pause waits d or until the scenario's time is up.
func (r *run) pause(d time.Duration) {
	select {
	case <-time.After(d):
	case <-r.ctx.Done():
	}
}

func (r *run) healAll() {
	for _, in := range r.insts {
		in.proxy.Heal()
	}
}

// blackhole stalls direction d of instance i (faultproxy.SetStall) and
// expects the instance to notice by itself; the fault lasts until it did
// (or twice the detection bound passed) and w/4 more.
func (r *run) blackhole(i int, d faultproxy.Direction, w time.Duration) {
	in := r.insts[i]
	start := time.Now()
	suspensions := in.cache.Stats().Suspensions
	in.proxy.SetStall(d, true)
	r.mu.Lock()
	r.detections = append(r.detections, detection{inst: i, what: "blackhole " + d.String(), start: start})
	r.mu.Unlock()
	eventually(2*r.cfg.detectBound(), func() bool {
		// Only a flush for the link itself ends the fault, or over a
		// durable transport a suspension: a gap flush meanwhile protects
		// the cache but does not detect the blackhole.
		if in.cache.Stats().Suspensions > suspensions {
			return true
		}
		for _, f := range in.rec.flushTimes() {
			if !f.at.Before(start) && (f.cause == "silence" || f.cause == "disconnect") {
				return true
			}
		}
		return false
	})
	r.pause(w / 4)
	in.proxy.Heal()
}

func key(k int) string { return "item:" + strconv.Itoa(k) }

// runScenario runs one scenario and returns its windows (nil if it did
// not get as far as measuring them).
func runScenario(t *testing.T, cfg config, brk *broker, sc scenario, base *windows) *windows {
	var lat time.Duration
	if sc.latency != nil {
		lat = sc.latency(cfg)
	}
	bound := cfg.bound(lat)
	r := &run{t: t, cfg: cfg, brk: brk, base: base, ledger: newLedger(cfg.instances), source: make([]int64, cfg.keys)}
	ns := fmt.Sprintf("chaos-%s-%d", sc.name, time.Now().UnixNano())
	for i := range cfg.instances {
		r.insts = append(r.insts, r.open(i, ns))
	}
	// Every instance knows every other before the load starts.
	if !eventually(cfg.wait, func() bool {
		for _, in := range r.insts {
			if in.cache.Health().Peers != cfg.instances-1 {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("instances did not see each other within %v", cfg.wait)
	}

	r.chk = newChecker(cfg.keys, bound)
	// The load runs for the warm-up and the fault schedule, however long
	// that took, and at least cfg.after after the faults were lifted.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r.ctx = ctx
	var wg sync.WaitGroup
	for w := range cfg.writers {
		wg.Go(func() { r.writer(w) })
	}
	var readers sync.WaitGroup
	for _, in := range r.insts {
		for j := range cfg.readersPer {
			readers.Go(func() { r.reader(in, j) })
		}
	}
	var sampler sync.WaitGroup
	sampler.Go(func() { r.sampleHealth() })
	sampler.Go(func() { r.sampleWindows() })
	warmup := cfg.duration / 5
	r.pause(warmup)
	faultStart := time.Now()
	sc.inject(r, cfg.duration*3/5)
	faultEnd := time.Now()
	r.healAll()
	r.mu.Lock()
	if r.liftedAt.IsZero() {
		r.liftedAt = faultEnd
	}
	lifted := r.liftedAt
	faulted := faultStart
	if !r.faultedAt.IsZero() {
		faulted = r.faultedAt
	}
	r.mu.Unlock()
	// The window after the fault is cfg.after long from the lifting.
	time.Sleep(time.Until(lifted.Add(cfg.after)))
	cancel()
	readers.Wait()
	sampler.Wait()
	wg.Wait() // writers finish their last write, retrying until it completes

	// After the faults every instance recovers and converges.
	if !eventually(cfg.wait, func() bool {
		for _, in := range r.insts {
			if h := in.cache.Health(); !h.Healthy() || h.Degraded {
				return false
			}
		}
		return true
	}) {
		for i, in := range r.insts {
			t.Logf("instance %d health: %+v", i, in.cache.Health())
		}
		t.Fatalf("instances not healthy %v after the faults", cfg.wait)
	}
	r.converge()
	r.settle()

	// Close everything, then account. What instances publish while the
	// others close (canaries) cannot reach the closed ones: the accounting
	// ends where closing starts.
	closing := time.Now()
	for i, in := range r.insts {
		if err := in.cache.Close(); err != nil {
			t.Errorf("close instance %d: %v", i, err)
		}
	}
	w := r.windows(faulted, lifted, lifted.Add(cfg.after), base)
	r.account(sc.name, bound, lat, faultStart, faultEnd, closing, w)
	return &w
}

// open starts instance i behind its own proxy.
func (r *run) open(i int, ns string) *instance {
	t := r.t
	p, err := faultproxy.New(r.brk.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	in := &instance{idx: i, run: r, proxy: p, rec: newRecorder()}
	bp := newTap(r.brk.open(t, p.Addr(), ns), in)
	c, err := core.New(newStore(t), bp,
		core.WithHeartbeat(r.cfg.hbInterval, r.cfg.hbTimeout),
		core.WithPublishTimeout(r.cfg.publishLimit),
		core.WithTTL(10*time.Minute, 0.1),
		core.WithCanary(2*r.cfg.hbInterval, 0),
		core.WithLogger(discard),
		core.WithMeterProvider(in.rec))
	if err != nil {
		t.Fatal(err)
	}
	in.cache, in.id = c, c.ID()
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.wait)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatalf("start instance %d: %v", i, err)
	}
	in.started = time.Now()
	t.Cleanup(func() { _ = c.Close() })
	return in
}

// writer updates the source of truth, then invalidates the key through a
// random instance, retrying through the next one until an Invalidate
// returns nil. It stops when the scenario's time is up, but only after
// its last write completed.
func (r *run) writer(w int) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	for r.ctx.Err() == nil {
		k := rng.IntN(r.cfg.keys)
		r.srcMu.Lock()
		r.source[k]++
		v := r.source[k]
		r.srcMu.Unlock()
		i := rng.IntN(len(r.insts))
		for r.insts[i].noWrite.Load() {
			i = (i + 1) % len(r.insts)
		}
		deadline := time.Now().Add(r.cfg.wait)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*r.cfg.publishLimit)
			err := r.insts[i].cache.Invalidate(ctx, key(k))
			cancel()
			if err == nil {
				r.chk.completed(k, v)
				break
			}
			r.failedInvalidates.Add(1)
			if time.Now().After(deadline) {
				r.t.Errorf("writer %d: no instance took the invalidation of %s for %v: %v", w, key(k), r.cfg.wait, err)
				return
			}
			i = (i + 1) % len(r.insts)
			for r.insts[i].noWrite.Load() {
				i = (i + 1) % len(r.insts)
			}
			time.Sleep(5 * time.Millisecond) // retry pacing
		}
		time.Sleep(time.Duration(1+rng.IntN(3)) * time.Millisecond) // write rate
	}
}

// reader reads random keys through GetOrLoad on one instance; the loader
// reads the source of truth.
func (r *run) reader(in *instance, j int) {
	rng := rand.New(rand.NewPCG(uint64(100+in.idx*10+j), uint64(time.Now().UnixNano())))
	n := 0
	for r.ctx.Err() == nil {
		k := rng.IntN(r.cfg.keys)
		start := time.Now()
		b, err := in.cache.GetOrLoad(context.Background(), key(k), func(context.Context) ([]byte, error) {
			if rng.IntN(8) == 0 {
				time.Sleep(time.Millisecond) // a slow database now and then
			}
			r.srcMu.Lock()
			defer r.srcMu.Unlock()
			return []byte(strconv.FormatInt(r.source[k], 10)), nil
		})
		if err != nil {
			r.t.Errorf("GetOrLoad on instance %d: %v", in.idx, err)
			return
		}
		got, _ := strconv.ParseInt(string(b), 10, 64)
		r.chk.read(k, start, got, in.idx, func() string { return r.describe(in) })
		if n++; n%16 == 0 {
			time.Sleep(time.Millisecond) // leave the machine to the writers and the engine
		}
	}
}

func (r *run) describe(in *instance) string {
	var b strings.Builder
	h := in.cache.Health()
	fmt.Fprintf(&b, "  health: connected %v, silent %v, degraded %v, sync broken %v, last received %v ago, peers %d\n  flushes:",
		h.Connected, h.Silent, h.Degraded, h.SyncBroken, time.Since(h.LastReceived).Round(time.Millisecond), h.Peers)
	for _, f := range in.rec.flushTimes() {
		fmt.Fprintf(&b, " %s@%v", f.cause, f.at.Sub(r.chk.start).Round(time.Millisecond))
	}
	return b.String()
}

// converge checks that every instance serves the latest version of every
// key once the faults are over.
func (r *run) converge() {
	for k := range r.cfg.keys {
		r.srcMu.Lock()
		want := strconv.FormatInt(r.source[k], 10)
		r.srcMu.Unlock()
		for i, in := range r.insts {
			var got []byte
			if !eventually(r.cfg.wait, func() bool {
				b, err := in.cache.GetOrLoad(context.Background(), key(k), func(context.Context) ([]byte, error) {
					return []byte(want), nil
				})
				got = b
				return err == nil && string(b) == want
			}) {
				r.t.Errorf("instance %d serves %s = v%s after the run, want v%s", i, key(k), got, want)
			}
		}
	}
}

// settle waits until every instance received every invalidation its
// peers published, or heard a later message of the same peer (messages of
// one source arrive in order, so what did not come by then is lost).
func (r *run) settle() {
	if !eventually(r.cfg.wait, func() bool {
		l := r.ledger
		l.mu.Lock()
		defer l.mu.Unlock()
		for id := range l.published {
			for i, in := range r.insts {
				if in.id == id.src {
					continue
				}
				if _, ok := l.received[i][id]; !ok && l.heard[i][id.src] <= id.seq {
					return false
				}
			}
		}
		return true
	}) {
		r.t.Errorf("instances still waiting for messages %v after the run", r.cfg.wait)
	}
}

// account reports the scenario's figures and fails it on violations.
func (r *run) account(name string, bound, lat time.Duration, faultStart, faultEnd, closing time.Time, w windows) {
	t := r.t
	cfg := r.cfg
	// Messages lost (published, never received) and detected: the
	// receiver flushed within the bound after the publish, or was not
	// caching (its link was down or silent) when it was published.
	l := r.ledger
	l.mu.Lock()
	var lost, detected, published int
	var undetected []string
	var maxDelay time.Duration
	flushes := make([][]flushEvent, len(r.insts))
	states := make([][]flushEvent, len(r.insts))
	r.mu.Lock()
	for i, in := range r.insts {
		flushes[i] = in.rec.flushTimes()
		states[i] = append([]flushEvent(nil), in.states...)
	}
	r.mu.Unlock()
	for id, at := range l.published {
		if !at.start.Before(closing) {
			continue
		}
		published++
		for i, in := range r.insts {
			if in.id == id.src || at.start.Before(in.started) {
				// A message published before the instance subscribed
				// is not for it.
				continue
			}
			if rcv, ok := l.received[i][id]; ok {
				maxDelay = max(maxDelay, rcv.Sub(at.end))
				continue
			}
			lost++
			if coveredBy(flushes[i], states[i], at, bound) {
				detected++
			} else if len(undetected) < 3 {
				var fs []string
				for _, f := range flushes[i] {
					if d := f.at.Sub(at.start); d > -5*bound && d < 5*bound {
						fs = append(fs, fmt.Sprintf("%s@%+v", f.cause, d.Round(time.Millisecond)))
					}
				}
				undetected = append(undetected, fmt.Sprintf("message %d of instance %s published at %v (returned %v) never reached instance %d; its flushes around it: %s; %s",
					id.seq, id.src.String()[:8], at.start.Sub(r.chk.start).Round(time.Millisecond), at.end.Sub(r.chk.start).Round(time.Millisecond),
					i, strings.Join(fs, " "), r.around(i, id)))
			}
		}
	}
	l.mu.Unlock()

	causes := map[string]int{}
	events := map[string]int{}
	var gaps, published2, received, rejected, suspensions, publishErrors uint64
	var catchUpKeys, catchUpDeliveries int
	var maxCanaryLag, maxPropLag float64
	for _, in := range r.insts {
		in.rec.mu.Lock()
		maxCanaryLag = max(maxCanaryLag, in.rec.maxHist["backplane.canary.lag"])
		maxPropLag = max(maxPropLag, in.rec.maxHist["backplane.propagation.lag"])
		in.rec.mu.Unlock()
		for c, n := range in.rec.flushCauses() {
			causes[c] += n
		}
		in.rec.mu.Lock()
		for e, n := range in.rec.events {
			events[e] += n
		}
		in.rec.mu.Unlock()
		st := in.cache.Stats()
		suspensions += st.Suspensions
		publishErrors += st.PublishErrors
		k, d := in.catchUp.totals()
		catchUpKeys += k
		catchUpDeliveries += d
		gaps += st.Gaps
		published2 += st.Published
		received += st.Received
		rejected += st.DecodeErrors + st.Rejected
	}
	// Detection of the silent faults.
	var detectMsgs []string
	r.mu.Lock()
	dets := append([]detection(nil), r.detections...)
	r.mu.Unlock()
	maxDetect := time.Duration(0)
	for _, d := range dets {
		var first *flushEvent
		for _, f := range flushes[d.inst] {
			// Only a flush for the link itself counts: a gap flush at the
			// same time protects the cache but says nothing about the link.
			if !f.at.Before(d.start) && (f.cause == "silence" || f.cause == "disconnect") {
				first = &f
				break
			}
		}
		// Over a durable transport the link's loss suspends the store.
		for _, f := range states[d.inst] {
			if !f.at.Before(d.start) && f.cause == "suspend" {
				if first == nil || f.at.Before(first.at) {
					first = &f
				}
				break
			}
		}
		fail := t.Errorf
		if first == nil {
			fail("%s on instance %d: never detected", d.what, d.inst)
			detectMsgs = append(detectMsgs, fmt.Sprintf("%s on instance %d: not detected", d.what, d.inst))
			continue
		}
		took := first.at.Sub(d.start)
		maxDetect = max(maxDetect, took)
		detectMsgs = append(detectMsgs, fmt.Sprintf("%s on instance %d detected after %v (%s)", d.what, d.inst, took.Round(time.Millisecond), first.cause))
		if took > cfg.detectBound() {
			fail("%s on instance %d detected after %v, want within %v (HeartbeatTimeout %v + HeartbeatInterval %v + slack %v)",
				d.what, d.inst, took, cfg.detectBound(), cfg.hbTimeout, cfg.hbInterval, cfg.slack)
		}
	}

	c := r.chk
	maxStale := time.Duration(c.maxStale.Load())
	t.Logf("%s/%s: %d reads, %d completed writes (%d failed Invalidate calls retried), fault window %v",
		r.brk.name, name, c.reads.Load(), completedWrites(c), r.failedInvalidates.Load(), faultEnd.Sub(faultStart).Round(time.Millisecond))
	t.Logf("  staleness: bound %v (timeout %v + interval %v + latency %v + slack %v); max observed %v; %d stale reads within the bound, %d past it",
		bound, cfg.hbTimeout, cfg.hbInterval, lat, cfg.slack, maxStale.Round(time.Millisecond), c.staleReads.Load()-c.violations.Load(), c.violations.Load())
	nflushes := 0
	for _, n := range causes {
		nflushes += n
	}
	t.Logf("  flushes by cause: %s; gaps %d; suspensions %d; failed publish rounds %d; transport events: %s", countMap(causes), gaps, suspensions, publishErrors, countMap(events))
	t.Logf("  catch-up: %d keys evicted while suspended (%d key deliveries)", catchUpKeys, catchUpDeliveries)
	var bfault, bafter uint64
	var bfd, bad time.Duration
	if r.base != nil {
		bfault, bafter, bfd, bad = r.base.loadsFault, r.base.loadsAfter, r.base.fault, r.base.after
	}
	loadsFault := loadsVs(w.loadsFault, w.fault, bfault, bfd)
	loadsAfter := loadsVs(w.loadsAfter, w.after, bafter, bad)
	ratio := "-"
	if w.ratioOK {
		ratio = fmt.Sprintf("%.1f%%", 100*w.ratioFault)
	}
	t.Logf("  origin loads: %s during the fault (%v), %s in the %v after (× the baseline's rate); hit ratio during the fault %s; back to 90%% of %.1f%% %s after the fault",
		loadsFault, w.fault.Round(time.Millisecond), loadsAfter, w.after.Round(time.Millisecond), ratio, 100*w.recoveryBase, w.recoveryString())
	t.Logf("  invalidations: %d published, %d deliveries lost, %d of them detected; max delivery delay %v; %d messages published in all, %d received, %d dropped as undecodable or rejected",
		published, lost, detected, maxDelay.Round(time.Millisecond), published2, received, rejected)
	r.mu.Lock()
	unhealthy := countMap(r.unhealthy)
	r.mu.Unlock()
	t.Logf("  lag metrics: propagation max %v, canary max %v; Health samples (every %v per instance) unhealthy: %s",
		secs(maxPropLag), secs(maxCanaryLag), cfg.hbInterval/2, unhealthy)
	r.mu.Lock()
	st := r.stall
	r.mu.Unlock()
	t.Logf("  longest stall of the test process (gap between samples due every %v): %v, ending at %v",
		sampleEvery, st.gap.Round(time.Millisecond), st.end.Sub(c.start).Round(time.Millisecond))
	for _, m := range detectMsgs {
		t.Logf("  %s", m)
	}
	for _, m := range undetected {
		t.Logf("  undetected loss: %s", m)
	}
	mode := "reduced"
	if cfg.full {
		mode = "full"
	}
	detect := "-"
	if len(dets) > 0 {
		detect = strings.Join(detectMsgs, "; ")
	}
	reportLine(t, fmt.Sprintf("| %s | %s | %s | %d | %d | %v | %v | %d | %d | %s | %d | %d | %s | %s | %s | %s | %d / %d | %v | %s | %s | %v |",
		mode, r.brk.name, name, c.reads.Load(), completedWrites(c), bound, maxStale.Round(time.Millisecond),
		c.violations.Load(), nflushes, countMap(causes), suspensions, catchUpKeys, loadsFault, loadsAfter, ratio, w.recoveryString(),
		lost, detected, secs(maxCanaryLag), unhealthy, detect, st.gap.Round(time.Millisecond)))
	kind := r.brk.kind
	if contains(kind.noFlush, name) && nflushes > 0 {
		t.Errorf("%s/%s: %d flushes (%s); over this durable mode the scenario must not flush", r.brk.name, name, nflushes, countMap(causes))
	}
	if contains(kind.mustFlush, name) && nflushes == 0 {
		t.Errorf("%s/%s: no flush; the broker's restart lost the log, which must be detected and flush", r.brk.name, name)
	}
	if v := c.violations.Load(); v > 0 {
		t.Errorf("%d reads stale past the bound %v:\n%s", v, bound, c.report())
	}
	if c.reads.Load() == 0 || completedWrites(c) == 0 {
		t.Errorf("the load did nothing: %d reads, %d writes", c.reads.Load(), completedWrites(c))
	}
}

// around describes, for the report of a lost message, the messages of its
// source that reached instance i near it, and those whose publish failed.
// Called with the ledger locked.
func (r *run) around(i int, id msgID) string {
	l := r.ledger
	var got []string
	for _, a := range l.arrivals[i][id.src] {
		if a.seq+3 >= id.seq && len(got) < 8 {
			got = append(got, fmt.Sprintf("%v %d@%v", a.op, a.seq, a.at.Sub(r.chk.start).Round(time.Millisecond)))
		}
	}
	var later []string
	for p, at := range l.published {
		if p.src == id.src && p.seq > id.seq && p.seq <= id.seq+3 {
			later = append(later, fmt.Sprintf("%d@%v", p.seq, at.start.Sub(r.chk.start).Round(time.Millisecond)))
		}
	}
	sort.Strings(later)
	got = append(got, fmt.Sprintf("; highest number heard of the source %d; the source's next publishes: %s", l.heard[i][id.src], strings.Join(later, " ")))
	var failed []string
	for f, at := range l.failed {
		if f.src == id.src && f.seq+3 >= id.seq && f.seq <= id.seq+3 {
			failed = append(failed, fmt.Sprintf("%d@%v", f.seq, at.Sub(r.chk.start).Round(time.Millisecond)))
		}
	}
	sort.Strings(failed)
	return fmt.Sprintf("arrived there of the same source: %s; failed publishes of the source: %s", strings.Join(got, " "), strings.Join(failed, " "))
}

func completedWrites(c *checker) int {
	n := 0
	for i := range c.keys {
		h := &c.keys[i]
		h.mu.Lock()
		n += len(h.returned)
		h.mu.Unlock()
	}
	return n
}

// coveredBy reports whether a message that was never received was
// covered by the receiver's flushes: one between the start of the Publish
// call that carried it (the broker may have taken it at once) and the bound
// after that call returned, or the receiver was not caching when the call
// started (it had lost its link, flushing for a disconnect or a silence,
// and not flushed for its return since; flushes for other causes, such as
// the peers lost while it was cut off, do not end that). Over a durable
// transport (states: "suspend" and "serve" as the window sampler saw them)
// a receiver suspended when the call started, or within the bound after it
// returned, is covered if it flushed before it served its store again: a
// suspension that ends without a flush keeps what the lost message should
// have evicted.
func coveredBy(fs, states []flushEvent, at pubTimes, bound time.Duration) bool {
	down := false
	for i := range fs {
		f := &fs[i]
		if f.at.Before(at.start) {
			switch f.cause {
			case "disconnect", "silence":
				down = true
			case "reconnect", "resumed":
				down = false
			}
			continue
		}
		if f.at.Sub(at.end) <= bound {
			return true
		}
		break
	}
	if down {
		return true
	}
	// Suspended when the call started, or within the bound after it?
	suspended := false
	var serve time.Time // when the store was served again
	for _, s := range states {
		if s.at.Sub(at.end) > bound && !suspended {
			break
		}
		if s.at.Before(at.start) || !suspended {
			suspended = s.cause == "suspend"
			continue
		}
		if s.cause == "serve" {
			serve = s.at
			break
		}
	}
	if !suspended {
		return false
	}
	for _, f := range fs {
		if !f.at.Before(at.start) && (serve.IsZero() || !f.at.After(serve)) {
			return true
		}
	}
	return false
}

func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}
