// receiver.go: what arrives from the Backplane. The handler verifies and
// decodes each payload, checks own messages against what this instance
// sent, tracks each peer's sequence numbers (the peer table, bounded, with
// the reorder window) and applies evictions; connection events go to
// liveness (liveness.go).

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
// too. Its memory is bounded by Options.MaxPeers and MaxMissing, whatever
// arrives.
type receiver struct {
	mu        sync.Mutex
	peers     map[SourceID]*peer
	missing   int       // sequence numbers waited for, over all peers
	lastHeard time.Time // when the last message of another instance arrived
	// departed are the peers that left or went quiet, with signing on:
	// their replayed messages are recognised (at most MaxPeers, each kept
	// for the replay window).
	departed map[SourceID]*peer
	// reorderWindow is Options.ReorderWindow over a transport whose
	// messages may overtake one another, zero otherwise.
	reorderWindow time.Duration
	reorderTimer  *time.Timer  // runs expireReorders while messages are missing
	reorderChecks atomic.Int64 // runs of expireReorders (tests)
	// lastReject and rejectCause describe the last message dropped as
	// undecodable, unverified or a forged own message (Health).
	lastReject  time.Time
	rejectCause string
	// waiters are the acknowledged calls waiting; ackWanted the peers
	// whose requests for acknowledgements are to be answered (acks.go).
	waiters   map[*ackWaiter]struct{}
	ackWanted map[SourceID]struct{}
}

func (r *receiver) init() {
	r.peers = make(map[SourceID]*peer)
	r.departed = make(map[SourceID]*peer)
	r.waiters = make(map[*ackWaiter]struct{})
	r.ackWanted = make(map[SourceID]struct{})
}

// stopTimer stops the reorder timer at Close.
func (r *receiver) stopTimer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reorderTimer != nil {
		r.reorderTimer.Stop()
	}
}

// forget removes a peer from the table. Called with mu held.
func (r *receiver) forget(id SourceID) {
	if p, ok := r.peers[id]; ok {
		r.missing -= len(p.missing)
		delete(r.peers, id)
	}
}

// heardAll gives every peer a heartbeat timeout from now before it counts
// as quiet: after this instance's own outage, which kept it from hearing
// anyone. Called with mu held.
func (r *receiver) heardAll(now time.Time) {
	for _, p := range r.peers {
		if p.lastSeen.Before(now) {
			p.lastSeen = now
		}
	}
}

// forgetAll empties the table. Called with mu held.
func (r *receiver) forgetAll() {
	clear(r.peers)
	r.missing = 0
}

// handler is the Cache's Handler; a separate type keeps the methods off
// Cache's API. Neither method calls the Backplane (see Handler).
type handler struct{ c *Cache }

func (h handler) HandleMessage(p []byte) { h.c.receive(p) }
func (h handler) HandleEvent(ev Event)   { h.c.event(ev) }

func (c *Cache) receive(p []byte) {
	if c.opts.Keyring == nil && c.opts.CanaryInterval <= 0 {
		// An own message needs its header only: skip decoding its keys.
		if op, src, seq, sent, ok := peekHeader(p); ok && src == c.id {
			c.ownMessage(op, seq, sent, false)
			return
		}
	}
	env, err := DecodeEnvelope(p)
	if err != nil {
		if len(p) >= 2 && p[0] == wireMagic0 && p[1] == wireMagic1 {
			// An envelope this build cannot read (another version, or
			// damaged): a peer may be talking past this instance.
			c.rejected("undecodable", err)
		} else {
			c.log.Debug("backplane: dropped undecodable payload", "bytes", len(p), "err", err)
		}
		c.ctr.decodeErrors.Add(1) // after Health knows
		c.inst.add(c.inst.decodeErrors, 1)
		return
	}
	authentic := false
	if kr := c.opts.Keyring; kr != nil {
		err := kr.Verify(p, &env)
		if err == nil {
			if age := c.now().Sub(env.Sent); age > c.opts.ReplayWindow || age < -c.opts.ReplayWindow {
				err = fmt.Errorf("%w: published %v from now, outside the replay window %v", ErrBadSignature, -age, c.opts.ReplayWindow)
			}
		}
		authentic = err == nil
		if err != nil && !(errors.Is(err, ErrUnsigned) && c.opts.AcceptUnsigned) {
			c.rejected("unverified", err)
			c.ctr.rejected.Add(1)
			c.inst.add(c.inst.rejected, 1)
			return
		}
	}
	if env.Source == c.id {
		c.ownMessage(env.Op, env.Seq, env.Sent, env.Op == OpInvalidate && hasCanary(env.Keys))
		return
	}
	now := c.now()
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	pr, gap := c.trackSeq(&env, now, authentic)
	if pr == nil && !gap {
		c.ctr.replayed.Add(1)
		return
	}
	c.link.lastRecv, c.recv.lastHeard = now, now
	keys := env.Keys
	switch env.Op {
	case OpInvalidate:
		var isAck bool
		if keys, isAck = c.ackKeys(env.Source, pr, keys); isAck {
			break
		}
		c.evictLocal(keys)
		if !env.Sent.IsZero() {
			c.inst.record(c.inst.propagationLag, now.Sub(env.Sent))
		}
		if hasCanary(env.Keys) {
			if pr != nil {
				pr.lastCanary, pr.canaryLag = now, now.Sub(env.Sent)
			}
			c.inst.record(c.inst.canaryLag, now.Sub(env.Sent))
		}
	case OpInvalidateTags:
		c.invalidateTags(env.Keys)
		c.ctr.tagsInvalidated.Add(uint64(len(env.Keys)))
	case OpClear:
		c.flush(causeRemoteClear)
	case OpLeave:
		if pr != nil {
			defer c.left(env.Source, pr, authentic) // after the gap check below
		}
	}
	if gap {
		c.gapFound(env.Source)
	}
	// Counters move after the effects: whoever sees them sees the
	// evictions and flushes done.
	if env.Op == OpInvalidate {
		c.ctr.keysEvicted.Add(uint64(len(keys)))
	}
	c.ctr.received.Add(1)
	c.inst.opCount(c.inst.received, env.Op, 1)
}

