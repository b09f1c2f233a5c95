package propbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
)

// Raw is the transport's raw client, without the engine.
type Raw struct {
	// Publish sends one message.
	Publish func(ctx context.Context, payload []byte) error
	// Subscribe delivers every message to fn until stop is called; it
	// returns once delivery is active.
	Subscribe func(ctx context.Context, fn func(payload []byte)) (stop func(), err error)
}

// Result is one measurement.
type Result struct {
	Sent, Received int
	P50, P99, Max  time.Duration
	Elapsed        time.Duration
	// KeysPerSecond is keys delivered to every subscriber, per second of
	// the whole run.
	KeysPerSecond float64
	Samples       []time.Duration
	// Gaps is the sequence gaps the engine's subscriber instances
	// detected (each flushed their store); zero for the raw client.
	Gaps uint64
	// CPU is the CPU time the whole process used during the measurement
	// (zero where it is not measured): publisher, subscribers and
	// everything else the process runs.
	CPU time.Duration
}

// String summarises the result on one line.
func (r Result) String() string {
	return fmt.Sprintf("n=%d p50=%v p99=%v max=%v keys/s=%.0f", r.Received, r.P50, r.P99, r.Max, r.KeysPerSecond)
}

func summarize(sent, subscribers int, lat []time.Duration, elapsed time.Duration) Result {
	s := slices.Clone(lat)
	slices.Sort(s)
	r := Result{Sent: sent, Received: len(s), Elapsed: elapsed, Samples: lat}
	if len(s) > 0 {
		r.P50 = s[len(s)*50/100]
		r.P99 = s[min(len(s)-1, len(s)*99/100)]
		r.Max = s[len(s)-1]
	}
	if elapsed > 0 {
		r.KeysPerSecond = float64(len(s)) / float64(max(subscribers, 1)) / elapsed.Seconds()
	}
	return r
}

// pace calls send(i) for i in [0, n) at rate per second (open loop: a slow
// send does not delay the next one), with at most 256 sends in flight. The
// sends run on up to 256 long-lived goroutines, the most recently idle one
// first, as calls in a service run on goroutines that served calls before:
// a fresh goroutine per send would also measure the growth of its stack,
// and a rotation through all of them a cold cache each time. tick, if not
// nil, is called with i just before send(i) is handed out, one call at a
// time.
func pace(ctx context.Context, n int, rate float64, tick, send func(i int)) {
	const workers = 256
	var (
		mu   sync.Mutex
		idle []chan int // a stack: the last to finish is the first reused
		wg   sync.WaitGroup
	)
	free := make(chan struct{}, workers) // one token per idle worker
	all := make([]chan int, workers)
	for w := range all {
		ch := make(chan int)
		all[w] = ch
		idle = append(idle, ch)
		free <- struct{}{}
		wg.Go(func() {
			for i := range ch {
				send(i)
				mu.Lock()
				idle = append(idle, ch)
				mu.Unlock()
				free <- struct{}{}
			}
		})
	}
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if rate > 0 {
			if d := time.Until(start.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > 0 {
				time.Sleep(d)
			}
		}
		select {
		case <-free:
		case <-ctx.Done():
			continue
		}
		if tick != nil {
			tick(i)
		}
		mu.Lock()
		ch := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		mu.Unlock()
		ch <- i
	}
	for _, ch := range all {
		close(ch)
	}
	wg.Wait()
}

// collector records when each index arrived.
type collector struct {
	mu    sync.Mutex
	sent  []time.Time
	got   []time.Duration
	seen  []bool
	count atomic.Int64
	done  chan struct{}
	want  int64
	// subscribers is how many receivers each index is expected at.
	subscribers int
}

func newCollector(n, subscribers int) *collector {
	return &collector{sent: make([]time.Time, n), seen: make([]bool, n*subscribers), done: make(chan struct{}), want: int64(n * subscribers), subscribers: subscribers}
}

func (c *collector) markSent(i int, t time.Time) { c.mu.Lock(); c.sent[i] = t; c.mu.Unlock() }

func (c *collector) arrived(sub, i int, now time.Time) {
	c.mu.Lock()
	n := len(c.sent)
	if i < 0 || i >= n || c.seen[sub*n+i] || c.sent[i].IsZero() {
		c.mu.Unlock()
		return
	}
	c.seen[sub*n+i] = true
	c.got = append(c.got, now.Sub(c.sent[i]))
	c.mu.Unlock()
	if c.count.Add(1) == c.want {
		close(c.done)
	}
}

func (c *collector) wait(ctx context.Context) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("propbench: %d of %d deliveries arrived: %w", c.count.Load(), c.want, ctx.Err())
	}
}

// RawOption adjusts a raw measurement.
type RawOption func(*rawConfig)

