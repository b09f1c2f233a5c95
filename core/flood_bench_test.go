package core_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// BenchmarkReadsUnderFlood measures Get on an instance while an outsider
// without the key floods the channel with heartbeats of ever new source
// IDs, each announcing a thousand messages (every one costs the instance a
// flush), at up to 5,000 messages a second; and the same reads without the
// flood, in the same run. It reports the heap's growth over the run
// (heap-MiB: the receive side's state, as the reads fill nothing) and the
// flushes per second the flood forced.
//
//	go test -run '^$' -bench ReadsUnderFlood -benchtime 10s ./core
func BenchmarkReadsUnderFlood(b *testing.B) {
	for _, flood := range []bool{false, true} {
		name := "quiet"
		if flood {
			name = "flood-5000-per-s"
		}
		b.Run(name, func(b *testing.B) {
			hub := memtransport.NewHub()
			c, err := core.Open(context.Background(), newStore(b), hub.New("bench"), core.WithLogger(discard))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if !flood {
					return
				}
				r := hub.New("bench")
				defer r.Close()
				t := time.NewTicker(time.Millisecond)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
					}
					for range 5 {
						env := core.Envelope{Op: core.OpHeartbeat, Source: core.NewSourceID(), Seq: 1000, Sent: time.Now()}
						p, _ := env.MarshalBinary()
						_ = r.Publish(context.Background(), p)
					}
				}
			}()
			heap := func() uint64 {
				runtime.GC()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				return m.HeapAlloc
			}
			value := make([]byte, 256)
			for i := range benchKeys {
				_ = c.Set(benchKey(i), value)
			}
			keys := make([]string, benchKeys)
			for i := range keys {
				keys[i] = benchKey(i)
			}
			before, flushes := heap(), c.Stats().Flushes
			start := time.Now()
			i := 0
			for b.Loop() {
				c.Get(keys[i%benchKeys])
				i++
			}
			elapsed := time.Since(start)
			close(stop)
			<-done
			b.ReportMetric(float64(int64(heap())-int64(before))/(1<<20), "heap-MiB")
			b.ReportMetric(float64(c.Stats().Flushes-flushes)/elapsed.Seconds(), "flushes/s")
		})
	}
}
