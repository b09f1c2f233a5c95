// liveness.go: whether the link works. The own echo (own messages that come
// back), connection events, silence, lost peers and the canary decide when
// the instance stops caching and when it flushes (link, guarded by
// recv.mu; the monitor and canary goroutines).

package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// link is the state of the instance's link to the others. It is guarded by
// recv.mu: messages, events and the monitor change it.
type link struct {
	up       bool      // the transport's last reported state
	silent   bool      // own messages stopped coming back in time
	lastRecv time.Time // when the last message (own or peer) arrived
	ownFresh time.Time // newest publish time (own clock) of an own message that came back
	baseline time.Time // since when the peer table is complete
	// selfCanary is when the own canary last came back; canarySince is
	// since when canaries are expected.
	selfCanary  time.Time
	canarySince time.Time
	// durable is the transport's Limits.Durable, set by Start; catchUp is
	// when delivery resumed after a disconnect over it, until an own
	// message sent since comes back (zero otherwise). See recovery.go.
	durable bool
	catchUp time.Time
}

// CanaryKey is the key the canary probe invalidates (Options.CanaryInterval).
const CanaryKey = "\x00backplane.canary"

func hasCanary(keys []string) bool {
	for _, k := range keys {
		if k == CanaryKey {
			return true
		}
	}
	return false
}

// canaryLoop publishes the canary through the Invalidate path.
func (c *Cache) canaryLoop() {
	t := time.NewTicker(c.opts.CanaryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.life.stop:
			return
		}
		ctx, cancel := context.WithTimeout(c.life.runCtx, c.opts.PublishTimeout)
		if err := c.Invalidate(ctx, CanaryKey); err != nil && !errors.Is(err, ErrClosed) {
			c.log.Debug("backplane: canary not published", "err", err)
		}
		cancel()
	}
}

// echoSlots is how many of its latest messages an instance remembers to
// recognise them when they come back.
const echoSlots = 256

// echoes are the instance's latest messages (op, number and publish time
// to the nanosecond), recorded before they are sent: an own message that
// comes back counts as the own echo only if it is one of them, so nothing
// anyone else publishes under this instance's ID can make the link look
// fresh. mu guards it: rounds record, the handler looks.
type echoes struct {
	mu   sync.Mutex
	ring [echoSlots]echo
	next int
}

type echo struct {
	op   Op
	seq  uint64
	sent int64
}

// record remembers envs, encoded and about to be sent.
func (e *echoes) record(envs []Envelope) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range envs {
		e.ring[e.next] = echo{op: envs[i].Op, seq: envs[i].Seq, sent: envs[i].Sent.UnixNano()}
		e.next = (e.next + 1) % echoSlots
	}
}

// sentByUs reports whether op, seq and sent are those of a message this
// instance recorded.
func (e *echoes) sentByUs(op Op, seq uint64, sent time.Time) bool {
	if sent.IsZero() {
		return false
	}
	ns := sent.UnixNano()
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 1; i <= echoSlots; i++ { // newest first
		m := &e.ring[(e.next-i+echoSlots)%echoSlots]
		if m.sent == ns && m.seq == seq && m.op == op {
			return true
		}
	}
	return false
}

// ownMessage notes a message under this instance's ID received back. One
// it sent is the own echo: it carries the own clock, and its age is how
// far behind delivery to this instance runs; only a fresh one ends a
// silence. Any other is a forgery, dropped and counted as rejected.
func (c *Cache) ownMessage(op Op, seq uint64, sent time.Time, canary bool) {
	if !c.echo.sentByUs(op, seq, sent) {
		// Health first, counters after: whoever sees the count sees Health
		// say so.
		c.rejected("forged", fmt.Errorf("a %v message under this instance's ID that it did not send", op))
		c.ctr.rejected.Add(1)
		c.inst.add(c.inst.rejected, 1)
		return
	}
	now := c.now()
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	l := &c.link
	l.lastRecv = now
	if sent.After(l.ownFresh) {
		l.ownFresh = sent
	}
	if l.silent && now.Sub(sent) <= c.opts.heartbeatTimeout() {
		l.silent = false
		c.recv.heardAll(now)
		if l.durable {
			c.caughtUp("resumed")
		} else {
			c.linkRestored("resumed")
		}
	}
	if !l.catchUp.IsZero() && !sent.Before(l.catchUp) {
		c.caughtUp("reconnect")
	}
	if canary {
		l.selfCanary = now
	}
	c.ctr.ignoredOwn.Add(1)
	c.inst.add(c.inst.ignoredOwn, 1)
}

