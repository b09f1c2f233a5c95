package core

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Cache is the engine: a local store kept coherent with other instances
// over a Backplane.
//
// Reads (Get, GetOrLoad) are served from the local store. Invalidate and
// Clear evict locally and then broadcast; other instances evict when the
// message arrives. A Cache is safe for concurrent use. It owns the store and
// the backplane it is given and closes them on Close.
//
// Lifecycle: New does no I/O and starts no goroutine; Start subscribes and
// returns once delivery is active; Close (or Shutdown) drains pending
// publishes and releases everything.
type Cache struct {
	store LocalStore
	bp    Backplane
	opts  Options
	id    SourceID
	log   *slog.Logger
	inst  *instruments
	ctr   counters
	now   func() time.Time
	seed  maphash.Seed
	// coarse is the wall clock in Unix nanoseconds, refreshed every
	// coarseTick while started: reading the clock costs more than the
	// rest of a cache hit on some hosts. Tests with their own clock
	// bypass it (exactClock).
	coarse      atomic.Int64
	clockRead   atomic.Bool   // a read used the clock since the last tick
	clockAsleep atomic.Bool   // clockLoop sleeps until a read wakes it
	clockWake   chan struct{} // buffered: wakes clockLoop
	exactClock  bool

	stripes [numStripes]stripe

	flightMu sync.Mutex
	flights  map[string]*flight
	// nflights is len(flights), for a look without flightMu: an eviction
	// that finds no load in flight has none to detach. Changed with
	// flightMu held.
	nflights atomic.Int32

	maxPayload int // for the envelope, without the signature trailer
	trailer    int

	// lifecycle
	lifeMu    sync.RWMutex // guards started/closed transitions against enqueue
	started   bool
	closed    bool
	inflight  sync.WaitGroup // Invalidate/Clear calls between enqueue and done
	reqs      chan *pubReq
	pubToken  chan struct{} // held by whoever publishes; guards seq
	kick      chan struct{}
	seq       uint64       // last sequence number used
	sender    Sender       // bp as a Sender, or nil
	maxRounds int          // rounds that may be in flight at once (see mayOverlap)
	rounds    atomic.Int32 // rounds in flight whose callers released the token
	// the context publish rounds share (see roundContext); guarded by
	// pubToken
	roundCtx      context.Context
	roundCancel   context.CancelFunc
	roundDeadline time.Time
	// the context that confirmations over a Sender share (see
	// waitContext), and what abandons it; guarded by pubToken
	waitCtx     context.Context // a child of roundCtx, or nil
	waitAbandon func()
	stop        chan struct{}
	runCtx      context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeErr    error
	closeOne    sync.Once

	// receive side, guarded by recvMu
	recvMu    sync.Mutex
	peers     map[SourceID]*peer
	linkUp    bool
	silent    bool
	lastRecv  time.Time
	ownFresh  time.Time // newest publish time (own clock) of an own message that came back
	baseline  time.Time // since when the peer table is complete
	lastFlush time.Time
	lastCause string
	lastHeard time.Time
	// reorderWindow is Options.ReorderWindow over a transport whose
	// messages may overtake one another, zero otherwise.
	reorderWindow time.Duration
	reorderTimer  *time.Timer // runs expireReorders while messages are missing
	selfCanary    time.Time   // when the own canary last came back
	canarySince   time.Time   // since when canaries are expected
	degraded      atomic.Bool // not caching: link down or silent under PolicyFlush
	pendingCalls  atomic.Int64
	queued        atomic.Int64 // calls handed to the publisher and not answered (tests)
	reorderChecks atomic.Int64 // runs of expireReorders (tests)
}

const numStripes = 1024

// stripe serialises fills against evictions of the keys that hash to it.
// gen changes on every eviction, so a load that started before an eviction
// is not cached.
type stripe struct {
	mu  sync.Mutex
	gen atomic.Uint64
	_   [40]byte // keep stripes on separate cache lines
}

type flight struct {
	done    chan struct{}
	val     []byte
	err     error
	ctxDone bool // the leader's context ended: waiters retry
}

type peer struct {
	// highest is the highest sequence number the peer is known to have
	// used, by a message of it or by its heartbeat.
	highest uint64
	// missing are the numbers up to highest whose messages have not
	// arrived yet, oldest first, while they may still arrive (a reorder
	// window); empty otherwise.
	missing    []missingSeq
	lastSeen   time.Time
	lastCanary time.Time
	canaryLag  time.Duration
}

// missingSeq is a sequence number waited for since a later one was seen.
type missingSeq struct {
	seq   uint64
	since time.Time
}

// maxMissing bounds the messages of a peer that may be waited for at once;
// beyond it they count as lost at once.
const maxMissing = 1024

// arrived records the arrival of message seq. It reports whether messages
// were given up as lost: at once without a reorder window, or when too
// many are missing.
func (p *peer) arrived(seq uint64, now time.Time, window time.Duration) bool {
	if seq <= p.highest {
		// An overtaken message, or a duplicate, or a message given up
		// for lost: evicting again is harmless.
		if i := slices.IndexFunc(p.missing, func(m missingSeq) bool { return m.seq == seq }); i >= 0 {
			p.missing = slices.Delete(p.missing, i, i+1)
		}
		return false
	}
	gap := p.announced(seq-1, now, window)
	p.highest = seq
	return gap
}

// announced records that the peer has used every sequence number up to seq
// (a heartbeat or a goodbye says so), and reports like arrived.
func (p *peer) announced(seq uint64, now time.Time, window time.Duration) bool {
	if seq <= p.highest {
		return false
	}
	from := p.highest + 1
	p.highest = seq
	if window <= 0 || seq-from >= uint64(maxMissing-len(p.missing)) {
		p.giveUp()
		return true
	}
	for n := from; n <= seq; n++ {
		p.missing = append(p.missing, missingSeq{seq: n, since: now})
	}
	return false
}

// waitingSince is when the longest-missing message was first missed; zero
// when none is missing.
func (p *peer) waitingSince() time.Time {
	if len(p.missing) == 0 {
		return time.Time{}
	}
	return p.missing[0].since
}

// giveUp counts every missing message as lost.
func (p *peer) giveUp() { p.missing = p.missing[:0] }

// CanaryKey is the key the canary probe invalidates (Options.CanaryInterval).
const CanaryKey = "\x00backplane.canary"

func hasCanary(keys []string) bool {
	for _, k := range keys {
		if k == CanaryKey {
			return true
		}
	}
	return false
}

// smallBatch is the number of keys up to which a round is de-duplicated
// without a map.
const smallBatch = 16

type pubReq struct {
	op   Op
	keys []string
	done chan error
	one  [1]string // keys of a call with one key
}

