package natstransport_test

import (
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/ackbench"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
)

// BenchmarkAcked compares InvalidateAcked with Invalidate over core NATS,
// for fleets of 2, 4 and 16 instances:
//
//	go test -run '^$' -bench Acked -benchtime 1x ./transports/natstransport/
func BenchmarkAcked(b *testing.B) {
	url := testenv.NATSURL(b)
	ackbench.Report(b, func(tb testing.TB, ns string) core.Backplane {
		tr, err := natstransport.Open(url, ns)
		if err != nil {
			tb.Fatal(err)
		}
		return tr
	}, 2, 4, 16)
}
