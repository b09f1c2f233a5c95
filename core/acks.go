// acks.go: acknowledged invalidation. InvalidateAcked, InvalidateTagsAcked
// and ClearAcked return once every live peer has applied the call. The
// request and the acknowledgements travel as ordinary invalidate messages
// whose keys are markers no application key starts with ("\x00backplane."):
// an instance of an earlier release evicts those keys, which do not exist,
// and answers nothing. Every instance says it can acknowledge (an
// acknowledgement for nobody, the hello) when it starts and when it hears
// a new peer; one acknowledgement answers every request of a requester
// received so far, by the highest of its sequence numbers applied in
// order (cumulative), so a burst of calls costs few messages.

package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	// ackReqKey, among the keys of an invalidate message, asks every
	// peer to acknowledge it.
	ackReqKey = "\x00backplane.ack?"
	// ackKey is the first key of an acknowledgement; each further key is
	// ackEntryPrefix, a requester's ID in hex, ":" and the highest of its
	// sequence numbers applied in order.
	ackKey         = "\x00backplane.ack"
	ackEntryPrefix = "\x00"
	// ackEntriesPerMessage bounds the entries of one acknowledgement.
	ackEntriesPerMessage = 64
)

// ErrNotAcknowledged is wrapped by the *AckError of an acknowledged call
// that some live peer did not confirm.
var ErrNotAcknowledged = errors.New("backplane: not acknowledged by every live peer")

// AckError is the error of an acknowledged call (InvalidateAcked,
// InvalidateTagsAcked, ClearAcked) that some live peers did not confirm.
// The invalidation itself stands: it was published and still reaches
// them. It wraps ErrNotAcknowledged, and the context's error when the
// caller's context ended.
type AckError struct {
	// Peers are the peers that did not confirm, with the reason.
	Peers []PeerAck
	// Confirmed counts the peers that did.
	Confirmed int
	// Err is the context's error, when the caller's context ended first.
	Err error
}

// PeerAck names a peer that did not confirm an acknowledged call.
type PeerAck struct {
	ID string
	// Reason: "earlier release" (it cannot acknowledge), "no
	// confirmation" (within the deadline) or "went quiet" (it stopped
	// sending heartbeats during the call).
	Reason string
}

// Error names the peers and why each did not confirm.
func (e *AckError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "backplane: %d of %d live peers did not confirm:", len(e.Peers), len(e.Peers)+e.Confirmed)
	for i, p := range e.Peers {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, " %s (%s)", p.ID[:min(len(p.ID), 8)], p.Reason)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns ErrNotAcknowledged, and the context's error if any.
func (e *AckError) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrNotAcknowledged, e.Err}
	}
	return []error{ErrNotAcknowledged}
}

// Reasons of PeerAck.
const (
	reasonEarlier = "earlier release"
	reasonNoAck   = "no confirmation"
	reasonQuiet   = "went quiet"
)

// ackWaiter is one acknowledged call waiting, registered with the
// receiver (guarded by recv.mu).
type ackWaiter struct {
	seq       uint64              // the call's request: each peer must confirm it
	pending   map[SourceID]bool   // live peers that have not confirmed yet
	failed    map[SourceID]string // peers that cannot confirm, with the reason
	confirmed int
	signal    chan struct{} // capacity 1: something changed
}

func (w *ackWaiter) wake() {
	select {
	case w.signal <- struct{}{}:
	default:
	}
}