// New returns a Cache over store and bp. It validates the options and does
// no I/O; call Start to subscribe.
func New(store LocalStore, bp Backplane, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil LocalStore", ErrInvalidOption)
	}
	if bp == nil {
		return nil, fmt.Errorf("%w: nil Backplane", ErrInvalidOption)
	}
	o := DefaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	max := bp.Limits().MaxPayload
	if o.MaxPayload > 0 && (max <= 0 || o.MaxPayload < max) {
		max = o.MaxPayload
	}
	trailer := 0
	if o.Keyring != nil {
		trailer = o.Keyring.trailerLen()
	}
	if max < minPayload+trailer {
		return nil, fmt.Errorf("%w: transport payload limit %d is below the minimum %d", ErrInvalidOption, max, minPayload+trailer)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now, o.realClock = time.Now, true
	}
	c := &Cache{
		store:      store,
		bp:         bp,
		opts:       o,
		id:         NewSourceID(),
		inst:       newInstruments(o.MeterProvider),
		now:        o.now,
		seed:       maphash.MakeSeed(),
		flights:    make(map[string]*flight),
		maxPayload: max - trailer,
		trailer:    trailer,
		reqs:       make(chan *pubReq, o.QueueSize),
		pubToken:   make(chan struct{}, 1),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		peers:      make(map[SourceID]*peer),
	}
	c.log = o.Logger.With("backplane.instance", c.id.String()[:8])
	c.exactClock = o.now != nil && !o.realClock
	c.coarse.Store(time.Now().UnixNano())
	c.clockWake = make(chan struct{}, 1)
	c.sender, _ = bp.(Sender)
	return c, nil
}

// Open is New followed by Start.
func Open(ctx context.Context, store LocalStore, bp Backplane, opts ...Option) (*Cache, error) {
	c, err := New(store, bp, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// ID returns this instance's source ID.
func (c *Cache) ID() SourceID { return c.id }

// Start subscribes to the backplane and returns once delivery is active,
// then starts publishing and heartbeats. ctx bounds the subscription setup.
func (c *Cache) Start(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started {
		return errors.New("backplane: already started")
	}
	if err := c.bp.Subscribe(ctx, handler{c}); err != nil {
		return fmt.Errorf("backplane: subscribe: %w", err)
	}
	// Some transports learn their limits only once connected: keep the
	// smaller payload limit of the two.
	lim := c.bp.Limits()
	c.maxRounds = lim.ConcurrentPublish
	if c.sender != nil && c.maxRounds == 0 {
		c.maxRounds = senderRounds
	}
	if l := lim.MaxPayload - c.trailer; l > 0 && l < c.maxPayload {
		if l < minPayload {
			return fmt.Errorf("%w: transport payload limit %d is below the minimum %d", ErrInvalidOption, l+c.trailer, minPayload+c.trailer)
		}
		c.maxPayload = l
	}
	now := c.now()
	c.recvMu.Lock()
	c.linkUp = true
	c.lastRecv, c.baseline, c.ownFresh = now, now, now
	if c.sender == nil && c.maxRounds > 1 {
		c.reorderWindow = c.opts.ReorderWindow
	}
	c.recvMu.Unlock()
	c.runCtx, c.cancel = context.WithCancel(context.Background())
	c.started = true
	c.wg.Add(2)
	go c.publishLoop()
	go c.clockLoop()
	if c.opts.HeartbeatInterval > 0 {
		c.wg.Add(1)
		go c.monitorLoop()
	}
	if c.opts.CanaryInterval > 0 {
		c.recvMu.Lock()
		c.canarySince = now
		c.recvMu.Unlock()
		c.wg.Add(1)
		go c.canaryLoop()
	}
	return nil
}

// coarseTick is how often the read path's clock is refreshed: entries may
// outlive their TTL by up to this much.
const coarseTick = 5 * time.Millisecond

// clockIdleTicks is how many ticks without a read put the clock to sleep.
const clockIdleTicks = 20

// clockLoop refreshes the read path's clock every coarseTick while reads
// happen. After clockIdleTicks ticks without a read it sleeps, so that an
// instance that only publishes and evicts is not woken 200 times a second;
// the first read after that reads the exact clock and wakes it.
func (c *Cache) clockLoop() {
	defer c.wg.Done()
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	idle := 0
	for {
		select {
		case now := <-t.C:
			c.coarse.Store(now.UnixNano())
			if c.clockRead.Swap(false) {
				idle = 0
				continue
			}
			if idle++; idle < clockIdleTicks {
				continue
			}
			t.Stop()
			c.clockAsleep.Store(true)
			select {
			case <-c.clockWake:
			case <-c.stop:
				return
			}
			idle = 0
			t.Reset(coarseTick)
		case <-c.stop:
			return
		}
	}
}

// nowNano is the read path's clock.
func (c *Cache) nowNano() int64 {
	if c.exactClock {
		return c.now().UnixNano()
	}
	if c.clockAsleep.Load() {
		n := time.Now().UnixNano()
		c.coarse.Store(n)
		if c.clockAsleep.CompareAndSwap(true, false) {
			select {
			case c.clockWake <- struct{}{}:
			default:
			}
		}
		return n
	}
	if !c.clockRead.Load() {
		// Stored once per tick at most: readers on other cores keep the
		// cache line shared.
		c.clockRead.Store(true)
	}
	return c.coarse.Load()
}

// canaryLoop publishes the canary through the Invalidate path.
func (c *Cache) canaryLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.CanaryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		ctx, cancel := context.WithTimeout(c.runCtx, c.opts.PublishTimeout)
		if err := c.Invalidate(ctx, CanaryKey); err != nil && !errors.Is(err, ErrClosed) {
			c.log.Debug("backplane: canary not published", "err", err)
		}
		cancel()
	}
}

// Close drains pending publishes (bounded by Options.CloseTimeout), then
// unsubscribes and closes the backplane and the store. It is idempotent;
// every call returns the first call's result.
func (c *Cache) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.CloseTimeout)
	defer cancel()
	return c.Shutdown(ctx)
}

// Shutdown is Close bounded by ctx instead of Options.CloseTimeout: calls of
// Invalidate and Clear already accepted are published unless ctx ends
// first, in which case they return an error.
func (c *Cache) Shutdown(ctx context.Context) error {
	c.closeOne.Do(func() { c.closeErr = c.shutdown(ctx) })
	return c.closeErr
}

