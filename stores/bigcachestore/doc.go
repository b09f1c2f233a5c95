// Package bigcachestore is a core.LocalStore backed by
// github.com/allegro/bigcache/v3: a sharded, evicting byte cache that keeps
// its entries in large byte slices the garbage collector does not scan.
//
//	store, err := bigcachestore.New(bigcachestore.DefaultConfig())
//
// # Limits
//
// Life window, not TTL. bigcache has one LifeWindow for every entry; it has
// no per-entry TTL, so Set ignores its ttl and Caps reports TTL false (the
// engine enforces TTL itself). An entry past the life window is removed by
// the cleanup goroutine every CleanWindow, or, with CleanWindow 0, when a
// later Set in the same shard finds it oldest. Until then Get still returns
// it: bigcache does not check the life window on read. Its clock has a
// resolution of one second. Choose a LifeWindow no shorter than the
// engine's longest TTL, or entries vanish early: misses, never stale data.
//
// Copies. Set copies the value into bigcache's ring buffer and Get returns a
// fresh copy, so callers may reuse and modify their slices freely.
//
// Hash collisions. bigcache indexes entries by a 64-bit hash of the key
// (FNV-1a by default) and stores the key beside the value. Get compares the
// stored key and misses on a mismatch, so a collision never returns another
// key's value. Two colliding keys share one slot, though: setting one evicts
// the other, and Delete, which goes by hash only, removes either. For a
// cache both are spurious misses, never stale or wrong data.
//
// Entry size. With HardMaxCacheSize > 0 every shard holds at most
// HardMaxCacheSize MiB / Shards bytes, and an entry must fit one shard. Set
// rejects, with an error wrapping core.ErrValueTooLarge and without touching
// the cache, any entry that bigcache is not certain to accept: more than
// half a shard (bigcache's ring buffer may be unable to place a larger entry
// depending on its current capacity), counting an 18 byte header, the key
// and the value. Caps().MaxValueLen is the largest value that fits with a
// key of up to ReservedKeyLen bytes; longer values always fail. Keys are
// limited to MaxKeyLen (65535) bytes. A large entry evicts the oldest
// entries of its shard to make room. With HardMaxCacheSize 0 the cache grows
// without bound and MaxValueLen is 0 (no limit).
//
// Len. Len counts the entries bigcache indexes, including entries past the
// life window that were not cleaned up yet.
//
// Close. Close stops bigcache's cleanup goroutine (started when CleanWindow
// > 0) and drops the cache. Afterwards Get misses, Len is 0 and Set, Delete
// and Clear return core.ErrClosed.
//
// # Performance
//
// The store adds an atomic load and a size check to bigcache. BenchmarkGet
// and BenchmarkSet run both side by side (256 byte values, 16384 keys,
// parallel, DefaultConfig); on a 2-core AMD EPYC with Go 1.26:
//
//	BenchmarkGet/raw     282 ns/op   271 B/op   2 allocs/op
//	BenchmarkGet/store   281 ns/op   271 B/op   2 allocs/op
//	BenchmarkSet/raw     803 ns/op   778 B/op   0 allocs/op
//	BenchmarkSet/store   767 ns/op   778 B/op   0 allocs/op
//
// The difference is noise; Get allocates the copy it returns.
package bigcachestore
