package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/backplane-go/backplane/core"
)

// tap is a Backplane that hands every received payload to the engine's
// handler first and then to observe, with the time the engine finished
// with it (the eviction is done by then).
type tap struct {
	core.Backplane
	observe func(p []byte, handled time.Time)
}

func (t *tap) Subscribe(ctx context.Context, h core.Handler) error {
	return t.Backplane.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			h.HandleMessage(p)
			t.observe(p, time.Now())
		},
		Event: h.HandleEvent,
	})
}

// senderTap is a tap over a transport that is a core.Sender, so that the
// engine publishes through it as it would without the tap.
type senderTap struct {
	*tap
	core.Sender
}

// newTap wraps bp, keeping it a core.Sender when it is one.
func newTap(bp core.Backplane, observe func(p []byte, handled time.Time)) core.Backplane {
	t := &tap{Backplane: bp, observe: observe}
	if s, ok := bp.(core.Sender); ok {
		return senderTap{tap: t, Sender: s}
	}
	return t
}

// latencies collects duration samples. It is safe for concurrent use.
type latencies struct {
	mu sync.Mutex
	s  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	l.mu.Lock()
	l.s = append(l.s, d)
	l.mu.Unlock()
}

// snapshot returns a sorted copy of the samples.
func (l *latencies) snapshot() []time.Duration {
	l.mu.Lock()
	s := slices.Clone(l.s)
	l.mu.Unlock()
	slices.Sort(s)
	return s
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.s)
}

// percentile returns the q-quantile (0..1) of sorted samples, 0 if none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// fmtDur formats a latency compactly: 85µs, 1.24ms, 2.5s; "-" for none.
func fmtDur(d time.Duration, have bool) string {
	if !have {
		return "-"
	}
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.2fs", d.Seconds())
	}
}

// fmtCount formats n with thousands separators.
func fmtCount(n uint64) string {
	s := fmt.Sprint(n)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