func (c *Cache) shutdown(ctx context.Context) error {
	c.lifeMu.Lock()
	c.closed = true
	started := c.started
	c.lifeMu.Unlock()
	var errs []error
	if started {
		drained := make(chan struct{})
		go func() { c.inflight.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("backplane: close: pending publishes not drained: %w", ctx.Err()))
			c.cancel() // fail the publish in progress
			<-drained  // callers return promptly once their publish fails
		}
		close(c.stop)
		c.wg.Wait()
		c.cancel()
		c.recvMu.Lock()
		if c.reorderTimer != nil {
			c.reorderTimer.Stop()
		}
		c.recvMu.Unlock()
	}
	if err := c.bp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close transport: %w", err))
	}
	if err := c.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close store: %w", err))
	}
	return errors.Join(errs...)
}

// ready reports whether the cache may be used: ErrClosed or ErrNotStarted.
func (c *Cache) ready() error {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	switch {
	case c.closed:
		return ErrClosed
	case !c.started:
		return ErrNotStarted
	}
	return nil
}

func (c *Cache) stripeOf(key string) *stripe {
	return &c.stripes[maphash.String(c.seed, key)%numStripes]
}

// Values are stored with an 8-byte header: the expiry in Unix nanoseconds,
// or 0 for none.
const valueHeader = 8

// Get returns the value cached under key on this instance. The caller owns
// the returned slice. Get never touches the network.
func (c *Cache) Get(key string) ([]byte, bool) {
	v, ok := c.get(key)
	if ok {
		c.ctr.hits.Add(1)
		c.inst.add(c.inst.hits, 1)
	} else {
		c.ctr.misses.Add(1)
		c.inst.add(c.inst.misses, 1)
	}
	return v, ok
}

func (c *Cache) get(key string) ([]byte, bool) {
	raw, ok := c.store.Get(key)
	if !ok || len(raw) < valueHeader {
		return nil, false
	}
	if exp := int64(binary.BigEndian.Uint64(raw)); exp != 0 && c.nowNano() >= exp {
		c.dropExpired(key)
		return nil, false
	}
	return raw[valueHeader:], true
}

// dropExpired deletes key if it is still expired, under its stripe lock so
// that a fresh fill is never deleted.
func (c *Cache) dropExpired(key string) {
	s := c.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	raw, ok := c.store.Get(key)
	if ok && len(raw) >= valueHeader {
		if exp := int64(binary.BigEndian.Uint64(raw)); exp != 0 && c.now().UnixNano() >= exp {
			_ = c.store.Delete(key)
		}
	}
}

// Set caches value under key on this instance only, with Options.TTL. It is
// a cache fill: to tell other instances that the data changed, call
// Invalidate. While the link is degraded (see Options.OnDisconnect) Set
// keeps nothing.
func (c *Cache) Set(key string, value []byte) error { return c.SetWithTTL(key, value, c.opts.TTL) }

// SetWithTTL is Set with its own TTL (zero: no expiry; jitter applies).
func (c *Cache) SetWithTTL(key string, value []byte, ttl time.Duration) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if ttl < 0 {
		return fmt.Errorf("%w: negative TTL %v", ErrInvalidOption, ttl)
	}
	if err := c.ready(); err != nil {
		return err
	}
	s := c.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1) // loads in flight are older than this value
	c.detachFlight(key)
	if c.degraded.Load() {
		return c.store.Delete(key)
	}
	return c.storeLocked(key, value, ttl)
}

func (c *Cache) storeLocked(key string, value []byte, ttl time.Duration) error {
	buf := make([]byte, valueHeader+len(value))
	var exp int64
	if ttl > 0 {
		if j := c.opts.TTLJitter; j > 0 {
			ttl = time.Duration(float64(ttl) * (1 + j*(2*rand.Float64()-1)))
		}
		exp = c.now().Add(ttl).UnixNano()
	}
	binary.BigEndian.PutUint64(buf, uint64(exp))
	copy(buf[valueHeader:], value)
	return c.store.Set(key, buf, ttl)
}

// Delete evicts keys on this instance only. To evict them everywhere, call
// Invalidate.
func (c *Cache) Delete(keys ...string) error {
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	if c.isClosed() {
		return ErrClosed
	}
	c.evictLocal(keys)
	return nil
}

func (c *Cache) isClosed() bool {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	return c.closed
}

// evictLocal deletes keys and invalidates loads in flight for them.
func (c *Cache) evictLocal(keys []string) {
	for i, k := range keys {
		s := c.stripeOf(k)
		s.mu.Lock()
		s.gen.Add(1)
		_ = c.store.Delete(keys[i : i+1]...) // a sub-slice: no allocation
		c.detachFlight(k)
		s.mu.Unlock()
	}
}

// detachFlight makes the next GetOrLoad of key start a new load instead of
// joining one that started before an eviction.
func (c *Cache) detachFlight(key string) {
	// A load that starts after this look reads the stripe's generation
	// after the caller bumped it: it is not one to detach.
	if c.nflights.Load() == 0 {
		return
	}
	c.flightMu.Lock()
	c.dropFlight(key, nil)
	c.flightMu.Unlock()
}

// dropFlight forgets the load in flight for key: f, or any if f is nil.
// Called with flightMu held.
func (c *Cache) dropFlight(key string, f *flight) {
	if g, ok := c.flights[key]; ok && (f == nil || g == f) {
		delete(c.flights, key)
		c.nflights.Add(-1)
	}
}

// flush clears the store for safety and makes every load in flight
// uncacheable.
func (c *Cache) flush(cause string) {
	for i := range c.stripes {
		c.stripes[i].mu.Lock()
	}
	for i := range c.stripes {
		c.stripes[i].gen.Add(1)
	}
	err := c.store.Clear()
	c.flightMu.Lock()
	c.flights = make(map[string]*flight)
	c.nflights.Store(0)
	c.flightMu.Unlock()
	for i := range c.stripes {
		c.stripes[i].mu.Unlock()
	}
	if cause == "" {
		return
	}
	c.ctr.flushes.Add(1)
	c.inst.flush(cause)
	c.lastFlush, c.lastCause = c.now(), cause
	if err != nil {
		c.log.Error("backplane: flush failed", "cause", cause, "err", err)
		return
	}
	c.log.Warn("backplane: local cache flushed", "cause", cause)
}

// GetOrLoad returns the value cached under key, or calls loader, caches its
// result and returns it. Concurrent calls for the same key on this instance
// share one loader call. A load that overlaps an eviction of its key (local
// or remote Invalidate, Clear, or a safety flush) is returned to its callers
// but not cached. Loader errors are returned and nothing is cached. The
// caller owns the returned slice.
func (c *Cache) GetOrLoad(ctx context.Context, key string, loader func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if loader == nil {
		return nil, ErrNilLoader
	}
	if err := c.ready(); err != nil {
		return nil, err
	}
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	for {
		c.flightMu.Lock()
		if f, ok := c.flights[key]; ok {
			c.flightMu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if f.ctxDone {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				continue // the leader gave up; try again with our context
			}
			if f.err != nil {
				return nil, f.err
			}
			return append([]byte(nil), f.val...), nil
		}
		f := &flight{done: make(chan struct{})}
		c.flights[key] = f
		c.nflights.Add(1)
		c.flightMu.Unlock()
		return c.lead(ctx, key, f, loader)
	}
}