// rejected notes a message dropped as undecodable, unverified or forged,
// for Health.
func (c *Cache) rejected(what string, err error) {
	c.log.Debug("backplane: dropped a message", "why", what, "err", err)
	c.recv.mu.Lock()
	c.recv.lastReject, c.recv.rejectCause = c.now(), what+": "+err.Error()
	c.recv.mu.Unlock()
}

// trackSeq updates the peer table for env and returns the peer's entry
// and whether messages of the peer were lost. It returns a nil peer and no
// gap for an authentic copy of a message already applied (nothing to do),
// and a nil peer and a gap for a peer beyond Options.MaxPeers (applied,
// but its losses cannot be checked). Called with recv.mu held.
func (c *Cache) trackSeq(env *Envelope, now time.Time, authentic bool) (*peer, bool) {
	r := &c.recv
	p, known := r.peers[env.Source]
	var back *peer // what was kept of a peer that went quiet or left
	if !known {
		if d, ok := r.departed[env.Source]; ok {
			if authentic && d.replay(env.Seq, env.Sent) {
				return nil, false
			}
			delete(r.departed, env.Source) // it is back
			back = d
		}
	}
	if !known {
		if len(r.peers) >= c.opts.MaxPeers {
			c.ctr.peersRefused.Add(1)
			return nil, true
		}
		// A peer heard of for the first time has published before (Seq
		// says how much). If the peer table is complete (we have listened
		// longer than a heartbeat timeout, so every live peer's heartbeat
		// should have reached us) those messages should have reached us
		// too: they are missing, like any other (and may still arrive, if
		// the peer's messages may overtake one another). Otherwise they
		// may have been published before we listened.
		p = &peer{highest: env.Seq, firstSeen: now}
		switch {
		case back != nil && c.link.durable:
			// Back from a silence the log covered: its numbers go on
			// where they stopped, and what it published meanwhile
			// comes in order.
			p.highest, p.lastSent = back.highest, back.lastSent
		case c.opts.HeartbeatInterval > 0 && now.Sub(c.link.baseline) > c.opts.heartbeatTimeout():
			p.highest = 0
		}
		r.peers[env.Source] = p
		c.ackPeerNew(env.Source)
	} else if authentic && p.replay(env.Seq, env.Sent) {
		return nil, false
	}
	p.lastSeen = now
	if env.Sent.After(p.lastSent) {
		p.lastSent = env.Sent
	}
	s := seqs{now: now, window: r.reorderWindow, authentic: authentic,
		budget: min(maxMissing-len(p.missing), c.opts.MaxMissing-r.missing)}
	before := len(p.missing)
	var gap bool
	if env.Op == OpHeartbeat || env.Op == OpLeave {
		gap = p.announced(env.Seq, s)
		if env.Op == OpLeave && len(p.missing) > 0 {
			// The peer is forgotten now: what is missing cannot be
			// waited for.
			p.giveUp()
			gap = true
		}
	} else {
		gap = p.arrived(env.Seq, s)
	}
	r.missing += len(p.missing) - before
	if len(p.missing) > 0 && r.reorderTimer == nil {
		r.reorderTimer = time.AfterFunc(r.reorderWindow, c.expireReorders)
	}
	return p, gap
}

// left forgets a peer that said goodbye; with signing it is remembered as
// departed, so that replays of its messages cost nothing. Called with
// recv.mu held.
func (c *Cache) left(id SourceID, p *peer, authentic bool) {
	c.recv.forget(id)
	c.ackPeerGone(id, true)
	if authentic {
		c.depart(id, p)
	}
}

// depart remembers a peer that left or went quiet, with signing on (its
// replays are recognised) or over a Durable transport (a peer back from a
// silence goes on with its numbers), within Options.MaxPeers: the one that
// departed first makes room.
// Called with recv.mu held.
func (c *Cache) depart(id SourceID, p *peer) {
	if c.opts.Keyring == nil && !c.link.durable {
		return
	}
	r := &c.recv
	if len(r.departed) >= c.opts.MaxPeers {
		var oldest SourceID
		var at time.Time
		for d, q := range r.departed {
			if at.IsZero() || q.lastSeen.Before(at) {
				oldest, at = d, q.lastSeen
			}
		}
		delete(r.departed, oldest)
	}
	r.departed[id] = &peer{highest: p.highest, lastSent: p.lastSent, lastSeen: p.lastSeen}
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
		r.missing -= len(p.missing)
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
