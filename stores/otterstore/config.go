package otterstore

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/backplane-go/backplane/core"
)

// EntryOverhead is the weight in bytes that a byte-bounded store adds to the
// key and the value of every entry: an estimate of otter's node, its hash
// table slot and the slice header, so that many small entries do not
// overrun MaxBytes by far.
const EntryOverhead = 128

// ReservedKeyLen is the key length that Caps().MaxValueLen leaves room for
// when the limit is derived from MaxBytes: a value of MaxValueLen bytes fits
// together with any key of up to ReservedKeyLen bytes.
const ReservedKeyLen = 1024

// maxWeight is the largest weight otter records for one entry.
const maxWeight = math.MaxUint32

// Config configures a Store. Start from DefaultConfig; the zero value is a
// valid, unbounded store that ignores TTL.
type Config struct {
	// MaxBytes bounds the cache by weight: every entry weighs the length of
	// its key and of its value plus EntryOverhead bytes, and otter evicts
	// the entries it judges least likely to be read again (W-TinyLFU) to
	// stay within the bound. 0 bounds the cache by MaxEntries instead.
	// Default 256 MiB.
	MaxBytes int
	// MaxEntries bounds the number of entries, whatever their size. It is
	// used only with MaxBytes 0; setting both is an error. With both 0 the
	// cache grows without bound and never evicts. Default 0.
	MaxEntries int
	// MaxValueLen is the largest value Set accepts; a longer one fails with
	// an error wrapping core.ErrValueTooLarge. 0 means no limit of its own:
	// with MaxBytes an entry must still weigh at most MaxBytes (and at most
	// 4 GiB, otter's weight being 32 bits). Default 1 MiB.
	MaxValueLen int
	// InitialCapacity is the number of entries the hash table is sized for
	// at the start; 0 lets otter choose. Default 0.
	InitialCapacity int
	// TTL makes the store expire each entry after the ttl given to Set
	// (0: never). Expired entries are never returned and no longer count
	// towards MaxBytes once otter removes them, on a later operation or on
	// its clean-up every second. Without it the ttl is ignored and only
	// eviction removes entries; the engine's own TTL holds in both cases.
	// Default true.
	TTL bool
	// ClockResolution is, with TTL, how the store reads the time. 0 reads
	// the precise time on every Get and Set; a positive resolution reads a
	// clock that a goroutine updates that often (much cheaper per read, and
	// entries expire up to one resolution early or late). Default 1s.
	ClockResolution time.Duration
}

// DefaultConfig returns the configuration New is meant to be used with when
// nothing better is known: at most 256 MiB of entries, values up to 1 MiB,
// the ttl given to Set honoured on a clock of one second's resolution.
func DefaultConfig() Config {
	return Config{
		MaxBytes:        256 << 20,
		MaxValueLen:     1 << 20,
		TTL:             true,
		ClockResolution: time.Second,
	}
}

// Validate reports every invalid field of c, naming it. The errors wrap
// core.ErrInvalidOption.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("otterstore: %s: "+format+": %w", append(append([]any{field}, args...), core.ErrInvalidOption)...))
	}
	if c.MaxBytes < 0 {
		bad("MaxBytes", "%d is negative", c.MaxBytes)
	}
	if c.MaxEntries < 0 {
		bad("MaxEntries", "%d is negative", c.MaxEntries)
	}
	if c.MaxBytes > 0 && c.MaxEntries > 0 {
		bad("MaxEntries", "%d set together with MaxBytes %d (bound by one of them)", c.MaxEntries, c.MaxBytes)
	}
	if c.MaxValueLen < 0 {
		bad("MaxValueLen", "%d is negative", c.MaxValueLen)
	}
	if c.MaxBytes > 0 && c.MaxValueLen > 0 {
		if room := min(c.MaxBytes, maxWeight) - EntryOverhead - ReservedKeyLen; c.MaxValueLen > room {
			bad("MaxValueLen", "%d does not fit MaxBytes %d with a %d byte key (at most %d)", c.MaxValueLen, c.MaxBytes, ReservedKeyLen, max(room, 0))
		}
	} else if c.MaxBytes > 0 && c.MaxBytes <= EntryOverhead+ReservedKeyLen {
		bad("MaxBytes", "%d cannot hold a value with a %d byte key", c.MaxBytes, ReservedKeyLen)
	}
	if c.InitialCapacity < 0 {
		bad("InitialCapacity", "%d is negative", c.InitialCapacity)
	}
	if c.ClockResolution < 0 {
		bad("ClockResolution", "%v is negative", c.ClockResolution)
	}
	return errors.Join(errs...)
}

// maxValueLen is the limit Caps reports: MaxValueLen, or with MaxBytes and
// no MaxValueLen the largest value that fits with a key of ReservedKeyLen
// bytes.
func (c Config) maxValueLen() int {
	if c.MaxValueLen > 0 || c.MaxBytes == 0 {
		return c.MaxValueLen
	}
	return min(c.MaxBytes, maxWeight) - EntryOverhead - ReservedKeyLen
}