func (c *Cache) lead(ctx context.Context, key string, f *flight, loader func(context.Context) ([]byte, error)) (val []byte, err error) {
	s := c.stripeOf(key)
	gen := s.gen.Load()
	defer func() {
		c.flightMu.Lock()
		c.dropFlight(key, f)
		c.flightMu.Unlock()
		f.val, f.err = val, err
		f.ctxDone = err != nil && ctx.Err() != nil
		close(f.done)
	}()
	// A load that finished between this caller's miss and its taking the
	// lead stored its value before leaving: use it.
	if v, ok := c.get(key); ok {
		return v, nil
	}
	c.ctr.loads.Add(1)
	val, err = callLoader(ctx, key, loader)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	kept := s.gen.Load() == gen && !c.degraded.Load()
	if kept {
		if serr := c.storeLocked(key, val, c.opts.TTL); serr != nil {
			kept = false
			c.log.Debug("backplane: value not cached", "key", key, "err", serr)
		}
	}
	s.mu.Unlock()
	if !kept {
		c.ctr.loadsNotKept.Add(1)
	}
	return val, nil
}

func callLoader(ctx context.Context, key string, loader func(context.Context) ([]byte, error)) (val []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("backplane: loader for %q panicked: %v", key, r)
		}
	}()
	return loader(ctx)
}

// Invalidate evicts keys on this instance, then publishes them so that
// every other instance evicts them too. It returns once the message is on
// the broker, or with the error. Concurrent calls are coalesced into few
// messages: on an idle instance the caller publishes itself, otherwise its
// keys go out with the next round. If ctx ends first, Invalidate returns
// ctx's error; the keys may still be published (a round that carries other
// callers' keys too finishes, bounded by Options.PublishTimeout).
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > c.opts.MaxKeysPerCall {
		return fmt.Errorf("%w: %d keys in one call (max %d)", ErrTooManyKeys, len(keys), c.opts.MaxKeysPerCall)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	if err := c.ready(); err != nil {
		return err
	}
	c.evictLocal(keys)
	// The round may be encoded after a cancelled caller returned: it owns a
	// copy of the keys, never the caller's slice.
	r := &pubReq{op: OpInvalidate}
	if len(keys) == 1 {
		r.one[0] = keys[0]
		r.keys = r.one[:]
	} else {
		r.keys = slices.Clone(keys)
	}
	return c.enqueue(ctx, r)
}

// Clear evicts every entry on this instance, then tells every other
// instance to do the same. It returns once the message is on the broker.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.ready(); err != nil {
		return err
	}
	c.flush("")
	return c.enqueue(ctx, &pubReq{op: OpClear})
}

