package core_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const ns = "test"

// newStore returns a bigcache-backed store.
func newStore(t testing.TB) core.LocalStore {
	t.Helper()
	s, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() }) // the Cache closes it too; Close is idempotent
	return s
}

var discard = slog.New(slog.DiscardHandler)

// quiet disables heartbeats so that message counts are exact.
var quiet = core.WithHeartbeat(0, 0)

// open starts a Cache on hub and closes it at the end of the test.
func open(t testing.TB, hub *memtransport.Hub, opts ...core.Option) (*core.Cache, *memtransport.Transport) {
	t.Helper()
	tr := hub.New(ns)
	opts = append([]core.Option{core.WithLogger(discard)}, opts...)
	c, err := core.Open(context.Background(), newStore(t), tr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, tr
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func load(v string) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) { return []byte(v), nil }
}

func mustGet(t testing.TB, c *core.Cache, key, want string) {
	t.Helper()
	v, ok := c.Get(key)
	if !ok || string(v) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", key, v, ok, want)
	}
}

func TestInvalidateReachesEveryPeer(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	c, _ := open(t, hub, quiet)
	ctx := context.Background()
	for _, x := range []*core.Cache{a, b, c} {
		if _, err := x.GetOrLoad(ctx, "k", load("v1")); err != nil {
			t.Fatal(err)
		}
		mustGet(t, x, "k", "v1")
		_ = x.Set("other", []byte("o"))
	}
	if err := a.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("k"); ok {
		t.Fatal("the invalidating instance still has the key when Invalidate returns")
	}
	for _, x := range []*core.Cache{b, c} {
		eventually(t, "peer evicts k", func() bool { _, ok := x.Get("k"); return !ok })
		mustGet(t, x, "other", "o")
	}
	eventually(t, "own message comes back and is ignored", func() bool { return a.Stats().IgnoredOwn == 1 })
	if s := a.Stats(); s.Received != 0 || s.KeysEvicted != 0 {
		t.Fatalf("own message was processed: %+v", s)
	}
	eventually(t, "b counts the message", func() bool { return b.Stats().Received == 1 })
	if s := b.Stats(); s.Received != 1 || s.KeysEvicted != 1 || s.Flushes != 0 {
		t.Fatalf("peer stats: %+v", s)
	}
}

func TestClearEverywhere(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	for i := range 10 {
		_ = a.Set(fmt.Sprint(i), []byte("x"))
		_ = b.Set(fmt.Sprint(i), []byte("x"))
	}
	if err := a.Clear(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("3"); ok {
		t.Fatal("local entry survived Clear")
	}
	eventually(t, "peer cleared", func() bool {
		for i := range 10 {
			if _, ok := b.Get(fmt.Sprint(i)); ok {
				return false
			}
		}
		return true
	})
}

func TestGetOrLoadSingleFlight(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	var calls atomic.Int32
	release := make(chan struct{})
	loader := func(context.Context) ([]byte, error) {
		calls.Add(1)
		<-release
		return []byte("v"), nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			v, err := c.GetOrLoad(context.Background(), "k", loader)
			if err == nil && string(v) != "v" {
				err = fmt.Errorf("got %q", v)
			}
			errs <- err
		})
	}
	eventually(t, "loader running", func() bool { return calls.Load() == 1 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("loader called %d times, want 1", n)
	}
	mustGet(t, c, "k", "v")
}

func TestGetOrLoadErrorsAndPanics(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	boom := errors.New("boom")
	_, err := c.GetOrLoad(context.Background(), "k", func(context.Context) ([]byte, error) { return nil, boom })
	if !errors.Is(err, boom) {
		t.Fatalf("got %v, want boom", err)
	}
	if _, ok := c.Get("k"); ok {
		t.Fatal("a failed load was cached")
	}
	_, err = c.GetOrLoad(context.Background(), "k", func(context.Context) ([]byte, error) { panic("kaboom") })
	if err == nil || !strings.Contains(err.Error(), "kaboom") {
		t.Fatalf("panicking loader: got %v", err)
	}
	v, err := c.GetOrLoad(context.Background(), "k", load("ok"))
	if err != nil || string(v) != "ok" {
		t.Fatalf("after a panic: %q, %v", v, err)
	}
}

func TestGetOrLoadWaiterContext(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	release := make(chan struct{})
	started := make(chan struct{})
	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	go func() {
		_, _ = c.GetOrLoad(leaderCtx, "k", func(ctx context.Context) ([]byte, error) {
			close(started)
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-release:
				return []byte("leader"), nil
			}
		})
	}()
	<-started
	// A waiter whose own context ends returns its own error.
	wctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	if _, err := c.GetOrLoad(wctx, "k", load("w")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiter: got %v", err)
	}
	// The leader's cancellation is not handed to waiters: they load again.
	done := make(chan string)
	go func() {
		v, _ := c.GetOrLoad(context.Background(), "k", load("second"))
		done <- string(v)
	}()
	cancelLeader()
	if v := <-done; v != "second" {
		t.Fatalf("waiter after leader cancelled: got %q", v)
	}
	close(release)
}

