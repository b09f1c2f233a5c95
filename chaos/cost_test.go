package chaos_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/natstransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// The broker cost of the durable modes: what the retained log takes on the
// broker at a steady rate of invalidations.
const (
	costRate      = 1000             // invalidations per second
	costCallers   = 4                // concurrent callers sharing the rate
	costRetention = 10 * time.Minute // the retention the figure is extrapolated to
)

// costWindow is how long the measured run lasts: BACKPLANE_CHAOS_COST_WINDOW,
// 20 s by default.
func costWindow(t *testing.T) time.Duration {
	if v := os.Getenv("BACKPLANE_CHAOS_COST_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("BACKPLANE_CHAOS_COST_WINDOW: %v", err)
		}
		return d
	}
	return 20 * time.Second
}

// TestChaosBrokerCost measures the memory (Redis) and the stream bytes
// (JetStream) of one namespace's log while one instance invalidates
// costRate keys a second ("item:<n>", n below 100,000, each call one key,
// costCallers callers) with heartbeats every second, and extrapolates it
// to costRetention. It runs in the full form, or with
// BACKPLANE_CHAOS_COST=1; BACKPLANE_CHAOS_REPORT gets its lines.
func TestChaosBrokerCost(t *testing.T) {
	if !loadConfig().full && os.Getenv("BACKPLANE_CHAOS_COST") != "1" {
		t.Skip("measures the broker cost for a while; runs in the full form or with BACKPLANE_CHAOS_COST=1")
	}
	window := costWindow(t)

	t.Run("redis-stream", func(t *testing.T) {
		s := testenv.StartRedis(t, testenv.WithRedisArgs("--appendonly", "yes", "--appendfsync", "always"))
		ns := "cost"
		// The stream keeps the retention: MAXLEN above what it holds.
		bp, err := redistransport.Open("redis://"+s.Addr()+"?mode=stream&maxlen=10000000&retention="+costRetention.String(), ns,
			redistransport.WithLogger(discard))
		if err != nil {
			t.Fatal(err)
		}
		key := bp.Channel()
		before := redisUsedMemory(t, s)
		keys, dur := invalidateAtRate(t, bp, window)
		n, err := s.Do("XLEN", key)
		if err != nil {
			t.Fatalf("XLEN: %v", err)
		}
		usage, err := s.Do("MEMORY", "USAGE", key, "SAMPLES", "0")
		if err != nil {
			t.Fatalf("MEMORY USAGE: %v", err)
		}
		after := redisUsedMemory(t, s)
		entries, _ := strconv.ParseInt(n, 10, 64)
		bytes, _ := strconv.ParseInt(usage, 10, 64)
		reportCost(t, "redis-stream (MEMORY USAGE of the stream key)", keys, entries, bytes, dur)
		t.Logf("  INFO memory used_memory grew by %d bytes", after-before)
	})

	for _, storage := range []natstransport.Storage{natstransport.StorageFile, natstransport.StorageMemory} {
		t.Run("jetstream-"+string(storage), func(t *testing.T) {
			s := testenv.StartNATS(t, testenv.WithNATSJetStream())
			bp, err := natstransport.Open(s.URL(), "cost",
				natstransport.WithLogger(discard),
				natstransport.WithJetStream(natstransport.JetStreamOptions{Storage: storage, MaxAge: costRetention}))
			if err != nil {
				t.Fatal(err)
			}
			name := bp.Stream()
			keys, dur := invalidateAtRate(t, bp, window)
			nc, err := nats.Connect(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			st, err := js.Stream(ctx, name)
			if err != nil {
				t.Fatalf("stream %s: %v", name, err)
			}
			info, err := st.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			reportCost(t, "jetstream "+string(storage)+" (stream state bytes)", keys, int64(info.State.Msgs), int64(info.State.Bytes), dur)
		})
	}
}

// invalidateAtRate runs one instance over bp that invalidates costRate
// keys a second for d, and returns how many keys it invalidated and how
// long it took.
func invalidateAtRate(t *testing.T, bp core.Backplane, d time.Duration) (int64, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := core.Open(ctx, newStore(t), bp, core.WithLogger(discard), core.WithHeartbeat(time.Second, 3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done int64
	for w := range costCallers {
		wg.Go(func() {
			every := time.Second * costCallers / costRate
			next := start
			for i := w; time.Since(start) < d; i += costCallers {
				next = next.Add(every)
				time.Sleep(time.Until(next))
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.Invalidate(ctx, "item:"+strconv.Itoa(i%100_000))
				cancel()
				if err != nil {
					t.Errorf("Invalidate: %v", err)
					return
				}
				mu.Lock()
				done++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return done, time.Since(start)
}

func reportCost(t *testing.T, what string, keys, entries, bytes int64, d time.Duration) {
	if entries == 0 || bytes == 0 {
		t.Fatalf("%s: %d entries, %d bytes after %d invalidations: nothing retained", what, entries, bytes, keys)
	}
	perEntry := float64(bytes) / float64(entries)
	rate := float64(keys) / d.Seconds()
	entryRate := float64(entries) / d.Seconds()
	total := perEntry * entryRate * costRetention.Seconds()
	// Without coalescing every invalidation is an entry of its own.
	worst := perEntry * costRate * costRetention.Seconds()
	line := fmt.Sprintf("%s: %d invalidations in %v (%.0f/s) made %d entries (%.0f/s, heartbeats included), %d bytes (%.0f per entry); %v at this rate: %.0f entries, %.1f MiB; at one entry per invalidation: %.1f MiB",
		what, keys, d.Round(time.Millisecond), rate, entries, entryRate, bytes, perEntry,
		costRetention, entryRate*costRetention.Seconds(), total/(1<<20), worst/(1<<20))
	t.Log(line)
	reportLine(t, "cost: "+line)
}

func redisUsedMemory(t *testing.T, s *testenv.RedisServer) int64 {
	n, _ := strconv.ParseInt(redisInfoField(t, s, "memory", "used_memory"), 10, 64)
	return n
}
