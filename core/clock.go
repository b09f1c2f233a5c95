// clock.go: the read path's coarse clock (coarseClock) and the goroutine
// that refreshes it.

package core

import (
	"sync/atomic"
	"time"
)

// coarseTick is how often the read path's clock is refreshed: entries may
// outlive their TTL by up to this much.
const coarseTick = 5 * time.Millisecond

// clockIdleTicks is how many ticks without a read put the clock to sleep.
const clockIdleTicks = 20

// coarseClock is the wall clock in Unix nanoseconds for the read path,
// refreshed every coarseTick while reads happen: reading the clock costs
// more than the rest of a cache hit on some hosts. Its state is atomic:
// readers on any goroutine, one writer (run). Tests with their own clock
// bypass it (exact).
type coarseClock struct {
	now    func() time.Time
	exact  bool          // read now() on every call
	nano   atomic.Int64  // the time of the last tick
	read   atomic.Bool   // a read used the clock since the last tick
	asleep atomic.Bool   // run sleeps until a read wakes it
	wake   chan struct{} // buffered: wakes run
}

func (k *coarseClock) init(now func() time.Time, exact bool) {
	k.now, k.exact = now, exact
	k.nano.Store(time.Now().UnixNano())
	k.wake = make(chan struct{}, 1)
}

// run refreshes the clock every coarseTick while reads happen, until stop
// is closed. After clockIdleTicks ticks without a read it sleeps, so that
// an instance that only publishes and evicts is not woken 200 times a
// second; the first read after that reads the exact clock and wakes it.
func (k *coarseClock) run(stop <-chan struct{}) {
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	idle := 0
	for {
		select {
		case now := <-t.C:
			k.nano.Store(now.UnixNano())
			if k.read.Swap(false) {
				idle = 0
				continue
			}
			if idle++; idle < clockIdleTicks {
				continue
			}
			t.Stop()
			k.asleep.Store(true)
			select {
			case <-k.wake:
			case <-stop:
				return
			}
			idle = 0
			t.Reset(coarseTick)
		case <-stop:
			return
		}
	}
}

// nowNano is the read path's clock.
func (k *coarseClock) nowNano() int64 {
	if k.exact {
		return k.now().UnixNano()
	}
	if k.asleep.Load() {
		n := time.Now().UnixNano()
		k.nano.Store(n)
		if k.asleep.CompareAndSwap(true, false) {
			select {
			case k.wake <- struct{}{}:
			default:
			}
		}
		return n
	}
	if !k.read.Load() {
		// Stored once per tick at most: readers on other cores keep the
		// cache line shared.
		k.read.Store(true)
	}
	return k.nano.Load()
}
