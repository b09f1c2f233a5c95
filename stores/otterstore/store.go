package otterstore

import (
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"

	"github.com/backplane-go/backplane/core"
)

// noExpiry is the lifetime otter is given for an entry set without a ttl.
const noExpiry = time.Duration(math.MaxInt64)

// item is what the store keeps under a key: its own copy of the value and
// the ttl the value was set with.
type item struct {
	value []byte
	ttl   time.Duration
}

// Store is a core.LocalStore backed by an otter.Cache. It is safe for
// concurrent use; see the package documentation for its limits.
type Store struct {
	cache atomic.Pointer[otter.Cache[string, item]]
	clock *otter.CoarseClock // nil unless the config asks for one

	// limit is the largest weight an entry may have; 0 means no limit.
	limit       int
	maxValueLen int
	caps        core.StoreCaps
}

var _ core.LocalStore = (*Store)(nil)

// New returns a Store over a new otter cache built from cfg. It validates
// cfg (see Config.Validate) and does no I/O. With cfg.TTL otter runs a
// clean-up goroutine, and with a positive cfg.ClockResolution a clock
// goroutine; Close stops both.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{maxValueLen: cfg.maxValueLen()}
	opts := &otter.Options[string, item]{InitialCapacity: cfg.InitialCapacity}
	switch {
	case cfg.MaxBytes > 0:
		opts.MaximumWeight = uint64(cfg.MaxBytes)
		opts.Weigher = weigh
		s.limit = min(cfg.MaxBytes, maxWeight)
	case cfg.MaxEntries > 0:
		opts.MaximumSize = cfg.MaxEntries
	}
	s.caps = core.StoreCaps{
		Eviction:    cfg.MaxBytes > 0 || cfg.MaxEntries > 0,
		MaxValueLen: s.maxValueLen,
	}
	if cfg.TTL {
		opts.ExpiryCalculator = otter.ExpiryWritingFunc(func(e otter.Entry[string, item]) time.Duration {
			return e.Value.ttl
		})
		s.caps.TTL = true
		s.caps.TTLGranularity = time.Millisecond
		if cfg.ClockResolution > 0 {
			s.clock = otter.NewCoarseClock(cfg.ClockResolution)
			opts.Clock = s.clock
			s.caps.TTLGranularity = cfg.ClockResolution
		}
	}
	c, err := otter.New(opts)
	if err != nil {
		s.stopClock()
		return nil, fmt.Errorf("otterstore: %w: %w", err, core.ErrInvalidOption)
	}
	s.cache.Store(c)
	return s, nil
}

// weigh is the weight of an entry in a byte-bounded store. Set has checked
// that it fits 32 bits.
func weigh(key string, it item) uint32 {
	return uint32(EntryOverhead + len(key) + len(it.value))
}

// Get returns a copy of the value stored under key. A missing key, an
// expired entry and a closed store all miss.
func (s *Store) Get(key string) ([]byte, bool) {
	c := s.cache.Load()
	if c == nil {
		return nil, false
	}
	it, ok := c.GetIfPresent(key)
	if !ok {
		return nil, false
	}
	if len(it.value) == 0 {
		return []byte{}, true
	}
	v := make([]byte, len(it.value))
	copy(v, it.value)
	return v, true
}

// Set stores a copy of value under key. With Config.TTL the entry expires
// after ttl (0: never); otherwise ttl is ignored. A value longer than
// Caps().MaxValueLen, or an entry heavier than the whole store, fails with
// an error wrapping core.ErrValueTooLarge without touching the cache.
func (s *Store) Set(key string, value []byte, ttl time.Duration) error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("otterstore: set: %w", core.ErrClosed)
	}
	if s.maxValueLen > 0 && len(value) > s.maxValueLen {
		return fmt.Errorf("otterstore: value of %d bytes, at most %d: %w", len(value), s.maxValueLen, core.ErrValueTooLarge)
	}
	if s.limit > 0 {
		if w := EntryOverhead + len(key) + len(value); w > s.limit {
			return fmt.Errorf("otterstore: entry of %d bytes (key %d, value %d, overhead %d), at most %d: %w",
				w, len(key), len(value), EntryOverhead, s.limit, core.ErrValueTooLarge)
		}
	}
	if ttl <= 0 {
		ttl = noExpiry
	}
	var v []byte
	if len(value) > 0 {
		v = make([]byte, len(value))
		copy(v, value)
	}
	c.Set(key, item{value: v, ttl: ttl})
	return nil
}

// Delete removes keys; absent keys are not an error.
func (s *Store) Delete(keys ...string) error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("otterstore: delete: %w", core.ErrClosed)
	}
	for _, k := range keys {
		c.Invalidate(k)
	}
	return nil
}

// Clear removes every entry.
func (s *Store) Clear() error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("otterstore: clear: %w", core.ErrClosed)
	}
	c.InvalidateAll()
	return nil
}

// Len reports the number of entries (otter's EstimatedSize), including
// expired entries that otter has not removed yet. It is 0 after Close.
func (s *Store) Len() int {
	c := s.cache.Load()
	if c == nil {
		return 0
	}
	return c.EstimatedSize()
}

// Close stops the store's goroutines and drops its entries. It is
// idempotent. Operations that started before Close may still complete on
// the released cache; operations after it see a closed store.
func (s *Store) Close() error {
	c := s.cache.Swap(nil)
	if c == nil {
		return nil
	}
	c.StopAllGoroutines()
	c.InvalidateAll()
	s.stopClock()
	return nil
}

func (s *Store) stopClock() {
	if s.clock != nil {
		s.clock.Stop()
	}
}

// Caps reports what the store can do: TTL with Config.TTL, at the
// resolution of its clock (Config.ClockResolution, or a millisecond for the
// precise clock); Eviction when MaxBytes or MaxEntries bounds it; and
// MaxValueLen, the largest value Set accepts (0: no limit).
func (s *Store) Caps() core.StoreCaps {
	return s.caps
}

// WeightedSize reports the total weight of the entries in a store bounded
// by MaxBytes (keys, values and EntryOverhead per entry), as otter last
// accounted it; 0 for a store bounded otherwise, and after Close.
func (s *Store) WeightedSize() uint64 {
	c := s.cache.Load()
	if c == nil {
		return 0
	}
	return c.WeightedSize()
}
