package conformance

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Stage opens the Backplane of one stage of a rolling deploy for
// namespace; RunMigration closes it through the Cache.
type Stage func(t *testing.T, namespace string) core.Backplane

// RunMigration checks that a fleet can move between transports (or modes
// of one transport) by rolling deploys without serving stale data. Three
// instances start on stages[0], under a steady load of writes and reads;
// then they are redeployed one at a time on stages[1], then on stages[2],
// and so on, each mixed fleet running for several staleness bounds. Every
// key is written through one owner instance, so an instance that cannot
// hear the owner's side of the fleet keeps serving the old value; the
// consistency check fails the test on any read older than the bound
// (HeartbeatTimeout + HeartbeatInterval + slack). A move from A to B is
// typically checked as A, transition, B and back.
func RunMigration(t *testing.T, newStore func(t *testing.T) core.LocalStore, stages ...Stage) {
	t.Helper()
	if len(stages) < 2 {
		t.Fatal("conformance: RunMigration needs at least two stages")
	}
	const nInstances, nKeys = 3, 12
	hbInterval, hbTimeout := 100*time.Millisecond, 500*time.Millisecond
	bound := hbTimeout + hbInterval + 500*time.Millisecond
	hold := 2*bound + 500*time.Millisecond // how long each mixed fleet runs
	if testing.Short() {
		hold = bound + 500*time.Millisecond
	}
	ns := newNamespace(t)
	open := func(stage, slot int) *core.Cache {
		bp := stages[stage](t, ns)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		c, err := core.Open(ctx, newStore(t), bp,
			core.WithHeartbeat(hbInterval, hbTimeout),
			core.WithPublishTimeout(2*time.Second),
			core.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatalf("conformance: open instance %d on stage %d: %v", slot, stage, err)
		}
		return c
	}
	var slots [nInstances]atomic.Pointer[core.Cache]
	for i := range nInstances {
		slots[i].Store(open(0, i))
	}
	defer func() {
		for i := range nInstances {
			if err := closeWithin(slots[i].Load(), 10*time.Second); err != nil {
				t.Errorf("conformance: close instance %d: %v", i, err)
			}
		}
	}()

	var srcMu sync.Mutex
	source := make(map[string]int64)
	hist := &history{start: time.Now(), events: map[string][]string{}, done: map[string][]write{}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait() // before the instances close
	defer cancel()
	var reads, writes, violations atomic.Int64
	// Writers: key item:i is written through instance i mod 3.
	for w := range 2 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				n := r.IntN(nKeys)
				k := "item:" + strconv.Itoa(n)
				srcMu.Lock()
				source[k]++
				v := source[k]
				srcMu.Unlock()
				hist.log(k, "write v%d", v)
				for ctx.Err() == nil {
					err := slots[n%nInstances].Load().Invalidate(context.Background(), k)
					if err == nil {
						hist.mu.Lock()
						hist.done[k] = append(hist.done[k], write{version: v, returned: time.Now()})
						hist.mu.Unlock()
						writes.Add(1)
						break
					}
					hist.log(k, "invalidate v%d failed: %v", v, err)
					if !errors.Is(err, core.ErrClosed) {
						time.Sleep(10 * time.Millisecond) // retry pacing
					}
				}
				time.Sleep(time.Duration(1+r.IntN(3)) * time.Millisecond)
			}
		})
	}
	for i := range nInstances {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(100+i), uint64(time.Now().UnixNano())))
			for ctx.Err() == nil {
				k := "item:" + strconv.Itoa(r.IntN(nKeys))
				start := time.Now()
				b, err := slots[i].Load().GetOrLoad(context.Background(), k, func(context.Context) ([]byte, error) {
					srcMu.Lock()
					defer srcMu.Unlock()
					return []byte(strconv.FormatInt(source[k], 10)), nil
				})
				if err != nil {
					if errors.Is(err, core.ErrClosed) {
						continue // redeployed under the read
					}
					t.Errorf("GetOrLoad on instance %d: %v", i, err)
					return
				}
				if reads.Add(1)%64 == 0 {
					time.Sleep(100 * time.Microsecond) // leave the writers CPU
				}
				got, _ := strconv.ParseInt(string(b), 10, 64)
				if want, at := hist.mustHave(k, start, bound); got < want {
					hist.log(k, "STALE read on instance %d: v%d, but v%d was invalidated at %.3fms", i, got, want,
						float64(at.Sub(hist.start).Microseconds())/1000)
					if violations.Add(1) == 1 {
						t.Errorf("stale read on instance %d of %s: got v%d, want >= v%d (bound %v)\nhistory:\n%s",
							i, k, got, want, bound, hist.dump(k))
					}
				}
			}
		})
	}
	pause := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-t.Context().Done():
		}
	}
	pause(hold)
	for stage := 1; stage < len(stages); stage++ {
		for i := range nInstances {
			hist.log("item:0", "REDEPLOY instance %d on stage %d", i, stage)
			old := slots[i].Swap(open(stage, i))
			if err := closeWithin(old, 10*time.Second); err != nil {
				t.Errorf("conformance: close instance %d: %v", i, err)
			}
			pause(hold)
		}
	}
	cancel()
	wg.Wait()
	t.Logf("migration over %d stages: %d reads, %d writes, %d stale reads past %v", len(stages), reads.Load(), writes.Load(), violations.Load(), bound)
	if reads.Load() == 0 || writes.Load() == 0 {
		t.Fatalf("the check did nothing: %d reads, %d writes", reads.Load(), writes.Load())
	}
}
