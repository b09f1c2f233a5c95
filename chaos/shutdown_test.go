package chaos_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
)

// keyRecorder is a Backplane that records the keys of the invalidations
// of one source that its instance receives.
type keyRecorder struct {
	core.Backplane
	mu   sync.Mutex
	from core.SourceID
	keys map[string]struct{}
}

func (k *keyRecorder) Subscribe(ctx context.Context, h core.Handler) error {
	return k.Backplane.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			if env, err := core.DecodeEnvelope(p); err == nil && env.Op == core.OpInvalidate {
				k.mu.Lock()
				if env.Source == k.from {
					for _, key := range env.Keys {
						k.keys[key] = struct{}{}
					}
				}
				k.mu.Unlock()
			}
			h.HandleMessage(p)
		},
		Event: h.HandleEvent,
	})
}

func (k *keyRecorder) missing(want []string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var miss []string
	for _, w := range want {
		if _, ok := k.keys[w]; !ok {
			miss = append(miss, w)
		}
	}
	return miss
}

// TestShutdownBurst closes an instance in the middle of a burst of 100,000
// invalidated keys: every Invalidate that returned nil must reach a peer
// that stays up, and Shutdown must drain within its context. Goroutines
// are checked by goleak in TestMain.
// It runs over every broker of the table.
func TestShutdownBurst(t *testing.T) {
	for i := range brokers {
		kind := &brokers[i]
		t.Run(kind.name, func(t *testing.T) {
			brk := kind.start(t)
			brk.kind, brk.name = kind, kind.name
			shutdownBurst(t, brk)
		})
	}
}

func shutdownBurst(t *testing.T, brk *broker) {
	const totalKeys = 100_000
	cfg := loadConfig()
	ns := "shutdown-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	open := func(bp core.Backplane) *core.Cache {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.wait)
		defer cancel()
		c, err := core.Open(ctx, newStore(t), bp, core.WithLogger(discard), core.WithHeartbeat(cfg.hbInterval, cfg.hbTimeout))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// The closing instance talks to the broker through a proxy that delays
	// its sends, so that many calls are still queued when Shutdown starts.
	p, err := faultproxy.New(brk.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	p.SetLatency(faultproxy.Up, 5*time.Millisecond)
	closing := open(brk.open(t, p.Addr(), ns))
	rec := &keyRecorder{Backplane: brk.open(t, brk.addr, ns), from: closing.ID(), keys: map[string]struct{}{}}
	peer := open(rec)
	t.Cleanup(func() { _ = peer.Close() })
	if !eventually(cfg.wait, func() bool { return peer.Health().Peers == 1 && closing.Health().Peers == 1 }) {
		t.Fatal("the instances did not see each other")
	}

	// The burst: callers invalidate 1 to 20 keys per call until 100,000
	// keys were handed out; Shutdown starts once a quarter returned.
	var next, returned atomic.Int64
	var okMu sync.Mutex
	var ok []string
	var closedErrs, otherErrs atomic.Int64
	quarter := make(chan struct{})
	var quarterOnce sync.Once
	var wg sync.WaitGroup
	for g := range 128 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for {
				n := int64(1 + rng.IntN(20))
				end := next.Add(n)
				start := end - n
				if start >= totalKeys {
					return
				}
				end = min(end, totalKeys)
				keys := make([]string, 0, end-start)
				for i := start; i < end; i++ {
					keys = append(keys, "k"+strconv.FormatInt(i, 10))
				}
				err := closing.Invalidate(context.Background(), keys...)
				switch {
				case err == nil:
					okMu.Lock()
					ok = append(ok, keys...)
					okMu.Unlock()
				case errors.Is(err, core.ErrClosed):
					closedErrs.Add(1)
				default:
					otherErrs.Add(1)
					t.Errorf("Invalidate during shutdown: %v", err)
				}
				if returned.Add(int64(len(keys))) >= totalKeys/4 {
					quarterOnce.Do(func() { close(quarter) })
				}
			}
		})
	}
	<-quarter
	pending := closing.Health().PendingPublishes
	ctx, cancel := context.WithTimeout(context.Background(), cfg.wait)
	err = closing.Shutdown(ctx)
	cancel()
	if err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()

	var miss []string
	if !eventually(cfg.wait, func() bool { miss = rec.missing(ok); return len(miss) == 0 }) {
		t.Errorf("%d of %d keys whose Invalidate returned nil never reached the peer, for example %q",
			len(miss), len(ok), miss[:min(5, len(miss))])
	}
	t.Logf("%s: %d keys handed out, %d calls pending when Shutdown started, %d keys invalidated (returned nil) and all received by the peer: %v; %d calls refused with ErrClosed, %d other errors",
		brk.name, min(next.Load(), totalKeys), pending, len(ok), len(miss) == 0, closedErrs.Load(), otherErrs.Load())
}