// InvalidateAcked is Invalidate that returns only once every live peer has
// evicted the keys (and applied everything this instance published before
// them): right after it returns nil, no instance serves an older value.
// Otherwise it returns an *AckError that names the peers that did not
// confirm, within ctx's deadline and at most Options.AckTimeout; the
// invalidation still stands and reaches them. A live peer is one in the
// peer table: heard from, and not yet quiet for HeartbeatTimeout (the
// monitor forgets it then); a peer that says goodbye during the call
// counts as confirmed (its cache is gone), one that goes quiet does not,
// and one first heard during the call is asked too. A peer of an earlier
// release, which cannot acknowledge, fails the call at once. In the first
// HeartbeatTimeout after Start, when the instance may not know every live
// peer yet, the call waits until it does. It needs heartbeats
// (HeartbeatInterval above 0).
//
// It costs the messages of Invalidate, plus one acknowledgement from each
// peer; concurrent calls share requests and acknowledgements.
func (c *Cache) InvalidateAcked(ctx context.Context, keys ...string) error {
	if err := c.ackUsable(); err != nil {
		return err
	}
	r, err := c.invalidate(ctx, keys, true)
	if err != nil || r == nil {
		return err
	}
	return c.awaitAcks(ctx, r.ackSeq)
}

// InvalidateTagsAcked is InvalidateTags that returns once every live peer
// has applied it, as InvalidateAcked does.
func (c *Cache) InvalidateTagsAcked(ctx context.Context, tags ...string) error {
	if err := c.ackUsable(); err != nil {
		return err
	}
	if err := c.InvalidateTags(ctx, tags...); err != nil {
		return err
	}
	return c.requestAcks(ctx)
}

// ClearAcked is Clear that returns once every live peer has emptied its
// store, as InvalidateAcked does.
func (c *Cache) ClearAcked(ctx context.Context) error {
	if err := c.ackUsable(); err != nil {
		return err
	}
	if err := c.Clear(ctx); err != nil {
		return err
	}
	return c.requestAcks(ctx)
}

func (c *Cache) ackUsable() error {
	if c.opts.HeartbeatInterval <= 0 {
		return fmt.Errorf("%w: acknowledged invalidation needs heartbeats (HeartbeatInterval above 0): they say which peers are live", ErrInvalidOption)
	}
	return nil
}

// requestAcks publishes a request and waits for every live peer's
// acknowledgement of it.
func (c *Cache) requestAcks(ctx context.Context) error {
	if err := c.life.ready(); err != nil {
		return err
	}
	r := &pubReq{op: OpInvalidate, ack: true}
	r.one[0] = ackReqKey
	r.keys = r.one[:]
	if err := c.enqueue(ctx, r); err != nil {
		return err
	}
	return c.awaitAcks(ctx, r.ackSeq)
}

// markAcks gives the acknowledged calls of a round the sequence number of
// the envelope that carries the request. Called with the token held.
func markAcks(batch []*pubReq, envs []Envelope) {
	var seq uint64
	for _, r := range batch {
		if !r.ack {
			continue
		}
		if seq == 0 {
			for _, e := range envs {
				if e.Op == OpInvalidate && slices.Contains(e.Keys, ackReqKey) {
					seq = e.Seq
				}
			}
		}
		r.ackSeq = seq
	}
}

