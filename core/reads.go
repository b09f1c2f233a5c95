// reads.go: the read path. Get and Set over the LocalStore with the
// engine's expiry header, local eviction, the safety flush, and the fill
// guard (fills) that keeps a load which overlapped an eviction out of the
// store. GetOrLoad's single flight is in loads.go.

package core

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

const numStripes = 1024

// stripe serialises fills against evictions of the keys that hash to it.
// gen changes on every eviction, so a load that started before an eviction
// is not cached.
type stripe struct {
	mu  sync.Mutex
	gen atomic.Uint64
	_   [40]byte // keep stripes on separate cache lines
}

// fills is the read path's guard. A stripe's mu serialises the fills and
// evictions of its keys; flightsMu guards flights; degraded is set by
// liveness (link) while nothing may be cached.
//
// epoch counts the wipes of the store. Every entry carries the epoch it was
// filled in (a load: the epoch its load started in), and an entry of an
// older epoch is a miss: a wipe takes effect at once, without locking every
// stripe, and a flood of wipes costs little more than a counter. The
// store's own Clear, which frees the memory, runs at most every
// clearEvery, and a safety flush is logged at most once a second.
type fills struct {
	seed    maphash.Seed
	stripes [numStripes]stripe
	epoch   atomic.Uint64

	flightsMu sync.Mutex
	flights   map[string]*flight // GetOrLoad calls in progress, by key
	// nflights is len(flights), for a look without flightsMu: an eviction
	// that finds no load in flight has none to detach. Changed with
	// flightsMu held.
	nflights atomic.Int32

	tags     tagGens     // the generations of the tags' slots (tags.go)
	degraded atomic.Bool // not caching: link down or silent under PolicyFlush
	// suspended, over a Durable transport, keeps the store but serves
	// nothing from it until delivery has caught up (recovery.go); degraded
	// is set with it.
	suspended atomic.Bool

	// lastFlush and lastCause describe the last wipe of the store, for
	// Health; guarded by flushMu.
	flushMu   sync.Mutex
	lastFlush time.Time
	lastCause string
	lastClear time.Time // when the store was last cleared; guarded by flushMu
	// lastLog is when a safety flush was last logged, and unlogged counts
	// those not logged since (at most one line a second); guarded by
	// flushMu.
	lastLog  time.Time
	unlogged int
}

// clearEvery is how often, at most, a wipe clears the store itself; a wipe
// soon after another only moves the epoch.
const clearEvery = 100 * time.Millisecond

func (f *fills) init() {
	f.seed = maphash.MakeSeed()
	f.tags.seed = maphash.MakeSeed()
	f.flights = make(map[string]*flight)
}

func (f *fills) stripeOf(key string) *stripe {
	return &f.stripes[maphash.String(f.seed, key)%numStripes]
}

// detach makes the next GetOrLoad of key start a new load instead of
// joining one that started before an eviction.
func (f *fills) detach(key string) {
	// A load that starts after this look reads the stripe's generation
	// after the caller bumped it: it is not one to detach.
	if f.nflights.Load() == 0 {
		return
	}
	f.flightsMu.Lock()
	f.drop(key, nil)
	f.flightsMu.Unlock()
}

// drop forgets the load in flight for key: fl, or any if fl is nil.
// Called with flightsMu held.
func (f *fills) drop(key string, fl *flight) {
	if g, ok := f.flights[key]; ok && (fl == nil || g == fl) {
		delete(f.flights, key)
		f.nflights.Add(-1)
	}
}

// The causes of a wipe of the store that are not a safety flush.
const (
	causeClear       = "clear"        // Clear on this instance
	causeRemoteClear = "remote-clear" // Clear by a peer
)

// Values are stored with a header: the expiry in Unix nanoseconds (0 for
// none), the epoch the entry was filled in, the number of its tags, and
// for each tag its record (tagRef): 17 bytes, and 10 more per tag.
const baseHeader = 17

// valid reports whether a stored value is a live entry: of the current
// epoch, not expired at now (Unix nanoseconds), no tag of it invalidated
// since its fill. It returns where the value starts.
func (f *fills) valid(raw []byte, now int64) (int, bool) {
	if len(raw) < baseHeader || binary.BigEndian.Uint64(raw[8:]) != f.epoch.Load() {
		return 0, false
	}
	if exp := int64(binary.BigEndian.Uint64(raw)); exp != 0 && now >= exp {
		return 0, false
	}
	n := int(raw[16])
	if n == 0 {
		return baseHeader, true
	}
	off := baseHeader + n*tagRefLen
	if len(raw) < off || !f.tags.validTags(raw[baseHeader:], n) {
		return 0, false
	}
	return off, true
}

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
	if c.fills.suspended.Load() {
		return nil, false
	}
	raw, ok := c.store.Get(key)
	if !ok {
		return nil, false
	}
	off, ok := c.fills.valid(raw, c.clock.nowNano())
	if !ok {
		c.dropInvalid(key)
		return nil, false
	}
	return raw[off:], true
}