type rawConfig struct{ pubSubscribed bool }

// PublisherSubscribed makes the raw publisher subscribe to its own channel
// before the subscribers do, and discard what it receives: the topology of
// the engine's measurement, where the publishing instance is subscribed
// like every instance of a fleet, so that the broker delivers every message
// to the publisher as well.
func PublisherSubscribed() RawOption { return func(c *rawConfig) { c.pubSubscribed = true } }

// RawLatency publishes n messages at rate per second from one client and
// measures publish-start to receipt at subscribers subscribers.
func RawLatency(ctx context.Context, pub Raw, subs []Raw, n int, rate float64, opts ...RawOption) (Result, error) {
	s, err := RawSide(ctx, pub, subs, n, opts...)
	if err != nil {
		return Result{}, err
	}
	r, err := Interleave(ctx, []Side{s}, n, rate)
	return r[0], err
}

// RawSide prepares the measurement of RawLatency as a Side of Interleave.
func RawSide(ctx context.Context, pub Raw, subs []Raw, n int, opts ...RawOption) (s Side, err error) {
	var cfg rawConfig
	for _, o := range opts {
		o(&cfg)
	}
	var stops []func()
	defer func() {
		if err != nil {
			for _, stop := range stops {
				stop()
			}
		}
	}()
	if cfg.pubSubscribed {
		stop, err := pub.Subscribe(ctx, func([]byte) {})
		if err != nil {
			return s, err
		}
		stops = append(stops, stop)
	}
	col := newCollector(n, len(subs))
	for si, sub := range subs {
		stop, err := sub.Subscribe(ctx, func(p []byte) {
			if len(p) >= 8 {
				col.arrived(si, int(binary.BigEndian.Uint64(p)), time.Now())
			}
		})
		if err != nil {
			return s, err
		}
		stops = append(stops, stop)
	}
	payloads := make([][]byte, n)
	for i := range payloads {
		p := make([]byte, 8, 40)
		binary.BigEndian.PutUint64(p, uint64(i))
		payloads[i] = append(p, "propbench-raw-payload-padding"...)
	}
	return Side{
		col:  col,
		send: func(i int) error { return pub.Publish(ctx, payloads[i]) },
		done: func(*Result) {
			for _, stop := range stops {
				stop()
			}
		},
	}, nil
}

// turnOf maps the j-th send of an interleaved run to its side and index:
// blocks of block sends, each of the sides once per cycle, in the reverse
// order every other cycle.
func turnOf(j, block, sides int) (side, i int) {
	b := j / block
	cycle, pos := b/sides, b%sides
	if cycle%2 == 1 {
		pos = sides - 1 - pos
	}
	return pos, cycle*block + j%block
}

// Side is one side of a measurement (RawSide, Fleet.Side), which Interleave
// runs alone or in turns with others.
type Side struct {
	col  *collector
	send func(i int) error // sends index i; what it sends is made beforehand
	done func(*Result)     // adds what the side knows to its result (if not nil), and releases the side
}

// Interleave sends n messages of each side at rate per second and waits
// for every delivery. Several sides take turns in blocks of a tenth of a
// second (at least one message, rate 0: n/10), each side once per cycle,
// in the reverse order every other cycle: a side's figures come from the
// same stretch of time as the others', which the drift of a shared machine
// between separate runs of a few seconds would not give. Each result has
// the side's deliveries, the wall and CPU time (of the whole process) of
// its blocks, and the wait for the deliveries of the last block goes to the
// last side. A send error is returned only if deliveries are missing.
func Interleave(ctx context.Context, sides []Side, n int, rate float64) ([]Result, error) {
	block := n
	if len(sides) > 1 {
		block = n / 10
		if rate > 0 {
			block = int(rate / 10)
		}
		block = max(1, min(block, n))
	}
	cycles := (n + block - 1) / block
	wall := make([]time.Duration, len(sides))
	cpu := make([]time.Duration, len(sides))
	errs := make([]atomic.Value, len(sides))
	cur := -1
	var lastT time.Time
	var lastCPU time.Duration
	turn := func(next int) { // called one at a time
		t, c := time.Now(), processCPU()
		if cur >= 0 {
			wall[cur] += t.Sub(lastT)
			cpu[cur] += c - lastCPU
		}
		cur, lastT, lastCPU = next, t, c
	}
	// The sends in order, skipping the indices past n of the last cycle.
	// One side sends at a time, at rate.
	type send struct{ side, i int }
	order := make([]send, 0, n*len(sides))
	for j := 0; j < cycles*block*len(sides); j++ {
		if side, i := turnOf(j, block, len(sides)); i < n {
			order = append(order, send{side, i})
		}
	}
	pace(ctx, len(order), rate, func(k int) {
		if order[k].side != cur {
			turn(order[k].side)
		}
	}, func(k int) {
		o := order[k]
		s := &sides[o.side]
		s.col.markSent(o.i, time.Now())
		if err := s.send(o.i); err != nil {
			errs[o.side].Store(err)
		}
	})
	var err error
	for si := range sides {
		if e := sides[si].col.wait(ctx); e != nil {
			if se, ok := errs[si].Load().(error); ok {
				e = errors.Join(e, se)
			}
			err = errors.Join(err, e)
		}
	}
	turn(-1)
	res := make([]Result, len(sides))
	for si := range sides {
		s := &sides[si]
		res[si] = summarize(n, s.col.subscribers, s.col.got, wall[si])
		res[si].CPU = cpu[si]
		s.done(&res[si])
	}
	return res, err
}