// event handles a connection event of the transport.
func (c *Cache) event(ev Event) {
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	l := &c.link
	switch ev.Kind {
	case EventConnected:
		c.log.Debug("backplane: connected")
	case EventDisconnected:
		c.log.Warn("backplane: disconnected", "err", ev.Err)
		if l.up {
			l.up = false
			c.linkLost("disconnect")
		}
	case EventReconnected:
		if ev.Err != nil {
			c.log.Info("backplane: reconnected", "resumed", ev.Resumed, "why", ev.Err)
		} else {
			c.log.Info("backplane: reconnected", "resumed", ev.Resumed)
		}
		if !l.up {
			l.up = true
			l.lastRecv, l.ownFresh = c.now(), c.now()
			c.recv.heardAll(l.lastRecv)
			if l.durable && ev.Resumed {
				c.catchUpFrom(l.lastRecv)
			} else {
				if l.durable {
					c.ctr.gaps.Add(1) // the log could not resume: count the loss
				}
				c.linkRestored("reconnect")
			}
		}
	case EventLoss:
		if c.opts.OnGap == PolicyFlush {
			c.flush("loss")
		} else {
			c.log.Warn("backplane: transport lost messages, keeping cache (OnGap=keep)", "err", ev.Err)
		}
		c.ctr.gaps.Add(1)
	}
}

// linkLost applies OnDisconnect: over a Durable transport it suspends the
// store (see recovery.go). Called with recv.mu held.
func (c *Cache) linkLost(cause string) {
	if c.link.durable {
		c.suspend(cause)
		return
	}
	if c.opts.OnDisconnect == PolicyFlush {
		c.fills.degraded.Store(true)
		c.flush(cause)
	}
}

// linkRestored applies OnReconnect and forgets what the peer table knew.
// Called with recv.mu held.
func (c *Cache) linkRestored(cause string) {
	l := &c.link
	if !l.up || l.silent {
		return
	}
	now := c.now()
	flush := c.opts.OnReconnect == PolicyFlush || c.fills.degraded.Load()
	if !flush {
		// Messages still waited for will not be waited for any more.
		for id, p := range c.recv.peers {
			if len(p.missing) > 0 {
				c.gapFound(id)
				break
			}
		}
	}
	c.recv.forgetAll()
	l.baseline = now
	l.canarySince = now
	l.catchUp = time.Time{}
	if flush {
		c.flush(cause)
	}
	c.fills.suspended.Store(false)
	c.fills.degraded.Store(false)
}

// monitorLoop notices a silent link and forgets peers that went away.
func (c *Cache) monitorLoop() {
	t := time.NewTicker(c.opts.HeartbeatInterval / 2)
	defer t.Stop()
	timeout := c.opts.heartbeatTimeout()
	for {
		select {
		case <-t.C:
		case <-c.life.stop:
			return
		}
		now := c.now()
		c.recv.mu.Lock()
		l := &c.link
		if l.up && !l.silent && now.Sub(l.ownFresh) > timeout {
			l.silent = true
			c.log.Warn("backplane: link silent: own heartbeats are not coming back in time", "newest_age", now.Sub(l.ownFresh))
			c.linkLost("silence")
		}
		// Peers are judged quiet only while this instance hears: during
		// its own outage nobody is heard, and nobody is gone for that.
		if l.up && !l.silent {
			lost := 0
			for id, p := range c.recv.peers {
				if now.Sub(p.lastSeen) > timeout {
					c.recv.forget(id)
					c.ackPeerGone(id, false)
					c.depart(id, p)
					lost++
				}
			}
			for id, p := range c.recv.departed {
				if now.Sub(p.lastSeen) > c.opts.ReplayWindow+timeout {
					delete(c.recv.departed, id)
				}
			}
			// A peer gone quiet without saying goodbye, while this
			// instance's own link works, either died or cannot reach
			// this instance (a broken route between cluster nodes):
			// what it published meanwhile may be lost. Not over a
			// Durable transport: what it got into the log has been
			// delivered, in order, before the own messages that keep
			// this instance's link fresh.
			if lost > 0 && l.durable {
				c.log.Info("backplane: peer went quiet without leaving; the log holds what it published", "peers", lost)
				c.ctr.peersLost.Add(uint64(lost))
			} else if lost > 0 {
				if c.opts.OnGap == PolicyFlush {
					c.flush("peer-lost")
				} else {
					c.log.Warn("backplane: peer went quiet without leaving, keeping cache (OnGap=keep)", "peers", lost)
				}
				c.ctr.gaps.Add(uint64(lost))
			}
		}
		c.recv.mu.Unlock()
	}
}