// dropInvalid deletes key if it is still expired, of an older epoch or of
// an invalidated tag,
// under its stripe lock so that a fresh fill is never deleted.
func (c *Cache) dropInvalid(key string) {
	s := c.fills.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if raw, ok := c.store.Get(key); ok {
		if _, live := c.fills.valid(raw, c.now().UnixNano()); !live {
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
	if ttl < 0 {
		return fmt.Errorf("%w: negative TTL %v", ErrInvalidOption, ttl)
	}
	return c.set(key, value, ttl, nil)
}

// set is SetWithTTL for an entry that carries tags (checked by the caller).
func (c *Cache) set(key string, value []byte, ttl time.Duration, tags []string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := c.life.ready(); err != nil {
		return err
	}
	s := c.fills.stripeOf(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.gen.Add(1) // loads in flight are older than this value
	c.fills.detach(key)
	if c.fills.degraded.Load() {
		return c.store.Delete(key)
	}
	return c.storeLocked(key, value, ttl, c.fills.epoch.Load(), c.fills.tags.refs(tags))
}

// storeLocked stores value with its header: its expiry, epoch and tags.
// Called with key's stripe lock held.
func (c *Cache) storeLocked(key string, value []byte, ttl time.Duration, epoch uint64, tags []tagRef) error {
	hdr := baseHeader + len(tags)*tagRefLen
	buf := make([]byte, hdr+len(value))
	var exp int64
	if ttl > 0 {
		if j := c.opts.TTLJitter; j > 0 {
			ttl = time.Duration(float64(ttl) * (1 + j*(2*rand.Float64()-1)))
		}
		exp = c.now().Add(ttl).UnixNano()
	}
	binary.BigEndian.PutUint64(buf, uint64(exp))
	binary.BigEndian.PutUint64(buf[8:], epoch)
	buf[16] = byte(len(tags))
	for i, t := range tags {
		b := buf[baseHeader+i*tagRefLen:]
		binary.BigEndian.PutUint16(b, t.slot)
		binary.BigEndian.PutUint64(b[2:], t.gen)
	}
	copy(buf[hdr:], value)
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
	if c.life.isClosed() {
		return ErrClosed
	}
	c.evictLocal(keys)
	return nil
}

// evictLocal deletes keys and invalidates loads in flight for them.
func (c *Cache) evictLocal(keys []string) {
	for i, k := range keys {
		s := c.fills.stripeOf(k)
		s.mu.Lock()
		s.gen.Add(1)
		_ = c.store.Delete(keys[i : i+1]...) // a sub-slice: no allocation
		c.fills.detach(k)
		s.mu.Unlock()
	}
}

// flush wipes the store and makes every load in flight uncacheable: the
// epoch moves, so every entry stored before is a miss from now on, and the
// store itself is cleared unless it was less than clearEvery ago. Every
// wipe is counted, with its cause, and remembered for Health; a safety
// flush (any cause but a Clear) is logged as a warning.
func (c *Cache) flush(cause string) {
	f := &c.fills
	f.epoch.Add(1)
	f.flightsMu.Lock()
	f.flights = make(map[string]*flight)
	f.nflights.Store(0)
	f.flightsMu.Unlock()
	now := c.now()
	f.flushMu.Lock()
	f.lastFlush, f.lastCause = now, cause
	clearStore := now.Sub(f.lastClear) >= clearEvery || now.Before(f.lastClear)
	if clearStore {
		f.lastClear = now
	}
	logIt, unlogged := now.Sub(f.lastLog) >= time.Second || now.Before(f.lastLog), 0
	if logIt {
		f.lastLog, unlogged, f.unlogged = now, f.unlogged, 0
	} else {
		f.unlogged++
	}
	f.flushMu.Unlock()
	var err error
	if clearStore {
		err = c.store.Clear()
	}
	c.ctr.flushes.Add(1)
	c.inst.flush(cause)
	switch {
	case err != nil:
		c.log.Error("backplane: flush failed", "cause", cause, "err", err)
	case cause == causeClear:
		c.log.Debug("backplane: local cache cleared (Clear)")
	case cause == causeRemoteClear:
		c.log.Info("backplane: local cache cleared (Clear by a peer)")
	case logIt:
		c.log.Warn("backplane: local cache flushed", "cause", cause, "flushes_not_logged", unlogged)
	}
}