// keyIndex parses the benchmark's key "pb:<i>".
func keyIndex(k string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(k, "pb:"))
	if err != nil {
		return -1
	}
	return i
}

// tap wraps a Backplane to learn when the engine has processed a message.
type tap struct {
	core.Backplane
	after func(p []byte)
}

func (t tap) Subscribe(ctx context.Context, h core.Handler) error {
	return t.Backplane.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) { h.HandleMessage(p); t.after(p) },
		Event:   h.HandleEvent,
	})
}

// Fleet is a publishing engine instance and its subscriber instances,
// which several measurements may use in turn, as a service's instances
// serve one burst of calls after another.
type Fleet struct {
	Pub  *core.Cache
	Subs []*core.Cache
	col  atomic.Pointer[collector] // the measurement under way
}

// OpenFleet opens a publisher and subscribers subscriber instances, each
// on a transport of its own made by newBackplane (on a namespace they
// share) and a bigcache store.
func OpenFleet(ctx context.Context, newBackplane func() (core.Backplane, error), subscribers int, opts ...core.Option) (f *Fleet, err error) {
	f = &Fleet{}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	open := func(after func([]byte)) (*core.Cache, error) {
		bp, err := newBackplane()
		if err != nil {
			return nil, err
		}
		if after != nil {
			bp = tap{Backplane: bp, after: after}
		}
		store, err := bigcachestore.New(bigcachestore.DefaultConfig())
		if err != nil {
			_ = bp.Close()
			return nil, err
		}
		o := append([]core.Option{core.WithLogger(slog.New(slog.DiscardHandler))}, opts...)
		return core.Open(ctx, store, bp, o...)
	}
	if f.Pub, err = open(nil); err != nil {
		return f, err
	}
	for si := range subscribers {
		c, err := open(func(p []byte) {
			now := time.Now()
			col := f.col.Load()
			if col == nil {
				return
			}
			env, err := core.DecodeEnvelope(p)
			if err != nil || env.Op != core.OpInvalidate {
				return
			}
			for _, k := range env.Keys {
				col.arrived(si, keyIndex(k), now)
			}
		})
		if err != nil {
			return f, err
		}
		f.Subs = append(f.Subs, c)
	}
	return f, nil
}

// Close closes the instances.
func (f *Fleet) Close() {
	if f.Pub != nil {
		_ = f.Pub.Close()
	}
	for _, c := range f.Subs {
		_ = c.Close()
	}
}

// Latency calls Invalidate on the publisher n times at rate per second
// (each call with its own key; 0: as fast as 256 concurrent callers go) and
// measures call-start to the eviction being done on each subscriber.
// Measurements of one Fleet run one at a time.
func (f *Fleet) Latency(ctx context.Context, n int, rate float64) (Result, error) {
	r, err := Interleave(ctx, []Side{f.Side(ctx, n)}, n, rate)
	return r[0], err
}

// Side prepares the measurement of Latency as a Side of Interleave.
func (f *Fleet) Side(ctx context.Context, n int) Side {
	col := newCollector(n, len(f.Subs))
	gaps := f.gaps()
	f.col.Store(col)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = "pb:" + strconv.Itoa(i)
	}
	return Side{
		col:  col,
		send: func(i int) error { return f.Pub.Invalidate(ctx, keys[i]) },
		done: func(r *Result) {
			f.col.Store(nil)
			if r != nil {
				r.Gaps = f.gaps() - gaps
			}
		},
	}
}

// gaps is the sequence gaps the subscribers detected so far.
func (f *Fleet) gaps() uint64 {
	var n uint64
	for _, c := range f.Subs {
		n += c.Stats().Gaps
	}
	return n
}

// EngineLatency opens a Fleet, measures its Latency once and closes it.
func EngineLatency(ctx context.Context, newBackplane func() (core.Backplane, error), subscribers, n int, rate float64, opts ...core.Option) (Result, error) {
	f, err := OpenFleet(ctx, newBackplane, subscribers, opts...)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	return f.Latency(ctx, n, rate)
}