// blockingLoad returns a loader that signals it started, then waits for
// release and returns v.
func blockingLoad(v string) (loader func(context.Context) ([]byte, error), started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	return func(context.Context) ([]byte, error) {
		close(started)
		<-release
		return []byte(v), nil
	}, started, release
}

// TestFillInvalidateRace proves that a load overlapping an eviction of its
// key is returned but not cached, for every kind of eviction.
func TestFillInvalidateRace(t *testing.T) {
	cases := []struct {
		name  string
		evict func(t *testing.T, a, b *core.Cache, tb *memtransport.Transport)
	}{
		{"local invalidate", func(t *testing.T, a, b *core.Cache, _ *memtransport.Transport) {
			if err := b.Invalidate(context.Background(), "k"); err != nil {
				t.Fatal(err)
			}
		}},
		{"remote invalidate", func(t *testing.T, a, b *core.Cache, _ *memtransport.Transport) {
			before := b.Stats().KeysEvicted
			if err := a.Invalidate(context.Background(), "k"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "b evicts", func() bool { return b.Stats().KeysEvicted > before })
		}},
		{"local clear", func(t *testing.T, a, b *core.Cache, _ *memtransport.Transport) {
			if err := b.Clear(context.Background()); err != nil {
				t.Fatal(err)
			}
		}},
		{"remote clear", func(t *testing.T, a, b *core.Cache, _ *memtransport.Transport) {
			before := b.Stats().Received
			if err := a.Clear(context.Background()); err != nil {
				t.Fatal(err)
			}
			eventually(t, "b receives clear", func() bool { return b.Stats().Received > before })
		}},
		{"local delete", func(t *testing.T, a, b *core.Cache, _ *memtransport.Transport) {
			if err := b.Delete("k"); err != nil {
				t.Fatal(err)
			}
		}},
		{"reconnect flush", func(t *testing.T, a, b *core.Cache, tb *memtransport.Transport) {
			tb.Disconnect(errors.New("cut"))
			tb.Reconnect()
			eventually(t, "b flushes on reconnect", func() bool { return b.Health().LastFlushCause == "reconnect" })
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hub := memtransport.NewHub()
			a, _ := open(t, hub, quiet)
			b, tb := open(t, hub, quiet)
			loader, started, release := blockingLoad("old")
			got := make(chan string)
			go func() {
				v, err := b.GetOrLoad(context.Background(), "k", loader)
				if err != nil {
					t.Error(err)
				}
				got <- string(v)
			}()
			<-started
			tc.evict(t, a, b, tb)
			close(release)
			if v := <-got; v != "old" {
				t.Fatalf("the caller should still get its load, got %q", v)
			}
			if v, ok := b.Get("k"); ok {
				t.Fatalf("a load that overlapped an eviction was cached: %q", v)
			}
			if n := b.Stats().LoadsNotKept; n != 1 {
				t.Fatalf("LoadsNotKept = %d, want 1", n)
			}
			// The next load is cached normally.
			if _, err := b.GetOrLoad(context.Background(), "k", load("new")); err != nil {
				t.Fatal(err)
			}
			mustGet(t, b, "k", "new")
		})
	}
}

// A caller arriving after an eviction must not join a load that started
// before it.
func TestEvictionDetachesLoadInFlight(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	loader, started, release := blockingLoad("old")
	first := make(chan string)
	go func() {
		v, _ := c.GetOrLoad(context.Background(), "k", loader)
		first <- string(v)
	}()
	<-started
	if err := c.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	v, err := c.GetOrLoad(context.Background(), "k", load("new"))
	if err != nil || string(v) != "new" {
		t.Fatalf("after the eviction: %q, %v; want a fresh load", v, err)
	}
	close(release)
	if v := <-first; v != "old" {
		t.Fatalf("first caller got %q", v)
	}
	mustGet(t, c, "k", "new")
}

func TestSetDetachesOlderLoad(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet)
	loader, started, release := blockingLoad("older")
	done := make(chan struct{})
	go func() { _, _ = c.GetOrLoad(context.Background(), "k", loader); close(done) }()
	<-started
	if err := c.Set("k", []byte("newer")); err != nil {
		t.Fatal(err)
	}
	close(release)
	<-done
	mustGet(t, c, "k", "newer")
}
