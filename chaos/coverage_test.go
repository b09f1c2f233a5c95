package chaos_test

import (
	"testing"
	"time"
)

// A lost message counts as covered by a flush of the receiver soon enough
// after its publish, or by the receiver not caching when it was published:
// from a flush for a lost link until the flush for its return, whatever
// other flushes came between.
func TestCoveredBy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	pub := pubTimes{start: at(100), end: at(110)}
	bound := 50 * time.Millisecond
	flush := func(ms int, cause string) flushEvent { return flushEvent{at: at(ms), cause: cause} }
	cases := []struct {
		name string
		fs   []flushEvent
		want bool
	}{
		{"no flush", nil, false},
		{"flush within the bound", []flushEvent{flush(150, "gap")}, true},
		{"flush too late", []flushEvent{flush(200, "gap")}, false},
		{"link lost before", []flushEvent{flush(50, "disconnect")}, true},
		{"link lost, then peers lost", []flushEvent{flush(40, "disconnect"), flush(60, "peer-lost")}, true},
		{"link back before", []flushEvent{flush(40, "disconnect"), flush(60, "reconnect")}, false},
		{"silent before", []flushEvent{flush(40, "silence")}, true},
		{"silence over before", []flushEvent{flush(40, "silence"), flush(60, "resumed")}, false},
		{"unrelated flush before", []flushEvent{flush(40, "gap")}, false},
	}
	for _, c := range cases {
		if got := coveredBy(c.fs, pub, bound); got != c.want {
			t.Errorf("%s: covered = %v; want %v", c.name, got, c.want)
		}
	}
}
