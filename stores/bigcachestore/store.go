package bigcachestore

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/backplane-go/backplane/core"
)

// ReservedKeyLen is the key length that Caps().MaxValueLen leaves room for:
// a value of MaxValueLen bytes fits together with any key of up to
// ReservedKeyLen bytes. Set checks the exact size of each entry, so a longer
// key with a value close to MaxValueLen fails with ErrValueTooLarge.
const ReservedKeyLen = 1024

// MaxKeyLen is the longest key bigcache can store: it records the key length
// in 16 bits. Set returns an error wrapping core.ErrKeyTooLong beyond it.
const MaxKeyLen = 1<<16 - 1

const (
	// entryHeaderLen is bigcache's per-entry header: timestamp (8), key
	// hash (8) and key length (2), see bigcache's encoding.go.
	entryHeaderLen = 8 + 8 + 2
	mib            = 1 << 20
)

// Store is a core.LocalStore backed by a bigcache.BigCache. It is safe for
// concurrent use; see the package documentation for its limits.
type Store struct {
	cache atomic.Pointer[bigcache.BigCache]

	// maxEntry is the largest size in bytes an entry (header, key, value and
	// the queue's length prefix) may take so that bigcache is certain to
	// accept it; 0 means no limit.
	maxEntry    int
	maxValueLen int
	eviction    bool
}

var _ core.LocalStore = (*Store)(nil)

// DefaultConfig returns the configuration New is meant to be used with when
// nothing better is known: entries live for up to 10 minutes (the engine
// expires them much earlier by its own TTL), expired entries are cleaned up
// once a minute, the cache holds at most 256 MiB in 256 shards (values up to
// about 511 KiB), it starts small, and bigcache logs nothing.
func DefaultConfig() bigcache.Config {
	cfg := bigcache.DefaultConfig(10 * time.Minute)
	cfg.Shards = 256
	cfg.CleanWindow = time.Minute
	cfg.MaxEntriesInWindow = 10_000
	cfg.MaxEntrySize = 512
	cfg.HardMaxCacheSize = 256
	cfg.Verbose = false
	cfg.Logger = nil
	return cfg
}

// New returns a Store over a new bigcache built from cfg. It validates cfg
// (bigcache's own rules, and that a shard can hold at least a small value)
// and does no I/O. When cfg.CleanWindow > 0 bigcache runs a cleanup
// goroutine, which Close stops.
func New(cfg bigcache.Config) (*Store, error) {
	s := &Store{eviction: cfg.HardMaxCacheSize > 0}
	if cfg.HardMaxCacheSize > 0 && cfg.Shards > 0 {
		shardBytes := cfg.HardMaxCacheSize * mib / cfg.Shards
		s.maxEntry = maxGuaranteedEntry(shardBytes)
		s.maxValueLen = maxValueLen(s.maxEntry, ReservedKeyLen)
		if s.maxValueLen <= 0 {
			return nil, fmt.Errorf("bigcachestore: a shard of %d bytes (HardMaxCacheSize %d MiB / %d shards) cannot hold a value with a %d byte key: raise HardMaxCacheSize or lower Shards: %w",
				shardBytes, cfg.HardMaxCacheSize, cfg.Shards, ReservedKeyLen, core.ErrInvalidOption)
		}
	}
	// context.Background: bigcache prints to stdout when its context ends,
	// and Close stops the cleanup goroutine anyway.
	c, err := bigcache.New(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("bigcachestore: %w: %w", err, core.ErrInvalidOption)
	}
	s.cache.Store(c)
	return s, nil
}

// maxGuaranteedEntry returns the largest queue entry (length prefix
// included) that bigcache's BytesQueue accepts in a shard limited to
// shardBytes, whatever the queue's current capacity: once every older entry
// was evicted, a push of n bytes succeeds when n < capacity or
// capacity+n < shardBytes, which holds for every capacity iff 2n < shardBytes.
func maxGuaranteedEntry(shardBytes int) int {
	return (shardBytes - 1) / 2
}

// maxValueLen returns the largest value that fits in maxEntry bytes together
// with a key of keyLen bytes.
func maxValueLen(maxEntry, keyLen int) int {
	v := maxEntry - entryHeaderLen - keyLen - 5
	if v <= 0 {
		return 0
	}
	for entrySize(keyLen, v+1) <= maxEntry {
		v++
	}
	return v
}

