// peers.go: what the receiver knows of one peer (peer): the highest
// sequence number it used and the messages still missing below it, waited
// for during the reorder window.

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
	lastCanary time.Time
	canaryLag  time.Duration
}

// missingSeq is a sequence number waited for since a later one was seen.
type missingSeq struct {
	seq   uint64
	since time.Time
}

// maxMissing bounds the messages of a peer that may be waited for at once;
// beyond it they count as lost at once.
const maxMissing = 1024

// arrived records the arrival of message seq. It reports whether messages
// were given up as lost: at once without a reorder window, or when too
// many are missing.
func (p *peer) arrived(seq uint64, now time.Time, window time.Duration) bool {
	if seq <= p.highest {
		// An overtaken message, or a duplicate, or a message given up
		// for lost: evicting again is harmless.
		if i := slices.IndexFunc(p.missing, func(m missingSeq) bool { return m.seq == seq }); i >= 0 {
			p.missing = slices.Delete(p.missing, i, i+1)
		}
		return false
	}
	gap := p.announced(seq-1, now, window)
	p.highest = seq
	return gap
}

// announced records that the peer has used every sequence number up to seq
// (a heartbeat or a goodbye says so), and reports like arrived.
func (p *peer) announced(seq uint64, now time.Time, window time.Duration) bool {
	if seq <= p.highest {
		return false
	}
	from := p.highest + 1
	p.highest = seq
	if window <= 0 || seq-from >= uint64(maxMissing-len(p.missing)) {
		p.giveUp()
		return true
	}
	for n := from; n <= seq; n++ {
		p.missing = append(p.missing, missingSeq{seq: n, since: now})
	}
	return false
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