// awaitAcks waits until every live peer has confirmed seq.
func (c *Cache) awaitAcks(ctx context.Context, seq uint64) error {
	timeout := c.opts.AckTimeout
	if timeout <= 0 {
		timeout = c.opts.heartbeatTimeout()
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	w := &ackWaiter{seq: seq, pending: map[SourceID]bool{}, failed: map[SourceID]string{}, signal: make(chan struct{}, 1)}
	// Knowing the live peers takes at most a heartbeat timeout of a link
	// that works; the wait for the link is bounded like the wait for the
	// peers.
	known := time.NewTimer(c.opts.heartbeatTimeout() + timeout)
	defer known.Stop()
	for {
		// The peer table is complete once the link has been up, and the
		// instance listening, for a heartbeat timeout (a reconnect
		// empties the table); the snapshot is taken under the same lock.
		c.recv.mu.Lock()
		l := &c.link
		wait := time.Until(l.baseline.Add(c.opts.heartbeatTimeout()))
		if !l.up || l.silent {
			wait = c.opts.HeartbeatInterval
		}
		if wait <= 0 {
			// Every peer in the table is live: the monitor forgets
			// those quiet for a heartbeat timeout (ackPeerGone).
			for id := range c.recv.peers {
				w.pending[id] = true
			}
			c.recv.waiters[w] = struct{}{}
			c.recv.mu.Unlock()
			break
		}
		c.recv.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-known.C:
			t.Stop()
			c.ctr.ackFailures.Add(1)
			return fmt.Errorf("%w: this instance's link was not up for a heartbeat timeout (%v) within %v, so it could not know its live peers",
				ErrNotAcknowledged, c.opts.heartbeatTimeout(), c.opts.heartbeatTimeout()+timeout)
		case <-ctx.Done():
			t.Stop()
			return &AckError{Err: ctx.Err()}
		}
		deadline.Reset(timeout)
	}
	defer func() {
		c.recv.mu.Lock()
		delete(c.recv.waiters, w)
		c.recv.mu.Unlock()
	}()
	retry := time.NewTicker(c.opts.HeartbeatInterval)
	defer retry.Stop()
	for {
		if done, err := c.ackProgress(w); done {
			return err
		}
		select {
		case <-w.signal:
		case <-retry.C:
			// A request or an acknowledgement may have been lost, or a
			// peer joined: ask again, once for every call waiting (the
			// answers are cumulative).
			c.pub.askDue.Store(true)
			c.pub.kickPublisher()
		case <-deadline.C:
			return c.ackFailed(w, reasonNoAck, nil)
		case <-ctx.Done():
			return c.ackFailed(w, reasonNoAck, ctx.Err())
		}
	}
}

// ackProgress updates w from the peer table and reports whether the call
// is decided, with its error.
func (c *Cache) ackProgress(w *ackWaiter) (bool, error) {
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	now := c.now()
	earlier := false
	for id := range w.pending {
		p, ok := c.recv.peers[id]
		switch {
		case !ok:
			// Forgotten without leaving (ackPeerGone notes those that
			// left or went quiet): it cannot be known to have applied.
			delete(w.pending, id)
			w.failed[id] = reasonQuiet
		case p.acked >= w.seq:
			delete(w.pending, id)
			w.confirmed++
		case !p.acks && now.Sub(p.firstSeen) > c.opts.heartbeatTimeout():
			delete(w.pending, id)
			w.failed[id] = reasonEarlier
			earlier = true
		}
	}
	if earlier {
		// An earlier release never confirms: fail at once.
		return true, c.ackErrorLocked(w, reasonNoAck, nil)
	}
	if len(w.pending) > 0 {
		return false, nil
	}
	if len(w.failed) > 0 {
		return true, c.ackErrorLocked(w, reasonNoAck, nil)
	}
	return true, nil
}

func (c *Cache) ackFailed(w *ackWaiter, reason string, err error) error {
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	return c.ackErrorLocked(w, reason, err)
}

// ackErrorLocked is the error naming w's failed peers and, with reason,
// its pending ones. Called with recv.mu held.
func (c *Cache) ackErrorLocked(w *ackWaiter, reason string, err error) error {
	e := &AckError{Confirmed: w.confirmed, Err: err}
	for id, why := range w.failed {
		e.Peers = append(e.Peers, PeerAck{ID: id.String(), Reason: why})
	}
	for id := range w.pending {
		e.Peers = append(e.Peers, PeerAck{ID: id.String(), Reason: reason})
	}
	slices.SortFunc(e.Peers, func(a, b PeerAck) int { return strings.Compare(a.ID, b.ID) })
	c.ctr.ackFailures.Add(1)
	return e
}

// ackPeerNew notes a peer heard for the first time: it is asked by the
// calls waiting, and is told that this instance can acknowledge. Called
// with recv.mu held.
func (c *Cache) ackPeerNew(id SourceID) {
	for w := range c.recv.waiters {
		w.pending[id] = true
		w.wake()
	}
	c.pub.helloDue.Store(true)
}

