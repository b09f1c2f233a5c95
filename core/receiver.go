// receiver.go: what arrives from the Backplane. The handler verifies and
// decodes each payload, tracks each peer's sequence numbers (the peer
// table, with the reorder window) and applies evictions; connection events
// go to liveness (liveness.go).

package core

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// receiver is the receive side's state. mu guards it and the link's state
// (Cache.link): a message changes both in one step. The transport calls
// the handler one call at a time; the monitor and the reorder timer take mu
// too.
type receiver struct {
	mu        sync.Mutex
	peers     map[SourceID]*peer
	lastHeard time.Time // when the last message of another instance arrived
	// reorderWindow is Options.ReorderWindow over a transport whose
	// messages may overtake one another, zero otherwise.
	reorderWindow time.Duration
	reorderTimer  *time.Timer  // runs expireReorders while messages are missing
	reorderChecks atomic.Int64 // runs of expireReorders (tests)
}

func (r *receiver) init() { r.peers = make(map[SourceID]*peer) }

// stopTimer stops the reorder timer at Close.
func (r *receiver) stopTimer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reorderTimer != nil {
		r.reorderTimer.Stop()
	}
}

// handler is the Cache's Handler; a separate type keeps the methods off
// Cache's API. Neither method calls the Backplane (see Handler).
type handler struct{ c *Cache }

func (h handler) HandleMessage(p []byte) { h.c.receive(p) }
func (h handler) HandleEvent(ev Event)   { h.c.event(ev) }

func (c *Cache) receive(p []byte) {
	if c.opts.Keyring == nil && c.opts.CanaryInterval <= 0 {
		// An own message needs its header only: skip decoding its keys.
		if op, src, sent, ok := peekHeader(p); ok && src == c.id {
			c.recv.mu.Lock()
			c.ownMessage(op, sent, false, c.now())
			c.recv.mu.Unlock()
			return
		}
	}
	env, err := DecodeEnvelope(p)
	if err != nil {
		c.ctr.decodeErrors.Add(1)
		c.inst.add(c.inst.decodeErrors, 1)
		c.log.Debug("backplane: dropped undecodable payload", "bytes", len(p), "err", err)
		return
	}
	if kr := c.opts.Keyring; kr != nil {
		err := kr.Verify(p, &env)
		if err == nil {
			if age := c.now().Sub(env.Sent); age > c.opts.ReplayWindow || age < -c.opts.ReplayWindow {
				err = fmt.Errorf("%w: published %v from now, outside the replay window %v", ErrBadSignature, -age, c.opts.ReplayWindow)
			}
		}
		if err != nil && !(errors.Is(err, ErrUnsigned) && c.opts.AcceptUnsigned) {
			c.ctr.rejected.Add(1)
			c.inst.add(c.inst.rejected, 1)
			c.log.Debug("backplane: dropped a message that failed verification", "err", err)
			return
		}
	}
	now := c.now()
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	if env.Source == c.id {
		c.ownMessage(env.Op, env.Sent, env.Op == OpInvalidate && hasCanary(env.Keys), now)
		return
	}
	c.link.lastRecv, c.recv.lastHeard = now, now
	gap := c.trackSeq(&env, now)
	switch env.Op {
	case OpInvalidate:
		c.evictLocal(env.Keys)
		if !env.Sent.IsZero() {
			c.inst.record(c.inst.propagationLag, now.Sub(env.Sent))
		}
		if hasCanary(env.Keys) {
			if p := c.recv.peers[env.Source]; p != nil {
				p.lastCanary, p.canaryLag = now, now.Sub(env.Sent)
			}
			c.inst.record(c.inst.canaryLag, now.Sub(env.Sent))
		}
	case OpClear:
		c.flush("")
	case OpLeave:
		defer delete(c.recv.peers, env.Source) // after the gap check below
	}
	if gap {
		c.gapFound(env.Source)
	}
	// Counters move after the effects: whoever sees them sees the
	// evictions and flushes done.
	c.ctr.keysEvicted.Add(uint64(len(env.Keys)))
	c.ctr.received.Add(1)
	c.inst.opCount(c.inst.received, env.Op, 1)
}

// trackSeq updates the peer table and reports whether messages of the
// peer were lost. Called with recv.mu held.
func (c *Cache) trackSeq(env *Envelope, now time.Time) bool {
	r := &c.recv
	p, known := r.peers[env.Source]
	if !known {
		// A peer heard of for the first time has published before (Seq
		// says how much). If the peer table is complete (we have listened
		// longer than a heartbeat timeout, so every live peer's heartbeat
		// should have reached us) those messages should have reached us
		// too: they are missing, like any other (and may still arrive, if
		// the peer's messages may overtake one another). Otherwise they
		// may have been published before we listened.
		p = &peer{highest: env.Seq}
		if c.opts.HeartbeatInterval > 0 && now.Sub(c.link.baseline) > c.opts.heartbeatTimeout() {
			p.highest = 0
		}
		r.peers[env.Source] = p
	}
	p.lastSeen = now
	var gap bool
	if env.Op == OpHeartbeat || env.Op == OpLeave {
		gap = p.announced(env.Seq, now, r.reorderWindow)
		if env.Op == OpLeave && len(p.missing) > 0 {
			// The peer is forgotten now: what is missing cannot be
			// waited for.
			p.giveUp()
			gap = true
		}
	} else {
		gap = p.arrived(env.Seq, now, r.reorderWindow)
	}
	if len(p.missing) > 0 && r.reorderTimer == nil {
		r.reorderTimer = time.AfterFunc(r.reorderWindow, c.expireReorders)
	}
	return gap
}

// expireReorders gives up the messages that were overtaken longer than
// ReorderWindow ago, and waits again while others are missing.
func (c *Cache) expireReorders() {
	r := &c.recv
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reorderTimer = nil
	r.reorderChecks.Add(1)
	select {
	case <-c.life.stop:
		return
	default:
	}
	now := c.now()
	next := time.Duration(0)
	for id, p := range r.peers {
		if len(p.missing) == 0 {
			continue
		}
		if left := r.reorderWindow - now.Sub(p.waitingSince()); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		p.giveUp()
		c.gapFound(id)
	}
	if next > 0 {
		r.reorderTimer = time.AfterFunc(next, c.expireReorders)
	}
}

// gapFound applies OnGap to messages of a peer found lost. Called with
// recv.mu held.
func (c *Cache) gapFound(src SourceID) {
	if c.opts.OnGap == PolicyFlush {
		c.flush("gap")
	} else {
		c.log.Warn("backplane: messages lost, keeping cache (OnGap=keep)", "peer", src.String()[:8])
	}
	c.ctr.gaps.Add(1)
}
