package core

import (
	"context"
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

type flight struct {
	done    chan struct{}
	val     []byte
	err     error
	ctxDone bool // the leader's context ended: waiters retry
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
