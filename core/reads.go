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
type fills struct {
	seed    maphash.Seed
	stripes [numStripes]stripe

	flightsMu sync.Mutex
	flights   map[string]*flight // GetOrLoad calls in progress, by key
	// nflights is len(flights), for a look without flightsMu: an eviction
	// that finds no load in flight has none to detach. Changed with
	// flightsMu held.
	nflights atomic.Int32

	degraded atomic.Bool // not caching: link down or silent under PolicyFlush
}

func (f *fills) init() {
	f.seed = maphash.MakeSeed()
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
	if exp := int64(binary.BigEndian.Uint64(raw)); exp != 0 && c.clock.nowNano() >= exp {
		c.dropExpired(key)
		return nil, false
	}
	return raw[valueHeader:], true
}

// dropExpired deletes key if it is still expired, under its stripe lock so
// that a fresh fill is never deleted.
func (c *Cache) dropExpired(key string) {
	s := c.fills.stripeOf(key)
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
	return c.storeLocked(key, value, ttl)
}

// storeLocked stores value with its expiry header. Called with key's
// stripe lock held.
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

// flush clears the store for safety and makes every load in flight
// uncacheable. A flush with a cause is a safety flush: counted, logged and
// remembered for Health (link.lastFlush, so called with recv.mu held).
func (c *Cache) flush(cause string) {
	f := &c.fills
	for i := range f.stripes {
		f.stripes[i].mu.Lock()
	}
	for i := range f.stripes {
		f.stripes[i].gen.Add(1)
	}
	err := c.store.Clear()
	f.flightsMu.Lock()
	f.flights = make(map[string]*flight)
	f.nflights.Store(0)
	f.flightsMu.Unlock()
	for i := range f.stripes {
		f.stripes[i].mu.Unlock()
	}
	if cause == "" {
		return
	}
	c.ctr.flushes.Add(1)
	c.inst.flush(cause)
	c.link.lastFlush, c.link.lastCause = c.now(), cause
	if err != nil {
		c.log.Error("backplane: flush failed", "cause", cause, "err", err)
		return
	}
	c.log.Warn("backplane: local cache flushed", "cause", cause)
}
