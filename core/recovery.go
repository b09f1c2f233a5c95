// recovery.go: recovery without flushing, over a Durable transport (one
// totally ordered log per namespace). A disconnect or a silence suspends
// the store: nothing is served from it or cached, and evictions keep being
// applied as messages arrive. When delivery resumes where it stopped (or
// the backlog is delivered), an own message sent since then coming back
// proves that everything published before it has been delivered, and
// applied: the store is served again, warm. Everything here is called with
// recv.mu held.

package core

import "time"

// suspend stops serving and filling the store without clearing it.
func (c *Cache) suspend(cause string) {
	if c.fills.suspended.Swap(true) {
		return
	}
	c.fills.degraded.Store(true)
	c.ctr.suspensions.Add(1)
	c.log.Warn("backplane: local cache suspended until delivery has caught up", "cause", cause)
}

// catchUpFrom waits, after delivery resumed at since, for an own message
// sent at or after since to come back; the publisher sends one at once.
func (c *Cache) catchUpFrom(since time.Time) {
	c.link.catchUp = since
	c.pub.probe()
}

// caughtUp serves the store again: every message published before an own
// message that came back has been applied. The peer table is kept, since
// the log delivered every peer's messages in order.
func (c *Cache) caughtUp(cause string) {
	l := &c.link
	if !l.up || l.silent {
		return
	}
	l.catchUp = time.Time{}
	if !c.fills.suspended.Swap(false) {
		return
	}
	c.fills.degraded.Store(false)
	c.log.Info("backplane: local cache served again: delivery caught up", "cause", cause)
}