// enqueue publishes r, as a round of its own or with others, and returns
// once that round is answered or ctx ends.
func (c *Cache) enqueue(ctx context.Context, r *pubReq) error {
	c.lifeMu.RLock()
	if c.closed {
		c.lifeMu.RUnlock()
		return ErrClosed
	}
	c.inflight.Add(1)
	c.lifeMu.RUnlock()
	// Counted as pending before the request is handed on, so the
	// publisher's decrement never comes first; a failed send takes it back.
	c.pendingCalls.Add(1)
	// Group commit with a leader: when nobody is publishing, the caller
	// publishes itself, saving the wake-up of another goroutine on an idle
	// instance; otherwise the current publisher takes the request in its
	// next round.
	if c.tryToken() {
		if len(c.reqs) == 0 {
			// Nothing waits: a round of r alone, without queueing it.
			c.queued.Add(1)
			batch := [1]*pubReq{r}
			if c.mayOverlap() {
				return c.sendRound(ctx, batch[:]) // releases the token
			}
			err := c.publishBatch(ctx, batch[:])
			<-c.pubToken
			if len(c.reqs) > 0 {
				c.kickPublisher()
			}
			return err
		}
		<-c.pubToken // others wait: r queues behind them
		// Whoever queued them may have found the token taken (by this
		// caller) and be waiting: make sure someone publishes them.
		c.kickPublisher()
	}
	r.done = make(chan error, 1)
	select {
	case c.reqs <- r: // the publisher now owns the inflight count
	case <-ctx.Done():
		c.pendingCalls.Add(-1)
		c.inflight.Done()
		return ctx.Err()
	}
	c.queued.Add(1)
	if c.tryToken() {
		c.leadRounds(ctx, r) // releases the token
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leadRounds publishes rounds until r is answered or has gone out, and
// releases the publish token. A round that carries only r is bounded by
// the caller's ctx too. A round that may overlap the next one is the last
// this caller leads: it releases the token before its round trip, and
// whatever is still queued goes to the publisher.
func (c *Cache) leadRounds(ctx context.Context, r *pubReq) {
	for len(r.done) == 0 {
		batch := c.collect()
		if len(batch) == 0 {
			break // r was in a round that finished before this one
		}
		var own context.Context
		if len(batch) == 1 && batch[0] == r {
			own = ctx
		}
		if c.mayOverlap() {
			c.sendRound(own, batch) // releases the token
			return
		}
		c.publishBatch(own, batch)
	}
	<-c.pubToken
	if len(c.reqs) > 0 {
		c.kickPublisher()
	}
}

// mayOverlap reports whether the next round may go out while the rounds in
// flight wait for the broker (over a Sender, or over a transport that
// publishes on several connections): up to maxRounds-1 rounds whose callers
// released the token, plus the token holder's. Beyond that the token holder
// keeps the token for its round trip, and the calls that arrive meanwhile
// queue and go out together: under load, rounds grow rather than multiply.
// Called with the publish token held.
func (c *Cache) mayOverlap() bool {
	return int(c.rounds.Load()) < c.maxRounds-1
}

// senderRounds is how many rounds may be in flight over a Sender that
// declares no Limits.ConcurrentPublish of its own.
const senderRounds = 4

// tryToken takes the publish token if it is free.
func (c *Cache) tryToken() bool {
	select {
	case c.pubToken <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Cache) kickPublisher() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// publishLoop publishes heartbeats, the goodbye, and the rounds that no
// caller leads.
func (c *Cache) publishLoop() {
	defer c.wg.Done()
	var tick <-chan time.Time
	if c.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(c.opts.HeartbeatInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var heartbeat, leave bool
		select {
		case <-c.kick:
		case <-tick:
			heartbeat = true
		case <-c.stop:
			leave = true
		}
		c.pubToken <- struct{}{}
		for {
			batch := c.collect()
			if len(batch) == 0 {
				break
			}
			switch {
			case !c.mayOverlap():
				c.publishBatch(nil, batch)
			case c.sender != nil:
				// The round's confirmation is waited for without the
				// publisher, which stays free for what queues meanwhile.
				c.overlap(batch)
			default:
				// Without a Sender the whole round goes on without the
				// publisher, which takes the token back once the round
				// has its sequence numbers: what queues meanwhile makes
				// the next round larger.
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					_ = c.sendRound(nil, batch) // releases the token; its callers have the error
				}()
				c.pubToken <- struct{}{}
			}
		}
		switch {
		case leave:
			// Every accepted call is answered by now: say goodbye, so
			// that peers do not take this instance's silence for a loss.
			if c.opts.HeartbeatInterval > 0 {
				c.publish(nil, []Envelope{{Op: OpLeave, Source: c.id, Seq: c.seq}}, OpLeave)
			}
			<-c.pubToken
			return
		case heartbeat:
			c.publish(nil, []Envelope{{Op: OpHeartbeat, Source: c.id, Seq: c.seq}}, OpHeartbeat)
		}
		<-c.pubToken
		if len(c.reqs) > 0 {
			c.kickPublisher()
		}
	}
}

// collect takes what is queued, up to MaxBatchKeys keys.
func (c *Cache) collect() []*pubReq {
	var batch []*pubReq
	n := 0
	for n < c.opts.MaxBatchKeys {
		select {
		case r := <-c.reqs:
			batch = append(batch, r)
			n += len(r.keys)
		default:
			return batch
		}
	}
	return batch
}

// answer ends the calls of a round with its error.
func (c *Cache) answer(batch []*pubReq, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
		c.queued.Add(-1)
		c.pendingCalls.Add(-1)
		c.inflight.Done()
	}
}

// publishBatch publishes one coalesced round, answers its queued callers
// and returns the round's error.
func (c *Cache) publishBatch(ctx context.Context, batch []*pubReq) error {
	envs := c.encodeBatch(batch, &c.seq)
	err := c.publish(ctx, envs, OpInvalidate)
	c.answer(batch, err)
	return err
}

// encodeBatch de-duplicates the batch's keys and splits them into
// envelopes that fit the payload limit. A clear in the batch subsumes every
// key of it.
func (c *Cache) encodeBatch(batch []*pubReq, seq *uint64) []Envelope {
	now := c.now()
	for _, r := range batch {
		if r.op == OpClear {
			*seq++
			return []Envelope{{Op: OpClear, Source: c.id, Seq: *seq, Sent: now}}
		}
	}
	if len(batch) == 1 && len(batch[0].keys) == 1 {
		// The common round of one call with one key: nothing to split
		// or de-duplicate.
		*seq++
		return []Envelope{{Op: OpInvalidate, Source: c.id, Seq: *seq, Sent: now, Keys: batch[0].keys}}
	}
	total := 0
	for _, r := range batch {
		total += len(r.keys)
	}
	var envs []Envelope
	var cur []string
	// Few keys are de-duplicated by scanning the keys accepted so far;
	// many through a map.
	var seen map[string]struct{}
	if total > smallBatch {
		seen = make(map[string]struct{}, total)
	}
	dup := func(k string) bool {
		if seen == nil {
			return slices.Contains(cur, k) || slices.ContainsFunc(envs, func(e Envelope) bool { return slices.Contains(e.Keys, k) })
		}
		if _, ok := seen[k]; ok {
			return true
		}
		seen[k] = struct{}{}
		return false
	}
	size := headerLen + 3
	emit := func() {
		*seq++
		envs = append(envs, Envelope{Op: OpInvalidate, Source: c.id, Seq: *seq, Sent: now, Keys: cur})
		cur, size = nil, headerLen+3
	}
	for _, r := range batch {
		for _, k := range r.keys {
			if dup(k) {
				continue
			}
			kl := keyEncodedLen(k)
			if len(cur) > 0 && (size+kl > c.maxPayload || len(cur) == MaxKeysPerMessage) {
				emit()
			}
			cur = append(cur, k)
			size += kl
		}
	}
	if len(cur) > 0 {
		emit()
	}
	return envs
}

// publish encodes and sends envs in one Publish call, bounded by
// PublishTimeout, Close, and ctx when not nil.
func (c *Cache) publish(ctx context.Context, envs []Envelope, op Op) error {
	if len(envs) == 0 {
		return nil
	}
	payloads, keys, err := c.encode(envs)
	if err != nil {
		return err
	}
	pctx, release := c.roundCtxFor(ctx)
	start := time.Now()
	err = c.bp.Publish(pctx, payloads...)
	release()
	return c.published(op, envs[0].Op, len(payloads), keys, start, err)
}

// encode encodes envs (signed with a Keyring) and counts their keys.
func (c *Cache) encode(envs []Envelope) (payloads [][]byte, keys int, err error) {
	payloads = make([][]byte, len(envs))
	for i := range envs {
		if envs[i].Sent.IsZero() {
			envs[i].Sent = c.now()
		}
		var p []byte
		if kr := c.opts.Keyring; kr != nil {
			p, err = kr.AppendSigned(make([]byte, 0, envs[i].EncodedLen()+kr.trailerLen()), &envs[i])
		} else {
			p, err = envs[i].MarshalBinary()
		}
		if err != nil { // keys were validated on entry: this is a bug
			return nil, 0, fmt.Errorf("backplane: encode: %w", err)
		}
		payloads[i] = p
		keys += len(envs[i].Keys)
	}
	return payloads, keys, nil
}

// published counts the outcome of a publish that started at start and
// returns the error to give its callers.
func (c *Cache) published(op, first Op, messages, keys int, start time.Time, err error) error {
	c.inst.record(c.inst.publishDuration, time.Since(start))
	if err != nil {
		c.ctr.publishErrors.Add(1)
		c.inst.add(c.inst.publishErrors, 1)
		if op != OpHeartbeat {
			c.log.Warn("backplane: publish failed", "op", op, "messages", messages, "err", err)
		}
		return fmt.Errorf("backplane: publish: %w", err)
	}
	c.ctr.published.Add(uint64(messages))
	c.ctr.keysPublished.Add(uint64(keys))
	c.inst.opCount(c.inst.published, first, int64(messages))
	return nil
}

// sendRound publishes a round that may overlap the next one (mayOverlap)
// and answers it like publishBatch. Over a Sender it sends holding the
// publish token; over a transport that publishes on several connections it
// only encodes. Before it releases the token, it starts rounds of the calls
// that queued meanwhile (startQueued); then it waits for the confirmation,
// or publishes. Later rounds may go out meanwhile.
func (c *Cache) sendRound(ctx context.Context, batch []*pubReq) error {
	r := c.startRound(ctx, batch)
	c.startQueued()
	<-c.pubToken
	if len(c.reqs) > 0 {
		c.kickPublisher()
	}
	return c.finishRound(&r)
}

// round is a publish round under way.
type round struct {
	batch    []*pubReq
	envs     []Envelope
	payloads [][]byte
	keys     int
	ctx      context.Context             // the round's (roundContext)
	wait     context.Context             // what its confirmation or Publish waits with
	caller   context.Context             // the caller's that can end, or nil
	release  func()                      // frees wait, or nil
	stop     func() bool                 // stops abandoning wait when caller ends, or nil
	confirm  func(context.Context) error // over a Sender
	start    time.Time
	err      error
}

// startRound encodes a round that may overlap the next one and, over a
// Sender, sends it; finishRound ends it. A caller's ctx that can end (given
// for a round that carries only that caller's keys) bounds the round: a
// round whose caller left before it was sent is not sent, and the caller's
// leaving ends the wait for the round's confirmation (see waitContext) or
// its Publish (linkCaller). Called with the publish token held.
func (c *Cache) startRound(ctx context.Context, batch []*pubReq) round {
	r := round{batch: batch}
	r.envs = c.encodeBatch(batch, &c.seq)
	r.payloads, r.keys, r.err = c.encode(r.envs)
	r.start = time.Now()
	if r.err == nil {
		r.ctx = c.roundContext()
		if ctx != nil && ctx.Done() != nil {
			r.caller = ctx
			r.err = ctx.Err()
		}
		switch {
		case r.err != nil:
		case c.sender == nil:
			r.wait, r.release = linkCaller(r.ctx, r.caller)
		default:
			r.wait = c.waitContext()
			if r.caller != nil {
				r.stop = context.AfterFunc(r.caller, c.waitAbandon)
			}
			r.confirm, r.err = c.sender.Send(r.ctx, r.payloads...)
		}
	}
	c.rounds.Add(1)
	return r
}

// finishRound waits for the confirmation of a round started by startRound
// (or publishes it, if the transport is not a Sender), answers its callers
// and returns its error. Called without the publish token.
func (c *Cache) finishRound(r *round) error {
	err := r.err
	if err == nil {
		if r.confirm != nil {
			err = c.confirmRound(r)
		} else {
			err = c.bp.Publish(r.wait, r.payloads...)
		}
	}
	if r.stop != nil {
		r.stop()
	}
	if r.release != nil {
		r.release()
	}
	c.rounds.Add(-1)
	if len(r.envs) > 0 {
		err = c.published(OpInvalidate, r.envs[0].Op, len(r.payloads), r.keys, r.start, err)
	}
	c.answer(r.batch, err)
	return err
}

// confirmRound waits for the confirmation of a round over a Sender. When
// another caller abandoned the wait (its ctx ended), the round waits again,
// on a context of its own: confirm may be called again.
func (c *Cache) confirmRound(r *round) error {
	err := r.confirm(r.wait)
	if err != nil && context.Cause(r.wait) == errAbandoned && (r.caller == nil || r.caller.Err() == nil) {
		ctx, release := linkCaller(r.ctx, r.caller)
		err = r.confirm(ctx)
		release()
	}
	return err
}

// overlap starts a round of batch and finishes it on a goroutine of its
// own. Called with the publish token held, which it keeps.
func (c *Cache) overlap(batch []*pubReq) {
	r := c.startRound(nil, batch)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.finishRound(&r) // its callers have the error
	}()
}

