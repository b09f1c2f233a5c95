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
	cases := []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"in order", window, []step{{seq: 2}, {seq: 3}, {seq: 4}}},
		{"duplicate", window, []step{{seq: 2}, {seq: 2}, {seq: 1}}},
		{"overtaken then filled", window, []step{{seq: 3, missing: 1}, {seq: 2}}},
		{"two overtaken, filled in reverse", window, []step{{seq: 4, missing: 2}, {seq: 3, missing: 1}, {seq: 2}}},
		{"filled partly", window, []step{{seq: 4, missing: 2}, {seq: 2, missing: 1}, {seq: 5, missing: 1}, {seq: 3}}},
		{"heartbeat ahead of a message in flight", window, []step{{seq: 2, heartbeat: true, missing: 1}, {seq: 2}}},
		{"heartbeat behind", window, []step{{seq: 2}, {seq: 3}, {seq: 2, heartbeat: true}, {seq: 3, heartbeat: true}}},
		{"too many missing", window, []step{{seq: 1 + maxMissing + 2, gap: true}, {seq: 2}}},
		{"as many missing as may be", window, []step{{seq: 1 + maxMissing + 1, missing: maxMissing}}},
		{"too many missing, in two steps", window, []step{{seq: 1 + maxMissing, missing: maxMissing - 1}, {seq: 1 + maxMissing + 3, gap: true}}},
		{"heartbeat far ahead", window, []step{{seq: 1 + maxMissing + 1, heartbeat: true, gap: true}}},
		{"no window: overtaken is lost", 0, []step{{seq: 3, gap: true}, {seq: 2}, {seq: 4}}},
		{"no window: lost tail", 0, []step{{seq: 2}, {seq: 3, heartbeat: true, gap: true}, {seq: 3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &peer{highest: 1}
			now := time.Unix(1000, 0)
			for i, s := range c.steps {
				now = now.Add(time.Millisecond)
				var gap bool
				if s.heartbeat {
					gap = p.announced(s.seq, now, c.window)
				} else {
					gap = p.arrived(s.seq, now, c.window)
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
	p.arrived(3, t0, time.Second) // 2 missing since t0
	t1 := t0.Add(time.Millisecond)
	p.arrived(5, t1, time.Second) // 4 missing since t1
	if got := p.waitingSince(); !got.Equal(t0) {
		t.Fatalf("waiting since %v; want %v", got, t0)
	}
	p.arrived(2, t1, time.Second)
	if got := p.waitingSince(); !got.Equal(t1) {
		t.Fatalf("after 2 arrived: waiting since %v; want %v (for 4)", got, t1)
	}
	p.giveUp()
	if !p.waitingSince().IsZero() || p.highest != 5 {
		t.Fatalf("after giving up: %+v", *p)
	}
	if p.arrived(4, t1, time.Second) {
		t.Fatal("a message given up for lost arriving late is a gap")
	}
}
