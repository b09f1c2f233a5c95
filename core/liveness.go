package core

import (
	"context"
	"errors"
	"time"
)

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
	defer c.wg.Done()
	t := time.NewTicker(c.opts.CanaryInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		ctx, cancel := context.WithTimeout(c.runCtx, c.opts.PublishTimeout)
		if err := c.Invalidate(ctx, CanaryKey); err != nil && !errors.Is(err, ErrClosed) {
			c.log.Debug("backplane: canary not published", "err", err)
		}
		cancel()
	}
}

func (c *Cache) event(ev Event) {
	c.recvMu.Lock()
	defer c.recvMu.Unlock()
	switch ev.Kind {
	case EventConnected:
		c.log.Debug("backplane: connected")
	case EventDisconnected:
		c.log.Warn("backplane: disconnected", "err", ev.Err)
		if c.linkUp {
			c.linkUp = false
			c.linkLost("disconnect")
		}
	case EventReconnected:
		c.log.Info("backplane: reconnected")
		if !c.linkUp {
			c.linkUp = true
			c.lastRecv, c.ownFresh = c.now(), c.now()
			c.linkRestored("reconnect")
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

// linkLost applies OnDisconnect. Called with recvMu held.
func (c *Cache) linkLost(cause string) {
	if c.opts.OnDisconnect == PolicyFlush {
		c.degraded.Store(true)
		c.flush(cause)
	}
}

// linkRestored applies OnReconnect and forgets what the peer table knew.
// Called with recvMu held.
func (c *Cache) linkRestored(cause string) {
	if !c.linkUp || c.silent {
		return
	}
	now := c.now()
	flush := c.opts.OnReconnect == PolicyFlush || c.degraded.Load()
	if !flush {
		// Messages still waited for will not be waited for any more.
		for id, p := range c.peers {
			if len(p.missing) > 0 {
				c.gapFound(id)
				break
			}
		}
	}
	clear(c.peers)
	c.baseline = now
	c.canarySince = now
	if flush {
		c.flush(cause)
	}
	c.degraded.Store(false)
}

// monitorLoop notices a silent link and forgets peers that went away.
func (c *Cache) monitorLoop() {
	defer c.wg.Done()
	t := time.NewTicker(c.opts.HeartbeatInterval / 2)
	defer t.Stop()
	timeout := c.opts.heartbeatTimeout()
	for {
		select {
		case <-t.C:
		case <-c.stop:
			return
		}
		now := c.now()
		c.recvMu.Lock()
		if c.linkUp && !c.silent && now.Sub(c.ownFresh) > timeout {
			c.silent = true
			c.log.Warn("backplane: link silent: own heartbeats are not coming back in time", "newest_age", now.Sub(c.ownFresh))
			c.linkLost("silence")
		}
		if !c.silent {
			lost := 0
			for id, p := range c.peers {
				if now.Sub(p.lastSeen) > timeout {
					delete(c.peers, id)
					lost++
				}
			}
			// A peer gone quiet without saying goodbye, while this
			// instance's own link works, either died or cannot reach
			// this instance (a broken route between cluster nodes):
			// what it published meanwhile may be lost.
			if lost > 0 {
				if c.opts.OnGap == PolicyFlush {
					c.flush("peer-lost")
				} else {
					c.log.Warn("backplane: peer went quiet without leaving, keeping cache (OnGap=keep)", "peers", lost)
				}
				c.ctr.gaps.Add(uint64(lost))
			}
		}
		c.recvMu.Unlock()
	}
}