// startQueued sends rounds of the calls queued while rounds may overlap
// (each confirmed on a goroutine of its own), and leaves the rest queued.
// The token holder calls it before it releases the token: it is running, so
// the queued calls go out without waiting until the publisher's goroutine
// is scheduled. Only over a Sender: without one, a round goes out from a
// goroutine of its own anyway, and the calls that queue while the publisher
// wakes make fewer, larger rounds. Called with the publish token held,
// which it keeps.
func (c *Cache) startQueued() {
	if c.sender == nil {
		return
	}
	for len(c.reqs) > 0 && c.mayOverlap() {
		batch := c.collect()
		if len(batch) == 0 {
			return
		}
		c.overlap(batch)
	}
}

// roundContext returns the context of a publish round: done at Close or
// when the round's deadline passes. Rounds share one context while its
// deadline is at least PublishTimeout away, which saves a timer per round:
// a round gets PublishTimeout to a quarter more. Called with the publish
// token held.
func (c *Cache) roundContext() context.Context {
	now := time.Now()
	if c.roundCtx == nil || c.roundCtx.Err() != nil || c.roundDeadline.Sub(now) < c.opts.PublishTimeout {
		// The context replaced is not cancelled: a round waiting for its
		// confirmation may still use it; its deadline ends it.
		c.roundDeadline = now.Add(c.opts.PublishTimeout + c.opts.PublishTimeout/4)
		c.roundCtx, c.roundCancel = context.WithDeadline(c.runCtx, c.roundDeadline)
		c.waitCtx = nil // a child of the context replaced
	}
	return c.roundCtx
}

// errAbandoned is the cause of the end of a shared confirmation context
// (waitContext) that a caller abandoned.
var errAbandoned = errors.New("backplane: a caller abandoned its round")

// waitContext returns the context that the confirmations of rounds over a
// Sender wait with: a child of the round context (roundContext), which a
// caller whose ctx ends abandons (c.waitAbandon). That ends the wait of
// every round on it; those whose callers are still there wait again
// (confirmRound). Cancellations are rare: sharing saves each round a context
// and a registration with the round context. Called with the publish token
// held, after roundContext.
func (c *Cache) waitContext() context.Context {
	if c.waitCtx == nil || c.waitCtx.Err() != nil {
		ctx, abandon := context.WithCancelCause(c.roundCtx)
		c.waitCtx = ctx
		c.waitAbandon = func() { abandon(errAbandoned) }
	}
	return c.waitCtx
}

// roundCtxFor returns the context of a round and a function to call when
// the round is done with it. A caller's ctx that can end, given for a round
// that carries only that caller's keys, ends the round too. Called with the
// publish token held.
func (c *Cache) roundCtxFor(ctx context.Context) (context.Context, func()) {
	pctx := c.roundContext()
	if ctx == nil || ctx.Done() == nil {
		return pctx, func() {}
	}
	if c.maxRounds <= 1 {
		// Rounds run one at a time, so cancelling the shared context ends
		// this round only; the next round makes a new one.
		stop := context.AfterFunc(ctx, c.roundCancel)
		return pctx, func() {
			if !stop() {
				// The cancellation is under way and may land after
				// this round: retire the context. (Called before the
				// token is released.)
				c.roundCtx = nil
			}
		}
	}
	// Rounds overlap: this round's cancellation must not reach another's.
	return linkCaller(pctx, ctx)
}

