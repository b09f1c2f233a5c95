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
		missing   bool // left waiting for an overtaken message
	}
	window := time.Second
	cases := []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"in order", window, []step{{seq: 2}, {seq: 3}, {seq: 4}}},
		{"duplicate", window, []step{{seq: 2}, {seq: 2}, {seq: 1}}},
		{"overtaken then filled", window, []step{{seq: 3, missing: true}, {seq: 2}}},
		{"two overtaken, filled in reverse", window, []step{{seq: 4, missing: true}, {seq: 3, missing: true}, {seq: 2}}},
		{"filled partly", window, []step{{seq: 4, missing: true}, {seq: 2, missing: true}, {seq: 3}, {seq: 5}}},
		{"heartbeat ahead of a message in flight", window, []step{{seq: 2, heartbeat: true, missing: true}, {seq: 2}}},
		{"heartbeat behind", window, []step{{seq: 2}, {seq: 3}, {seq: 2, heartbeat: true}, {seq: 3, heartbeat: true}}},
		{"too far ahead", window, []step{{seq: 1 + reorderSpan + 1, gap: true}, {seq: 2}}},
		{"at the edge of the span", window, []step{{seq: 1 + reorderSpan, missing: true}}},
		{"heartbeat too far ahead", window, []step{{seq: 1 + reorderSpan + 1, heartbeat: true, gap: true}}},
		{"no window: overtaken is lost", 0, []step{{seq: 3, gap: true}, {seq: 2}, {seq: 4}}},
		{"no window: lost tail", 0, []step{{seq: 2}, {seq: 3, heartbeat: true, gap: true}, {seq: 3}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := &peer{lastSeq: 1, highest: 1}
			now := time.Unix(1000, 0)
			for i, s := range c.steps {
				now = now.Add(time.Millisecond)
				var gap bool
				if s.heartbeat {
					gap = p.announced(s.seq, now, c.window)
				} else {
					gap = p.arrived(s.seq, now, c.window)
				}
				if gap != s.gap || p.missingSince.IsZero() == s.missing {
					t.Fatalf("step %d (%+v): gap %v, missing %v; state %+v", i, s, gap, !p.missingSince.IsZero(), *p)
				}
			}
		})
	}
}

// The wait for an overtaken message restarts when the messages before it
// arrive, and giving up ends it.
func TestPeerMissingSince(t *testing.T) {
	p := &peer{lastSeq: 1, highest: 1}
	t0 := time.Unix(1000, 0)
	p.arrived(4, t0, time.Second) // 2 and 3 missing
	if !p.missingSince.Equal(t0) {
		t.Fatalf("missingSince %v; want %v", p.missingSince, t0)
	}
	p.arrived(5, t0.Add(time.Millisecond), time.Second) // nothing new in sequence
	if !p.missingSince.Equal(t0) {
		t.Fatalf("missingSince moved to %v without progress", p.missingSince)
	}
	t1 := t0.Add(2 * time.Millisecond)
	p.arrived(2, t1, time.Second) // 3 still missing: wait for it afresh
	if !p.missingSince.Equal(t1) || p.lastSeq != 2 {
		t.Fatalf("after 2: missingSince %v, lastSeq %d; want %v, 2", p.missingSince, p.lastSeq, t1)
	}
	p.giveUp()
	if !p.missingSince.IsZero() || p.lastSeq != 5 || p.early != 0 {
		t.Fatalf("after giving up: %+v", *p)
	}
	if p.arrived(3, t1, time.Second) {
		t.Fatal("a message given up for lost arriving late is a gap")
	}
}
