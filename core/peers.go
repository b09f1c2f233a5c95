// peers.go: what the receiver knows of one peer (peer): the highest
// sequence number it used, the messages still missing below it (waited for
// during the reorder window, within a budget), and, with signing, the
// newest publish time seen, which tells a replay from a new message.

package core

import (
	"slices"
	"time"
)

// peer is one entry of the receiver's peer table, guarded by recv.mu.
type peer struct {
	// highest is the highest sequence number the peer is known to have
	// used, by a message of it or by its heartbeat.
	highest uint64
	// missing are the numbers up to highest whose messages have not
	// arrived yet, oldest first, while they may still arrive (a reorder
	// window); empty otherwise.
	missing    []missingSeq
	lastSeen   time.Time
	lastSent   time.Time // the newest publish time of its messages
	below      int       // messages in a row far below highest (see broken)
	lastCanary time.Time
	canaryLag  time.Duration
	// For acknowledged invalidation (acks.go): when the peer was first
	// heard, whether it acknowledges (it sent an acknowledgement or a
	// hello), and the highest of this instance's numbers it confirmed.
	firstSeen time.Time
	acks      bool
	acked     uint64
}

// missingSeq is a sequence number waited for since a later one was seen.
type missingSeq struct {
	seq   uint64
	since time.Time
}

// maxMissing bounds the messages of a peer that may be waited for at once;
// beyond it they count as lost at once. It is also how far below the
// highest number a message of an unverified peer may be before the
// numbers count as broken (see arrived).
const maxMissing = 1024

// seqs is a peer's numbering as the receiver applies it: the reorder
// window, how many more numbers may be waited for (budget, at most
// maxMissing less those already missing), and whether the numbers are
// authentic (signed and verified), which an outsider cannot push out of
// reach.
type seqs struct {
	now       time.Time
	window    time.Duration
	budget    int
	authentic bool
}

// arrived records the arrival of message seq. It reports whether messages
// were given up as lost: at once without a reorder window, or beyond the
// budget, or when the numbers are broken.
func (p *peer) arrived(seq uint64, s seqs) bool {
	if seq >= p.highest || p.highest-seq <= maxMissing {
		p.below = 0
	}
	if seq <= p.highest {
		if i := slices.IndexFunc(p.missing, func(m missingSeq) bool { return m.seq == seq }); i >= 0 {
			p.missing = slices.Delete(p.missing, i, i+1)
			return false
		}
		// An overtaken message given up for lost, a duplicate, or a
		// message far below what an unverified message announced: its
		// keys are evicted again, which is harmless.
		return p.broken(seq, s)
	}
	gap := p.announced(seq-1, s)
	p.highest = seq
	return gap
}

// announced records that the peer has used every sequence number up to seq
// (a heartbeat or a goodbye says so), and reports like arrived.
func (p *peer) announced(seq uint64, s seqs) bool {
	if seq >= p.highest || p.highest-seq <= maxMissing {
		p.below = 0
	}
	if seq <= p.highest {
		return p.broken(seq, s)
	}
	from := p.highest + 1
	p.highest = seq
	if s.window <= 0 || seq-from >= uint64(s.budget) {
		p.giveUp()
		return true
	}
	for n := from; n <= seq; n++ {
		p.missing = append(p.missing, missingSeq{seq: n, since: s.now})
	}
	return false
}

// broken reports, and repairs, a peer's numbering that messages far below
// its highest number show to be wrong: an unverified message (a forgery)
// announced a number the peer never used. One such message may be a late
// one, overtaken by many (its keys are evicted, which is harmless); when
// the next message of the peer is far below too, the numbering restarts
// from it and the messages in between count as lost, so that later losses
// are detected again at once. Authentic numbers cannot be wrong this way:
// a message far below them is an old one.
func (p *peer) broken(seq uint64, s seqs) bool {
	if s.authentic || p.highest-seq <= maxMissing {
		return false
	}
	if p.below++; p.below < 2 {
		return false
	}
	p.highest, p.below = seq, 0
	p.giveUp()
	return true
}

// waitingSince is when the longest-missing message was first missed; zero
// when none is missing.
func (p *peer) waitingSince() time.Time {
	if len(p.missing) == 0 {
		return time.Time{}
	}
	return p.missing[0].since
}

// giveUp counts every missing message as lost.
func (p *peer) giveUp() { p.missing = p.missing[:0] }

// replay reports whether an authentic message of the peer is a copy of one
// already applied: not newer than the newest one seen, and not one still
// missing. Applying it again could only evict or flush for nothing.
func (p *peer) replay(seq uint64, sent time.Time) bool {
	if seq > p.highest || sent.After(p.lastSent) {
		return false
	}
	return !slices.ContainsFunc(p.missing, func(m missingSeq) bool { return m.seq == seq })
}
