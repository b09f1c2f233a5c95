package chaos_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// checker is the consistency checker. Writers report each write once its
// Invalidate returned nil (completed); readers report what they read and
// when the read started. A read that returns version v is stale by
// start - r, where r is the earliest return of an Invalidate of a version
// newer than v that completed before the read started. A read stale by
// more than the bound is a violation.
type checker struct {
	bound time.Duration
	start time.Time
	keys  []keyHistory

	reads, staleReads, violations atomic.Int64
	maxStale                      atomic.Int64 // nanoseconds

	mu      sync.Mutex
	reports []string // the first violations, in detail
}

// keyHistory are a key's completed writes in the order their Invalidate
// returned; maxVer[i] is the newest version among the first i+1.
type keyHistory struct {
	mu       sync.Mutex
	returned []time.Time
	maxVer   []int64
}

func newChecker(keys int, bound time.Duration) *checker {
	return &checker{bound: bound, start: time.Now(), keys: make([]keyHistory, keys)}
}

// completed records that the Invalidate of version v of key k returned
// nil just now.
func (c *checker) completed(k int, v int64) {
	h := &c.keys[k]
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now() // under the lock: returned stays sorted
	m := v
	if n := len(h.maxVer); n > 0 && h.maxVer[n-1] > m {
		m = h.maxVer[n-1]
	}
	h.returned = append(h.returned, now)
	h.maxVer = append(h.maxVer, m)
}

// read checks a read of key k that started at start and returned version
// got on instance inst; describe is called for the report of a violation.
func (c *checker) read(k int, start time.Time, got int64, inst int, describe func() string) {
	c.reads.Add(1)
	h := &c.keys[k]
	h.mu.Lock()
	i := sort.Search(len(h.maxVer), func(i int) bool { return h.maxVer[i] > got })
	var stale time.Duration
	var newer int64
	var at time.Time
	if i < len(h.maxVer) && h.returned[i].Before(start) {
		stale, newer, at = start.Sub(h.returned[i]), h.maxVer[i], h.returned[i]
	}
	h.mu.Unlock()
	if stale <= 0 {
		return
	}
	c.staleReads.Add(1)
	for {
		old := c.maxStale.Load()
		if int64(stale) <= old || c.maxStale.CompareAndSwap(old, int64(stale)) {
			break
		}
	}
	if stale > c.bound {
		if c.violations.Add(1) <= 5 {
			c.mu.Lock()
			c.reports = append(c.reports, fmt.Sprintf(
				"instance %d read key %d at %v: v%d, but v%d was invalidated at %v (stale by %v, bound %v)\n%s",
				inst, k, start.Sub(c.start).Round(time.Millisecond), got, newer,
				at.Sub(c.start).Round(time.Millisecond), stale.Round(time.Millisecond), c.bound, describe()))
			c.mu.Unlock()
		}
	}
}

func (c *checker) report() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.reports, "\n")
}