// linkCaller returns a context of its own for a round that overlaps
// others: done when the round's context pctx is, or when the caller's ctx
// (if not nil) ends. release frees it.
func linkCaller(pctx, ctx context.Context) (_ context.Context, release func()) {
	if ctx == nil || ctx.Done() == nil {
		return pctx, func() {}
	}
	rctx, cancel := context.WithCancel(pctx)
	stop := context.AfterFunc(ctx, cancel)
	rctx.Done() // made now rather than by the transport's wait
	return rctx, func() { stop(); cancel() }
}

// handler is the Cache's Handler; a separate type keeps the methods off
// Cache's API.
type handler struct{ c *Cache }

func (h handler) HandleMessage(p []byte) { h.c.receive(p) }
func (h handler) HandleEvent(ev Event)   { h.c.event(ev) }

func (c *Cache) receive(p []byte) {
	if c.opts.Keyring == nil && c.opts.CanaryInterval <= 0 {
		// An own message needs its header only: skip decoding its keys.
		if op, src, sent, ok := peekHeader(p); ok && src == c.id {
			c.recvMu.Lock()
			c.ownMessage(op, sent, false, c.now())
			c.recvMu.Unlock()
			return
		}
	}
	env, err := DecodeEnvelope(p)
	if err != nil {
		c.ctr.decodeErrors.Add(1)
		c.inst.add(c.inst.decodeErrors, 1)
		c.log.Debug("backplane: dropped undecodable payload", "bytes", len(p), "err", err)
		return
	}
	if kr := c.opts.Keyring; kr != nil {
		err := kr.Verify(p, &env)
		if err == nil {
			if age := c.now().Sub(env.Sent); age > c.opts.ReplayWindow || age < -c.opts.ReplayWindow {
				err = fmt.Errorf("%w: published %v from now, outside the replay window %v", ErrBadSignature, -age, c.opts.ReplayWindow)
			}
		}
		if err != nil && !(errors.Is(err, ErrUnsigned) && c.opts.AcceptUnsigned) {
			c.ctr.rejected.Add(1)
			c.inst.add(c.inst.rejected, 1)
			c.log.Debug("backplane: dropped a message that failed verification", "err", err)
			return
		}
	}
	now := c.now()
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	if env.Source == c.id {
		c.ownMessage(env.Op, env.Sent, env.Op == OpInvalidate && hasCanary(env.Keys), now)
		return
	}
	c.lastRecv, c.lastHeard = now, now
	gap := c.trackSeq(&env, now)
	switch env.Op {
	case OpInvalidate:
		c.evictLocal(env.Keys)
		if !env.Sent.IsZero() {
			c.inst.record(c.inst.propagationLag, now.Sub(env.Sent))
		}
		if hasCanary(env.Keys) {
			if p := c.peers[env.Source]; p != nil {
				p.lastCanary, p.canaryLag = now, now.Sub(env.Sent)
			}
			c.inst.record(c.inst.canaryLag, now.Sub(env.Sent))
		}
	case OpClear:
		c.flush("")
	case OpLeave:
		defer delete(c.peers, env.Source) // after the gap check below
	}
	if gap {
		c.gapFound(env.Source)
	}
	// Counters move after the effects: whoever sees them sees the
	// evictions and flushes done.
	c.ctr.keysEvicted.Add(uint64(len(env.Keys)))
	c.ctr.received.Add(1)
	c.inst.opCount(c.inst.received, env.Op, 1)
}

// ownMessage notes an own message received back. Own messages carry the
// own clock: their age is how far behind delivery to this instance runs.
// Only a fresh one ends a silence. Called with recvMu held.
func (c *Cache) ownMessage(op Op, sent time.Time, canary bool, now time.Time) {
	c.lastRecv = now
	if sent.After(c.ownFresh) {
		c.ownFresh = sent
	}
	if c.silent && now.Sub(sent) <= c.opts.heartbeatTimeout() {
		c.silent = false
		c.linkRestored("resumed")
	}
	if canary {
		c.selfCanary = now
	}
	c.ctr.ignoredOwn.Add(1)
	c.inst.add(c.inst.ignoredOwn, 1)
}

// trackSeq updates the peer table and reports whether messages of the
// peer were lost. Called with recvMu held.
func (c *Cache) trackSeq(env *Envelope, now time.Time) bool {
	p, known := c.peers[env.Source]
	if !known {
		// A peer heard of for the first time has published before (Seq
		// says how much). If the peer table is complete (we have listened
		// longer than a heartbeat timeout, so every live peer's heartbeat
		// should have reached us) those messages should have reached us
		// too: they are missing, like any other (and may still arrive, if
		// the peer's messages may overtake one another). Otherwise they
		// may have been published before we listened.
		p = &peer{highest: env.Seq}
		if c.opts.HeartbeatInterval > 0 && now.Sub(c.baseline) > c.opts.heartbeatTimeout() {
			p.highest = 0
		}
		c.peers[env.Source] = p
	}
	p.lastSeen = now
	var gap bool
	if env.Op == OpHeartbeat || env.Op == OpLeave {
		gap = p.announced(env.Seq, now, c.reorderWindow)
		if env.Op == OpLeave && len(p.missing) > 0 {
			// The peer is forgotten now: what is missing cannot be
			// waited for.
			p.giveUp()
			gap = true
		}
	} else {
		gap = p.arrived(env.Seq, now, c.reorderWindow)
	}
	if len(p.missing) > 0 && c.reorderTimer == nil {
		c.reorderTimer = time.AfterFunc(c.reorderWindow, c.expireReorders)
	}
	return gap
}

// expireReorders gives up the messages that were overtaken longer than
// ReorderWindow ago, and waits again while others are missing.
func (c *Cache) expireReorders() {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	c.reorderTimer = nil
	c.reorderChecks.Add(1)
	select {
	case <-c.stop:
		return
	default:
	}
	now := c.now()
	next := time.Duration(0)
	for id, p := range c.peers {
		if len(p.missing) == 0 {
			continue
		}
		if left := c.reorderWindow - now.Sub(p.waitingSince()); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		p.giveUp()
		c.gapFound(id)
	}
	if next > 0 {
		c.reorderTimer = time.AfterFunc(next, c.expireReorders)
	}
}

