package chaos_test

import (
	"testing"
	"time"
)

// A lost message counts as covered by a flush of the receiver soon enough
// after its publish, or by the receiver not caching when it was published:
// from a flush for a lost link until the flush for its return, whatever
// other flushes came between; or by a suspension from before the bound
// that ended with a flush.
func TestCoveredBy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pub := pubTimes{start: at(100), end: at(110)}
	bound := 50 * time.Millisecond
	flush := func(ms int, cause string) flushEvent { return flushEvent{at: at(ms), cause: cause} }
	state := func(ms int, s string) flushEvent { return flushEvent{at: at(ms), cause: s} }
	cases := []struct {
		name   string
		fs     []flushEvent
		states []flushEvent
		want   bool
	}{
		{"no flush", nil, nil, false},
		{"flush within the bound", []flushEvent{flush(150, "gap")}, nil, true},
		{"flush too late", []flushEvent{flush(200, "gap")}, nil, false},
		{"link lost before", []flushEvent{flush(50, "disconnect")}, nil, true},
		{"link lost, then peers lost", []flushEvent{flush(40, "disconnect"), flush(60, "peer-lost")}, nil, true},
		{"link back before", []flushEvent{flush(40, "disconnect"), flush(60, "reconnect")}, nil, false},
		{"silent before", []flushEvent{flush(40, "silence")}, nil, true},
		{"silence over before", []flushEvent{flush(40, "silence"), flush(60, "resumed")}, nil, false},
		{"unrelated flush before", []flushEvent{flush(40, "gap")}, nil, false},
		{"suspended, served again without a flush", nil, []flushEvent{state(50, "suspend"), state(300, "serve")}, false},
		{"suspended, flushed before serving", []flushEvent{flush(290, "reconnect")}, []flushEvent{state(50, "suspend"), state(300, "serve")}, true},
		{"suspended, flushed after serving", []flushEvent{flush(400, "gap")}, []flushEvent{state(50, "suspend"), state(300, "serve")}, false},
		{"suspended, not served yet, flushed", []flushEvent{flush(400, "reconnect")}, []flushEvent{state(50, "suspend")}, true},
		{"served again before the publish", nil, []flushEvent{state(50, "suspend"), state(80, "serve")}, false},
		{"suspended within the bound, flushed before serving", []flushEvent{flush(900, "reconnect")}, []flushEvent{state(150, "suspend"), state(910, "serve")}, true},
		{"suspended within the bound, served without a flush", []flushEvent{flush(950, "gap")}, []flushEvent{state(150, "suspend"), state(910, "serve")}, false},
		{"suspended after the bound", []flushEvent{flush(900, "reconnect")}, []flushEvent{state(170, "suspend"), state(910, "serve")}, false},
	}
	for _, c := range cases {
		if got := coveredBy(c.fs, c.states, pub, bound); got != c.want {
			t.Errorf("%s: covered = %v; want %v", c.name, got, c.want)
		}
	}
}