// ackPeerGone notes a peer that left (its cache is gone: confirmed) or
// went quiet (not confirmed). Called with recv.mu held.
func (c *Cache) ackPeerGone(id SourceID, left bool) {
	for w := range c.recv.waiters {
		if !w.pending[id] {
			continue
		}
		delete(w.pending, id)
		if left {
			w.confirmed++
		} else {
			w.failed[id] = reasonQuiet
		}
		w.wake()
	}
	delete(c.recv.ackWanted, id)
}

// ackKeys inspects the keys of a peer's invalidate message: an
// acknowledgement (applied here, nothing to evict), or a request (keys
// without the marker are evicted, and the peer is answered). Called with
// recv.mu held; p is the peer's entry (nil beyond MaxPeers).
func (c *Cache) ackKeys(src SourceID, p *peer, keys []string) (evict []string, isAck bool) {
	if len(keys) == 0 || len(keys[0]) == 0 {
		return keys, false
	}
	if keys[0] == ackKey {
		if p != nil {
			p.acks = true
			if seq, ok := ackFor(keys[1:], c.id); ok && seq > p.acked {
				p.acked = seq
			}
			for w := range c.recv.waiters {
				w.wake()
			}
		}
		c.ctr.acksReceived.Add(1)
		return nil, true
	}
	i := slices.Index(keys, ackReqKey)
	if i < 0 {
		return keys, false
	}
	if p != nil && len(c.recv.ackWanted) < c.opts.MaxPeers {
		c.recv.ackWanted[src] = struct{}{}
		c.pub.ackDue.Store(true)
		c.pub.kickPublisher()
	}
	return slices.Delete(slices.Clone(keys), i, i+1), false
}

// ackFor returns the sequence number that entries acknowledge for id.
func ackFor(entries []string, id SourceID) (uint64, bool) {
	want := ackEntryPrefix + id.String() + ":"
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e, want); ok {
			seq, err := strconv.ParseUint(rest, 10, 64)
			return seq, err == nil
		}
	}
	return 0, false
}

// ackEnvelopes builds the acknowledgements due: for each peer that asked,
// the highest of its sequence numbers applied in order. hello adds an
// acknowledgement for nobody when none is due. Called with the token held;
// it takes recv.mu.
func (c *Cache) ackEnvelopes(hello bool) []Envelope {
	c.recv.mu.Lock()
	entries := make([]string, 0, len(c.recv.ackWanted))
	for id := range c.recv.ackWanted {
		p, ok := c.recv.peers[id]
		if !ok {
			continue
		}
		applied := p.highest
		if len(p.missing) > 0 {
			applied = p.missing[0].seq - 1
		}
		entries = append(entries, ackEntryPrefix+id.String()+":"+strconv.FormatUint(applied, 10))
	}
	clear(c.recv.ackWanted)
	c.recv.mu.Unlock()
	if len(entries) == 0 && !hello {
		return nil
	}
	var envs []Envelope
	now := c.now()
	for len(entries) > 0 || envs == nil {
		n := min(len(entries), ackEntriesPerMessage)
		c.pub.seq++
		envs = append(envs, Envelope{Op: OpInvalidate, Source: c.id, Seq: c.pub.seq, Sent: now,
			Keys: append([]string{ackKey}, entries[:n]...)})
		entries = entries[n:]
	}
	c.ctr.acksSent.Add(uint64(len(envs)))
	return envs
}

// publishAsk sends a request for acknowledgements on behalf of every call
// waiting. Called by publishLoop.
func (c *Cache) publishAsk() {
	p := &c.pub
	p.token <- struct{}{}
	p.slots <- struct{}{}
	p.seq++
	_ = c.round(nil, nil, []Envelope{{Op: OpInvalidate, Source: c.id, Seq: p.seq, Sent: c.now(), Keys: []string{ackReqKey}}})
}

// publishAcks sends the acknowledgements due, and the hello when asked.
// Called by publishLoop.
func (c *Cache) publishAcks(hello bool) {
	p := &c.pub
	p.token <- struct{}{}
	envs := c.ackEnvelopes(hello)
	if len(envs) == 0 {
		<-p.token
		return
	}
	p.slots <- struct{}{}
	_ = c.round(nil, nil, envs)
}