// gapFound applies OnGap to messages of a peer found lost. Called with
// recvMu held.
func (c *Cache) gapFound(src SourceID) {
	if c.opts.OnGap == PolicyFlush {
		c.flush("gap")
	} else {
		c.log.Warn("backplane: messages lost, keeping cache (OnGap=keep)", "peer", src.String()[:8])
	}
	c.ctr.gaps.Add(1)
}

func (c *Cache) event(ev Event) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	switch ev.Kind {
	case EventConnected:
		c.log.Debug("backplane: connected")
	case EventDisconnected:
		c.log.Warn("backplane: disconnected", "err", ev.Err)
		if c.linkUp {
			c.linkUp = false
			c.linkLost("disconnect")
		}
	case EventReconnected:
		c.log.Info("backplane: reconnected")
		if !c.linkUp {
			c.linkUp = true
			c.lastRecv, c.ownFresh = c.now(), c.now()
			c.linkRestored("reconnect")
		}
	case EventLoss:
		if c.opts.OnGap == PolicyFlush {
			c.flush("loss")
		} else {
			c.log.Warn("backplane: transport lost messages, keeping cache (OnGap=keep)", "err", ev.Err)
		}
		c.ctr.gaps.Add(1)
	}
}

// linkLost applies OnDisconnect. Called with recvMu held.
func (c *Cache) linkLost(cause string) {
	if c.opts.OnDisconnect == PolicyFlush {
		c.degraded.Store(true)
		c.flush(cause)
	}
}

// linkRestored applies OnReconnect and forgets what the peer table knew.
// Called with recvMu held.
func (c *Cache) linkRestored(cause string) {
	if !c.linkUp || c.silent {
		return
	}
	now := c.now()
	flush := c.opts.OnReconnect == PolicyFlush || c.degraded.Load()
	if !flush {
		// Messages still waited for will not be waited for any more.
		for id, p := range c.peers {
			if len(p.missing) > 0 {
				c.gapFound(id)
				break
			}
		}
	}
	clear(c.peers)
	c.baseline = now
	c.canarySince = now
	if flush {
		c.flush(cause)
	}
	c.degraded.Store(false)
}

// monitorLoop notices a silent link and forgets peers that went away.
func (c *Cache) monitorLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.HeartbeatInterval / 2)
	defer t.Stop()
	timeout := c.opts.heartbeatTimeout()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		now := c.now()
		c.recvMu.Lock()
		if c.linkUp && !c.silent && now.Sub(c.ownFresh) > timeout {
			c.silent = true
			c.log.Warn("backplane: link silent: own heartbeats are not coming back in time", "newest_age", now.Sub(c.ownFresh))
			c.linkLost("silence")
		}
		if !c.silent {
			lost := 0
			for id, p := range c.peers {
				if now.Sub(p.lastSeen) > timeout {
					delete(c.peers, id)
					lost++
				}
			}
			// A peer gone quiet without saying goodbye, while this
			// instance's own link works, either died or cannot reach
			// this instance (a broken route between cluster nodes):
			// what it published meanwhile may be lost.
			if lost > 0 {
				if c.opts.OnGap == PolicyFlush {
					c.flush("peer-lost")
				} else {
					c.log.Warn("backplane: peer went quiet without leaving, keeping cache (OnGap=keep)", "peers", lost)
				}
				c.ctr.gaps.Add(uint64(lost))
			}
		}
		c.recvMu.Unlock()
	}
}

// Stats returns the instance's counters.
func (c *Cache) Stats() Stats { return c.ctr.snapshot() }

// Health is a snapshot for readiness probes and operators.
type Health struct {
	// Started is true between a successful Start and Close.
	Started bool
	// Connected is the transport's last reported state.
	Connected bool
	// Silent is true when the instance's own heartbeats stopped coming back
	// within HeartbeatTimeout.
	Silent bool
	// Degraded is true while the engine does not cache (OnDisconnect=flush
	// and the link is down or silent). Reads are still served by loaders.
	Degraded bool
	// LastReceived is when the last message (own or peer) arrived.
	LastReceived time.Time
	// LastPeerMessage is when the last message of another instance arrived.
	LastPeerMessage time.Time
	// LastFlush and LastFlushCause describe the last safety flush.
	LastFlush      time.Time
	LastFlushCause string
	// Peers is the number of other instances heard from recently.
	Peers int
	// PendingPublishes counts Invalidate and Clear calls not yet answered.
	PendingPublishes int
	// SyncBroken is true, with the canary probe on, when the instance's
	// own canary or a live peer's canary is overdue: invalidations are not
	// getting through although the link may look fine.
	SyncBroken bool
	// PeerStatus describes each peer heard from recently.
	PeerStatus []PeerStatus
}

// PeerStatus is what an instance knows of one peer.
type PeerStatus struct {
	ID       string
	LastSeen time.Time
	// LastCanary and CanaryLag describe the peer's last canary (zero when
	// none arrived); CanaryLag compares the two hosts' clocks.
	LastCanary time.Time
	CanaryLag  time.Duration
	// InSync is false when the peer is alive (heartbeats arrive) but its
	// canary is overdue.
	InSync bool
}

// Healthy reports whether invalidation is flowing: started, connected, not
// silent and, with the canary probe on, in sync.
func (h Health) Healthy() bool { return h.Started && h.Connected && !h.Silent && !h.SyncBroken }

// Health returns the instance's current health.
func (c *Cache) Health() Health {
	c.lifeMu.RLock()
	started := c.started && !c.closed
	c.lifeMu.RUnlock()
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	now := c.now()
	canary := c.opts.CanaryInterval > 0 && started
	timeout := c.opts.canaryTimeout()
	broken := false
	var peers []PeerStatus
	for id, p := range c.peers {
		st := PeerStatus{ID: id.String(), LastSeen: p.lastSeen, LastCanary: p.lastCanary, CanaryLag: p.canaryLag, InSync: true}
		// A peer that sends canaries at all must keep sending them.
		if canary && !p.lastCanary.IsZero() && now.Sub(p.lastCanary) > timeout {
			st.InSync, broken = false, true
		}
		peers = append(peers, st)
	}
	slices.SortFunc(peers, func(a, b PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	if canary {
		last := c.selfCanary
		if last.Before(c.canarySince) {
			last = c.canarySince
		}
		if now.Sub(last) > timeout {
			broken = true
		}
	}
	return Health{
		SyncBroken:       broken,
		PeerStatus:       peers,
		Started:          started,
		Connected:        c.linkUp,
		Silent:           c.silent,
		Degraded:         c.degraded.Load(),
		LastReceived:     c.lastRecv,
		LastPeerMessage:  c.lastHeard,
		LastFlush:        c.lastFlush,
		LastFlushCause:   c.lastCause,
		Peers:            len(c.peers),
		PendingPublishes: int(c.pendingCalls.Load()),
	}
}
