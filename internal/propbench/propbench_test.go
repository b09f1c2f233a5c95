package propbench

import (
	"context"
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
