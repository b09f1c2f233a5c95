// loads.go: GetOrLoad, one loader call per key at a time on an instance
// (single flight), and the fill guard's check before a loaded value is
// stored.

package core

import (
	"context"
	"fmt"
)

// flight is a GetOrLoad call in progress; its waiters read the result once
// done is closed.
type flight struct {
	slots   []uint16 // the slots of the entry's tags (tags.go)
	done    chan struct{}
	val     []byte
	err     error
	ctxDone bool // the leader's context ended: waiters retry
}

// GetOrLoad returns the value cached under key, or calls loader, caches its
// result and returns it. Concurrent calls for the same key on this instance
// share one loader call. A load that overlaps an eviction of its key (local
// or remote Invalidate, Clear, or a safety flush) is returned to its callers
// but not cached. Loader errors are returned and nothing is cached. The
// caller owns the returned slice.
func (c *Cache) GetOrLoad(ctx context.Context, key string, loader func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	return c.getOrLoad(ctx, key, nil, loader)
}

// getOrLoad is GetOrLoad for an entry that carries tags (checked by the
// caller).
func (c *Cache) getOrLoad(ctx context.Context, key string, tags []string, loader func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if loader == nil {
		return nil, ErrNilLoader
	}
	if err := c.life.ready(); err != nil {
		return nil, err
	}
	if v, ok := c.Get(key); ok {
		return v, nil
	}
	fs := &c.fills
	for {
		fs.flightsMu.Lock()
		if f, ok := fs.flights[key]; ok {
			fs.flightsMu.Unlock()
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
		for _, tag := range tags {
			f.slots = append(f.slots, fs.tags.slotOf(tag))
		}
		fs.flights[key] = f
		fs.nflights.Add(1)
		fs.flightsMu.Unlock()
		return c.lead(ctx, key, tags, f, loader)
	}
}

// lead runs the loader of flight f and stores its value unless an eviction
// of key, of one of its tags, or a flush happened since the load started.
func (c *Cache) lead(ctx context.Context, key string, tags []string, f *flight, loader func(context.Context) ([]byte, error)) (val []byte, err error) {
	s := c.fills.stripeOf(key)
	gen, epoch, refs := s.gen.Load(), c.fills.epoch.Load(), c.fills.tags.refs(tags)
	defer func() {
		c.fills.flightsMu.Lock()
		c.fills.drop(key, f)
		c.fills.flightsMu.Unlock()
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
	// A wipe since the load started need not be waited for here: the
	// value carries the load's epoch, and is a miss once the epoch moved.
	kept := s.gen.Load() == gen && c.fills.epoch.Load() == epoch && c.fills.tags.current(refs) && !c.fills.degraded.Load()
	if kept {
		if serr := c.storeLocked(key, val, c.opts.TTL, epoch, refs); serr != nil {
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
