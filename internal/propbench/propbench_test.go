package propbench

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// A Fleet serves several measurements in turn: each counts its own
// deliveries only, to every subscriber.
func TestFleetMeasuresInTurn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hub := memtransport.NewHub()
	defer hub.Close()
	f, err := OpenFleet(ctx, func() (core.Backplane, error) { return hub.New("propbench-test"), nil }, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{50, 80} {
		r, err := f.Latency(ctx, n, 0)
		if err != nil {
			t.Fatal(err)
		}
		if r.Sent != n || r.Received != 2*n || len(r.Samples) != 2*n || r.Gaps != 0 {
			t.Fatalf("n=%d: sent %d, received %d, samples %d, gaps %d; want %d, %d, %d, 0", n, r.Sent, r.Received, len(r.Samples), r.Gaps, n, 2*n, 2*n)
		}
		if r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
			t.Fatalf("n=%d: p50 %v, p99 %v, max %v", n, r.P50, r.P99, r.Max)
		}
		if processCPU() > 0 && r.CPU <= 0 {
			t.Fatalf("n=%d: CPU %v; want the process's CPU time during the measurement", n, r.CPU)
		}
	}
}

// Interleaved sides take turns in blocks, each once per cycle, in the
// reverse order every other cycle; every index of every side is sent once.
func TestTurnOf(t *testing.T) {
	const block, sides, n = 3, 3, 7 // cycles of 9 sends; the last is cut at index 6
	var got []string
	seen := map[[2]int]bool{}
	for j := 0; j < 3*block*sides; j++ {
		side, i := turnOf(j, block, sides)
		if i >= n {
			continue
		}
		if seen[[2]int{side, i}] {
			t.Fatalf("side %d index %d sent twice", side, i)
		}
		seen[[2]int{side, i}] = true
		if j%block == 0 {
			got = append(got, fmt.Sprintf("%d:%d", side, i))
		}
	}
	want := []string{"0:0", "1:0", "2:0", "2:3", "1:3", "0:3", "0:6", "1:6", "2:6"}
	if !slices.Equal(got, want) {
		t.Fatalf("block starts %v; want %v", got, want)
	}
	if len(seen) != sides*n {
		t.Fatalf("%d sends; want %d", len(seen), sides*n)
	}
}

// Interleave measures each side's own deliveries and splits the run's wall
// and CPU time between them.
func TestInterleaveMeasuresEachSide(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 300
	var released [3]bool
	side := func(k int) Side {
		col := newCollector(n, 1)
		return Side{
			col: col,
			send: func(i int) error {
				col.arrived(0, i, time.Now().Add(time.Duration(k+1)*time.Millisecond))
				return nil
			},
			done: func(*Result) { released[k] = true },
		}
	}
	res, err := Interleave(ctx, []Side{side(0), side(1), side(2)}, n, 1000) // blocks of 100: three cycles
	if err != nil {
		t.Fatal(err)
	}
	var wall time.Duration
	for k, r := range res {
		if !released[k] {
			t.Fatalf("side %d not released", k)
		}
		if r.Sent != n || r.Received != n {
			t.Fatalf("side %d: sent %d, received %d; want %d", k, r.Sent, r.Received, n)
		}
		// Each side's deliveries are stamped k+1 ms after the send.
		if want := time.Duration(k+1) * time.Millisecond; r.P50 < want {
			t.Fatalf("side %d: p50 %v; want at least %v", k, r.P50, want)
		}
		if r.Elapsed <= 0 {
			t.Fatalf("side %d: elapsed %v", k, r.Elapsed)
		}
		wall += r.Elapsed
	}
	// 900 sends paced at 1000/s take 0.899 s at least, shared by the sides.
	if wall < 899*time.Millisecond {
		t.Fatalf("the sides' wall time adds up to %v; want the run's, at least 899ms", wall)
	}
}
