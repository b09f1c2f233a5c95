package core

import (
	"time"
)

// coarseTick is how often the read path's clock is refreshed: entries may
// outlive their TTL by up to this much.
const coarseTick = 5 * time.Millisecond

// clockIdleTicks is how many ticks without a read put the clock to sleep.
const clockIdleTicks = 20

// clockLoop refreshes the read path's clock every coarseTick while reads
// happen. After clockIdleTicks ticks without a read it sleeps, so that an
// instance that only publishes and evicts is not woken 200 times a second;
// the first read after that reads the exact clock and wakes it.
func (c *Cache) clockLoop() {
	defer c.wg.Done()
	t := time.NewTicker(coarseTick)
	defer t.Stop()
	idle := 0
	for {
		select {
		case now := <-t.C:
			c.coarse.Store(now.UnixNano())
			if c.clockRead.Swap(false) {
				idle = 0
				continue
			}
			if idle++; idle < clockIdleTicks {
				continue
			}
			t.Stop()
			c.clockAsleep.Store(true)
			select {
			case <-c.clockWake:
			case <-c.stop:
				return
			}
			idle = 0
			t.Reset(coarseTick)
		case <-c.stop:
			return
		}
	}
}

// nowNano is the read path's clock.
func (c *Cache) nowNano() int64 {
	if c.exactClock {
		return c.now().UnixNano()
	}
	if c.clockAsleep.Load() {
		n := time.Now().UnixNano()
		c.coarse.Store(n)
		if c.clockAsleep.CompareAndSwap(true, false) {
			select {
			case c.clockWake <- struct{}{}:
			default:
			}
		}
		return n
	}
	if !c.clockRead.Load() {
		// Stored once per tick at most: readers on other cores keep the
		// cache line shared.
		c.clockRead.Store(true)
	}
	return c.coarse.Load()
}
