// health.go: Stats and Health, the instance's counters and its state for
// readiness probes and operators.

package core

import (
	"slices"
	"strings"
	"time"
)

// Stats returns the instance's counters.
func (c *Cache) Stats() Stats { return c.ctr.snapshot() }

// Health is a snapshot for readiness probes and operators.
type Health struct {
	// Started is true between a successful Start and Close.
	Started bool
	// Connected is the transport's last reported state.
	Connected bool
	// Silent is true when the instance's own heartbeats stopped coming back
	// within HeartbeatTimeout.
	Silent bool
	// Degraded is true while the engine does not cache (OnDisconnect=flush
	// and the link is down or silent, or Suspended). Reads are still
	// served by loaders.
	Degraded bool
	// Suspended is true, over a Durable transport, while the store is kept
	// but not served: the link is down or silent, or delivery has resumed
	// and not yet caught up.
	Suspended bool
	// LastReceived is when the last message (own or peer) arrived.
	LastReceived time.Time
	// LastPeerMessage is when the last message of another instance arrived.
	LastPeerMessage time.Time
	// LastFlush and LastFlushCause describe the last wipe of the local
	// store: a safety flush (its cause: "disconnect", "silence",
	// "reconnect", "resumed", "gap", "loss", "peer-lost"), a Clear
	// ("clear") or a peer's Clear ("remote-clear").
	LastFlush      time.Time
	LastFlushCause string
	// Rejecting is true when the instance dropped an envelope it could not
	// decode (another format version, or damaged) or verify, or one under
	// its own ID that it did not send,
	// within the last HeartbeatTimeout (3 seconds without heartbeats): a
	// peer with another signing key or another format version, or a
	// forgery. Such a peer's invalidations do not reach this instance,
	// and neither instance may know that the other exists. RejectCause
	// describes the last one; Rejected counts them all (Stats.Rejected,
	// and Stats.DecodeErrors, which also counts payloads that are no
	// envelope at all: those leave Rejecting false).
	Rejecting   bool
	RejectCause string
	Rejected    uint64
	// Split, when not empty, says that the transport sees instances of the
	// namespace on another of its modes, which this instance does not read
	// (see Splitter): their invalidations do not reach it, nor its theirs.
	// A fleet moves between modes through a transition (transports.Dual).
	Split string
	// Peers is the number of other instances heard from recently.
	Peers int
	// PendingPublishes counts Invalidate and Clear calls not yet answered.
	PendingPublishes int
	// SyncBroken is true, with the canary probe on, when the instance's
	// own canary or a live peer's canary is overdue: invalidations are not
	// getting through although the link may look fine.
	SyncBroken bool
	// PeerStatus describes each peer heard from recently.
	PeerStatus []PeerStatus
}

// PeerStatus is what an instance knows of one peer.
type PeerStatus struct {
	ID       string
	LastSeen time.Time
	// LastCanary and CanaryLag describe the peer's last canary (zero when
	// none arrived); CanaryLag compares the two hosts' clocks.
	LastCanary time.Time
	CanaryLag  time.Duration
	// InSync is false when the peer is alive (heartbeats arrive) but its
	// canary is overdue.
	InSync bool
}

// Healthy reports whether invalidation is flowing: started, connected, not
// silent, not rejecting messages, not split from part of the fleet and,
// with the canary probe on, in sync.
func (h Health) Healthy() bool {
	return h.Started && h.Connected && !h.Silent && !h.SyncBroken && !h.Rejecting && h.Split == ""
}

// rejectWindow is how long a rejected message makes Health.Rejecting true.
func (o *Options) rejectWindow() time.Duration {
	if o.HeartbeatInterval > 0 {
		return o.heartbeatTimeout()
	}
	return 3 * time.Second
}

// Health returns the instance's current health.
func (c *Cache) Health() Health {
	c.life.mu.RLock()
	started := c.life.started && !c.life.closed
	c.life.mu.RUnlock()
	c.recv.mu.Lock()
	defer c.recv.mu.Unlock()
	now := c.now()
	canary := c.opts.CanaryInterval > 0 && started
	timeout := c.opts.canaryTimeout()
	broken := false
	var peers []PeerStatus
	for id, p := range c.recv.peers {
		st := PeerStatus{ID: id.String(), LastSeen: p.lastSeen, LastCanary: p.lastCanary, CanaryLag: p.canaryLag, InSync: true}
		// A peer that sends canaries at all must keep sending them.
		if canary && !p.lastCanary.IsZero() && now.Sub(p.lastCanary) > timeout {
			st.InSync, broken = false, true
		}
		peers = append(peers, st)
	}
	slices.SortFunc(peers, func(a, b PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	if canary {
		last := c.link.selfCanary
		if last.Before(c.link.canarySince) {
			last = c.link.canarySince
		}
		if now.Sub(last) > timeout {
			broken = true
		}
	}
	c.fills.flushMu.Lock()
	lastFlush, lastCause := c.fills.lastFlush, c.fills.lastCause
	c.fills.flushMu.Unlock()
	st := c.ctr.snapshot()
	split := ""
	if sp, ok := c.bp.(Splitter); ok && started {
		split = sp.Split()
	}
	return Health{
		Split:            split,
		Rejecting:        !c.recv.lastReject.IsZero() && now.Sub(c.recv.lastReject) <= c.opts.rejectWindow(),
		RejectCause:      c.recv.rejectCause,
		Rejected:         st.Rejected + st.DecodeErrors,
		SyncBroken:       broken,
		PeerStatus:       peers,
		Started:          started,
		Connected:        c.link.up,
		Silent:           c.link.silent,
		Degraded:         c.fills.degraded.Load(),
		Suspended:        c.fills.suspended.Load(),
		LastReceived:     c.link.lastRecv,
		LastPeerMessage:  c.recv.lastHeard,
		LastFlush:        lastFlush,
		LastFlushCause:   lastCause,
		Peers:            len(c.recv.peers),
		PendingPublishes: int(c.pub.pending.Load()),
	}
}
