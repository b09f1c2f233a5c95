package core

import (
	"testing"
	"time"
)

// The sequence tracking of one peer: which arrivals leave messages
// missing, which fill them in, and which count as a gap.
func TestPeerSequence(t *testing.T) {
	type step struct {
		seq       uint64
		heartbeat bool // announced rather than arrived
		gap       bool // reported as lost
		missing   int  // messages left waiting for
	}
	window := time.Second
	type tc struct {
		name   string
		window time.Duration
		steps  []step
		// total is what all peers may still wait for (0: no limit
		// beyond the peer's); authentic: the numbers are signed.
		total     int
		authentic bool
	}
	budget := func(c tc, p *peer) int {
		if c.total == 0 {
			return maxMissing
		}
		return c.total - len(p.missing)
	}
	cases := []tc{
		{"in order", window, []step{{seq: 2}, {seq: 3}, {seq: 4}}, 0, false},
		{"duplicate", window, []step{{seq: 2}, {seq: 2}, {seq: 1}}, 0, false},
		{"overtaken then filled", window, []step{{seq: 3, missing: 1}, {seq: 2}}, 0, false},
		{"two overtaken, filled in reverse", window, []step{{seq: 4, missing: 2}, {seq: 3, missing: 1}, {seq: 2}}, 0, false},
		{"filled partly", window, []step{{seq: 4, missing: 2}, {seq: 2, missing: 1}, {seq: 5, missing: 1}, {seq: 3}}, 0, false},
		{"heartbeat ahead of a message in flight", window, []step{{seq: 2, heartbeat: true, missing: 1}, {seq: 2}}, 0, false},
		{"heartbeat behind", window, []step{{seq: 2}, {seq: 3}, {seq: 2, heartbeat: true}, {seq: 3, heartbeat: true}}, 0, false},
		{"too many missing", window, []step{{seq: 1 + maxMissing + 2, gap: true}, {seq: 2}}, 0, false},
		{"as many missing as may be", window, []step{{seq: 1 + maxMissing + 1, missing: maxMissing}}, 0, false},
		{"too many missing, in two steps", window, []step{{seq: 1 + maxMissing, missing: maxMissing - 1}, {seq: 1 + maxMissing + 3, gap: true}}, 0, false},
		{"heartbeat far ahead", window, []step{{seq: 1 + maxMissing + 1, heartbeat: true, gap: true}}, 0, false},
		{"no window: overtaken is lost", 0, []step{{seq: 3, gap: true}, {seq: 2}, {seq: 4}}, 0, false},
		{"no window: lost tail", 0, []step{{seq: 2}, {seq: 3, heartbeat: true, gap: true}, {seq: 3}}, 0, false},
		{"beyond what all peers may wait for", window, []step{{seq: 4, missing: 2}, {seq: 7, gap: true}, {seq: 8}}, 3, false},
		{"forged number far ahead, then the real ones", 0, []step{
			{seq: 1 << 62, heartbeat: true, gap: true},
			{seq: 2},            // far below: may be a late message
			{seq: 3, gap: true}, // far below again: the numbering restarts here
			{seq: 5, gap: true}, // and a real loss is seen at once
		}, 0, false},
		{"forged number just ahead hides no more than maxMissing", 0, []step{
			{seq: 1 + maxMissing, heartbeat: true, gap: true},
			{seq: 2}, {seq: 3},
		}, 0, false},
		{"authentic numbers far below are old messages", 0, []step{
			{seq: 1 << 20, gap: true}, {seq: 2}, {seq: 3}, {seq: 1<<20 + 1},
		}, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &peer{highest: 1}
			now := time.Unix(1000, 0)
			for i, s := range c.steps {
				now = now.Add(time.Millisecond)
				var gap bool
				sq := seqs{now: now, window: c.window, budget: min(maxMissing-len(p.missing), budget(c, p)), authentic: c.authentic}
				if s.heartbeat {
					gap = p.announced(s.seq, sq)
				} else {
					gap = p.arrived(s.seq, sq)
				}
				if gap != s.gap || len(p.missing) != s.missing {
					t.Fatalf("step %d (%+v): gap %v, %d missing", i, s, gap, len(p.missing))
				}
			}
		})
	}
}

// The wait is measured from when the longest-missing message was first
// missed; giving up ends it.
func TestPeerWaitingSince(t *testing.T) {
	p := &peer{highest: 1}
	t0 := time.Unix(1000, 0)
	at := func(now time.Time) seqs {
		return seqs{now: now, window: time.Second, budget: maxMissing - len(p.missing)}
	}
	p.arrived(3, at(t0)) // 2 missing since t0
	t1 := t0.Add(time.Millisecond)
	p.arrived(5, at(t1)) // 4 missing since t1
	if got := p.waitingSince(); !got.Equal(t0) {
		t.Fatalf("waiting since %v; want %v", got, t0)
	}
	p.arrived(2, at(t1))
	if got := p.waitingSince(); !got.Equal(t1) {
		t.Fatalf("after 2 arrived: waiting since %v; want %v (for 4)", got, t1)
	}
	p.giveUp()
	if !p.waitingSince().IsZero() || p.highest != 5 {
		t.Fatalf("after giving up: %+v", *p)
	}
	if p.arrived(4, at(t1)) {
		t.Fatal("a message given up for lost arriving late is a gap")
	}
}