// entrySize is the number of bytes bigcache's queue uses for an entry: the
// wrapped entry plus its length prefix (queue.getNeededSize).
func entrySize(keyLen, valueLen int) int {
	n := entryHeaderLen + keyLen + valueLen
	switch {
	case n < 1<<7-1:
		return n + 1
	case n < 1<<14-2:
		return n + 2
	case n < 1<<21-3:
		return n + 3
	case n < 1<<28-4:
		return n + 4
	default:
		return n + 5
	}
}

// Get returns a copy of the value stored under key (bigcache copies on
// read). A missing key, a key whose slot was taken by a colliding key, and a
// closed store all miss.
func (s *Store) Get(key string) ([]byte, bool) {
	c := s.cache.Load()
	if c == nil {
		return nil, false
	}
	v, err := c.Get(key)
	if err != nil {
		// ErrEntryNotFound, or a queue error for an index that no longer
		// points to a live entry: both are misses.
		return nil, false
	}
	return v, true
}

// Set stores a copy of value under key (bigcache copies it into its ring
// buffer). ttl is ignored: bigcache has one life window for all entries, see
// Caps. A value longer than Caps().MaxValueLen, or an entry too large for a
// shard, fails with an error wrapping core.ErrValueTooLarge without touching
// the cache; a key longer than MaxKeyLen fails with core.ErrKeyTooLong.
func (s *Store) Set(key string, value []byte, ttl time.Duration) error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("bigcachestore: set: %w", core.ErrClosed)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("bigcachestore: key of %d bytes, at most %d: %w", len(key), MaxKeyLen, core.ErrKeyTooLong)
	}
	if s.maxEntry > 0 {
		// Checked here rather than left to bigcache: bigcache evicts the
		// whole shard before it finds out that an entry cannot fit.
		if len(value) > s.maxValueLen {
			return fmt.Errorf("bigcachestore: value of %d bytes, at most %d: %w", len(value), s.maxValueLen, core.ErrValueTooLarge)
		}
		if n := entrySize(len(key), len(value)); n > s.maxEntry {
			return fmt.Errorf("bigcachestore: entry of %d bytes (key %d, value %d), at most %d per entry: %w",
				n, len(key), len(value), s.maxEntry, core.ErrValueTooLarge)
		}
	}
	if err := c.Set(key, value); err != nil {
		// bigcache's only Set error: "entry is bigger than max shard size".
		return fmt.Errorf("bigcachestore: %w: %w", err, core.ErrValueTooLarge)
	}
	return nil
}

// Delete removes keys; absent keys are not an error. bigcache deletes by key
// hash, so deleting a key also removes a different key with the same 64-bit
// hash, should one be stored (a spurious eviction, never a wrong value).
func (s *Store) Delete(keys ...string) error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("bigcachestore: delete: %w", core.ErrClosed)
	}
	for _, k := range keys {
		// bigcache's Delete fails only when there is nothing live to delete
		// (ErrEntryNotFound or a stale queue index).
		_ = c.Delete(k)
	}
	return nil
}

// Clear removes every entry (bigcache's Reset).
func (s *Store) Clear() error {
	c := s.cache.Load()
	if c == nil {
		return fmt.Errorf("bigcachestore: clear: %w", core.ErrClosed)
	}
	return c.Reset()
}

// Len reports the number of entries, including entries past the life window
// that bigcache has not cleaned up yet. It is 0 after Close.
func (s *Store) Len() int {
	c := s.cache.Load()
	if c == nil {
		return 0
	}
	return c.Len()
}

// Close stops bigcache's cleanup goroutine and releases the cache. It is
// idempotent. Operations that started before Close may still complete on
// the released cache; operations after it see a closed store.
func (s *Store) Close() error {
	c := s.cache.Swap(nil)
	if c == nil {
		return nil
	}
	return c.Close()
}

// Caps reports what the store can do. TTL is false: bigcache has one life
// window for all entries, not a TTL per entry, so the engine's own TTL
// applies. Eviction is true when the config bounds the cache size
// (HardMaxCacheSize > 0), and MaxValueLen is the largest value certain to
// fit a shard together with a key of up to ReservedKeyLen bytes.
func (s *Store) Caps() core.StoreCaps {
	return core.StoreCaps{
		TTL:         false,
		Eviction:    s.eviction,
		MaxValueLen: s.maxValueLen,
	}
}

// Unwrap returns the underlying cache, for statistics and iteration; nil
// after Close. Writing to it directly bypasses the size checks of Set.
func (s *Store) Unwrap() *bigcache.BigCache {
	return s.cache.Load()
}
