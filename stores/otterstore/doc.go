// Package otterstore is a core.LocalStore backed by
// github.com/maypok86/otter/v2: a concurrent in-memory cache with a
// W-TinyLFU eviction policy (it keeps the entries that are read often, not
// merely the ones written last) and per-entry expiry.
//
//	store, err := otterstore.New(otterstore.DefaultConfig())
//
// # Capacity
//
// A store is bounded by bytes (Config.MaxBytes) or by entries
// (Config.MaxEntries), or not at all when both are 0. By bytes, every entry
// weighs the length of its key and of its value plus EntryOverhead (128)
// bytes, an estimate of otter's own memory per entry; the bound is on that
// weight, not on the process's heap. Eviction is otter's: it happens on the
// goroutines otter uses for maintenance, moments after the write that
// exceeded the bound, so the store may be briefly over it.
//
// # TTL
//
// With Config.TTL (the default) Set's ttl is honoured: an entry expires ttl
// after its last Set (0: never), an expired entry is never returned, and
// otter removes it on a later operation or on its clean-up once a second,
// which frees its weight for live entries. Caps reports TTL true with a
// TTLGranularity of Config.ClockResolution: by default the store reads a
// coarse clock updated once a second by a goroutine of its own, which costs
// about an atomic load per read; ClockResolution 0 reads the precise time
// on every Get (about 20 to 40 ns more per read) and declares a millisecond.
// The engine enforces its own TTL on every read in any case, so a coarse
// store clock only delays when memory is freed, never serves an expired
// value. Without Config.TTL the ttl is ignored and Caps reports TTL false.
//
// # Copies and limits
//
// Set copies the value and Get returns a fresh copy, so callers may reuse
// and modify their slices freely; a Get hit allocates that copy and
// nothing else. A value longer than Caps().MaxValueLen (Config.MaxValueLen,
// 1 MiB by default), or with MaxBytes an entry heavier than the whole
// store, fails with an error wrapping core.ErrValueTooLarge without
// touching the cache. With MaxBytes and MaxValueLen 0, MaxValueLen is the
// largest value that fits with a key of ReservedKeyLen bytes. Keys have no
// limit of their own beyond the entry's weight.
//
// Len is otter's EstimatedSize: it may count expired entries not yet
// removed, and entries an eviction is about to remove.
//
// # Goroutines and Close
//
// With Config.TTL otter runs a clean-up goroutine, and with a positive
// ClockResolution the clock runs one; otter also runs its maintenance
// passes (applying reads and writes to the eviction policy) on short-lived
// goroutines of their own. Close stops the clean-up and clock goroutines
// and drops every entry. Afterwards Get misses, Len is 0 and Set, Delete and
// Clear return core.ErrClosed.
//
// # Performance
//
// BenchmarkGetHit, BenchmarkSet and BenchmarkHitRatio run otter, this
// store and the engine over it side by side with the same three for
// bigcache (DefaultConfig, 16384 keys, 256 byte values; BENCHMARKS.md has
// the whole table and the command). On a shared 2-core Intel Xeon VM with
// Go 1.26, one goroutine, medians of three counts of one run:
//
//	raw otter GetIfPresent           42 ns/op     0 B/op   0 allocs/op
//	raw otter GetIfPresent + copy   214 ns/op   256 B/op   1 allocs/op
//	Store.Get                       200 ns/op   256 B/op   1 allocs/op
//	core.Cache.Get over Store       295 ns/op   288 B/op   1 allocs/op
//	Store.Set                       425 ns/op   298 B/op   2 allocs/op
//
// A hit is dominated by the copy the contract requires. On a Zipf workload
// at 8 MiB, below its 28 MiB working set, the store hit 0.855 of reads,
// bigcachestore 0.835.
//
// # Choosing between otterstore and bigcachestore
//
// otterstore keeps values as ordinary Go slices, which the garbage
// collector scans the headers of; bigcachestore keeps them in a few large
// byte arrays the collector does not look into, and evicts oldest first
// per shard. Take otterstore for a better hit ratio when the working set
// does not fit (a skewed, read-mostly key distribution is where frequency
// beats insertion order), for TTL the store itself honours, and for values
// of any size up to MaxValueLen; take bigcachestore for millions of small
// entries on a heap where garbage-collection time matters more than the
// hit ratio.
package otterstore
