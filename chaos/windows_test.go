package chaos_test

import (
	"fmt"
	"sort"
	"time"
)

// sampleEvery is the period of the window sampler: the resolution of the
// hit-ratio and origin-load figures, and of the suspension times.
const sampleEvery = 10 * time.Millisecond

// ratioWindow is the window over which a hit ratio is taken.
const ratioWindow = 100 * time.Millisecond

// sample is every instance's counters at one moment: the sum (counts),
// and each instance's (per).
type sample struct {
	at time.Time
	counts
	per []counts
}

type counts struct{ hits, misses, loads uint64 }

// sampleWindows records the instances' counters every sampleEvery while
// the load runs, and the instances' suspensions as they begin and end.
func (r *run) sampleWindows() {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	suspended := make([]bool, len(r.insts))
	for {
		s := sample{at: time.Now(), per: make([]counts, len(r.insts))}
		for i, in := range r.insts {
			st := in.cache.Stats()
			s.per[i] = counts{st.Hits, st.Misses, st.Loads}
			s.hits += st.Hits
			s.misses += st.Misses
			s.loads += st.Loads
			if h := in.cache.Health(); h.Suspended != suspended[i] {
				suspended[i] = h.Suspended
				state := "serve"
				if h.Suspended {
					state = "suspend"
				}
				r.mu.Lock()
				in.states = append(in.states, flushEvent{at: s.at, cause: state})
				r.mu.Unlock()
			}
		}
		r.mu.Lock()
		if n := len(r.samples); n > 0 {
			if gap := s.at.Sub(r.samples[n-1].at); gap > r.stall.gap {
				r.stall = stall{gap: gap, end: s.at}
			}
		}
		r.samples = append(r.samples, s)
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// stall is the longest time the window sampler did not get to run: how
// long the test process (engine, transports, monitors) was held up by the
// machine at worst. A stall longer than the bound's slack can make reads
// look stale that no working engine could have kept fresh: its monitor did
// not run either.
type stall struct {
	gap time.Duration
	end time.Time
}

// series are the samples of one scenario, in time order.
type series []sample

// at returns the last sample taken at or before t (the first sample if
// none was).
func (s series) at(t time.Time) sample {
	i := sort.Search(len(s), func(i int) bool { return s[i].at.After(t) })
	if i == 0 {
		return s[0]
	}
	return s[i-1]
}

// delta returns the growth of the counters of instance i (-1: the sum)
// from a to b.
func (s series) delta(i int, a, b time.Time) counts {
	x, y := s.at(a).of(i), s.at(b).of(i)
	return counts{hits: y.hits - x.hits, misses: y.misses - x.misses, loads: y.loads - x.loads}
}

func (s sample) of(i int) counts {
	if i < 0 {
		return s.counts
	}
	return s.per[i]
}

// hitRatio is hits / (hits + misses) of instance i (-1: all) from a to b;
// ok is false without reads.
func (s series) hitRatio(i int, a, b time.Time) (ratio float64, ok bool) {
	d := s.delta(i, a, b)
	if d.hits+d.misses == 0 {
		return 0, false
	}
	return float64(d.hits) / float64(d.hits+d.misses), true
}

// recovery returns how long after end the hit ratio of instance i over a
// ratioWindow starting there (in steps of sampleEvery) first reached
// target; ok is false when no window that ends by until did.
func (s series) recovery(i int, end, until time.Time, target float64) (time.Duration, bool) {
	for off := time.Duration(0); !end.Add(off + ratioWindow).After(until); off += sampleEvery {
		if r, ok := s.hitRatio(i, end.Add(off), end.Add(off+ratioWindow)); ok && r >= target {
			return off, true
		}
	}
	return 0, false
}

// windows are a scenario's figures over its fault window and the window
// after it.
type windows struct {
	fault, after       time.Duration // lengths
	loadsFault         uint64        // origin loads during the fault
	loadsAfter         uint64        // origin loads in the window after
	ratioFault         float64       // hit ratio during the fault
	ratioOK            bool
	recoveryBase       float64 // the hit ratio recovery aims at 90% of
	recovered          time.Duration
	recoveredOK, aimed bool
}

func (r *run) windows(faultStart, faultEnd, loadEnd time.Time, base *windows) windows {
	r.mu.Lock()
	s := series(append([]sample(nil), r.samples...))
	r.mu.Unlock()
	w := windows{fault: faultEnd.Sub(faultStart), after: loadEnd.Sub(faultEnd)}
	if len(s) == 0 {
		return w
	}
	w.loadsFault = s.delta(-1, faultStart, faultEnd).loads
	w.loadsAfter = s.delta(-1, faultEnd, loadEnd).loads
	w.ratioFault, w.ratioOK = s.hitRatio(-1, faultStart, faultEnd)
	target := base
	if target == nil { // the baseline scenario: its own ratio
		target = &w
	}
	if !target.ratioOK {
		return w
	}
	// The slowest instance decides.
	w.recoveryBase, w.aimed, w.recoveredOK = target.ratioFault, true, true
	for i := range s[0].per {
		d, ok := s.recovery(i, faultEnd, loadEnd, 0.9*target.ratioFault)
		w.recovered = max(w.recovered, d)
		w.recoveredOK = w.recoveredOK && ok
	}
	return w
}

// loadsVs renders loads over d against the baseline's over bd: the count,
// and its rate as a multiple of the baseline's rate.
func loadsVs(n uint64, d time.Duration, bn uint64, bd time.Duration) string {
	if bn == 0 || bd <= 0 || d <= 0 {
		return fmt.Sprintf("%d", n)
	}
	x := (float64(n) / d.Seconds()) / (float64(bn) / bd.Seconds())
	return fmt.Sprintf("%d (×%.2f)", n, x)
}

func (w windows) recoveryString() string {
	switch {
	case !w.aimed:
		return "-"
	case !w.recoveredOK:
		return fmt.Sprintf("> %v", (w.after - ratioWindow).Round(time.Millisecond))
	default:
		return w.recovered.String()
	}
}
