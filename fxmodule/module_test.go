package fxmodule_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports/memtransport"
	_ "github.com/backplane-go/backplane/transports/pgtransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

var nsSeq atomic.Int64

// namespace returns a namespace no other test or run uses.
func namespace(t *testing.T) string {
	return fmt.Sprintf("fxmodule-%d-%d", time.Now().UnixNano(), nsSeq.Add(1))
}

// app is a started fx application with the Module's outputs.
type app struct {
	*fxtest.App
	cache  *core.Cache
	bp     core.Backplane
	store  core.LocalStore
	health fxmodule.HealthCheck
}

func config(t *testing.T, url, ns string) fxmodule.Config {
	c := fxmodule.DefaultConfig()
	c.Namespace = ns
	c.TransportURL = url
	c.StartTimeout = 5 * time.Second
	c.HeartbeatInterval = 200 * time.Millisecond
	return c
}

// newApp builds an application with the Module and extra options; it is
// stopped when the test ends.
func newApp(t *testing.T, opts ...fx.Option) *app {
	t.Helper()
	a := &app{}
	opts = append(opts, fxmodule.Module, fx.NopLogger, fx.Populate(&a.cache, &a.bp, &a.store, &a.health))
	a.App = fxtest.New(t, opts...)
	return a
}

func start(t *testing.T, a *app) {
	t.Helper()
	a.RequireStart()
	t.Cleanup(a.RequireStop)
}

// shareInvalidations checks that an Invalidate on one app evicts the key on
// the other, both ways.
func shareInvalidations(t *testing.T, a, b *app) {
	t.Helper()
	ctx := context.Background()
	for _, pair := range [][2]*app{{a, b}, {b, a}} {
		writer, reader := pair[0], pair[1]
		key := fmt.Sprintf("item:%d", nsSeq.Add(1))
		loads := 0
		load := func(context.Context) ([]byte, error) { loads++; return fmt.Appendf(nil, "v%d", loads), nil }
		if v, err := reader.cache.GetOrLoad(ctx, key, load); err != nil || string(v) != "v1" {
			t.Fatalf("GetOrLoad = %q, %v", v, err)
		}
		if _, ok := reader.cache.Get(key); !ok {
			t.Fatal("the loaded value was not cached")
		}
		if err := writer.cache.Invalidate(ctx, key); err != nil {
			t.Fatal(err)
		}
		eventually(t, "the invalidation to reach the other app", func() bool { _, ok := reader.cache.Get(key); return !ok })
		if v, _ := reader.cache.GetOrLoad(ctx, key, load); string(v) != "v2" {
			t.Fatalf("after the invalidation: %q, want v2", v)
		}
	}
}

func TestValidateApp(t *testing.T) {
	urls := []string{"mem://validate", "redis://127.0.0.1:6379", "rediss://127.0.0.1:6380", "nats://127.0.0.1:4222", "tls://127.0.0.1:4222", "postgres://127.0.0.1:5432/postgres"}
	for _, u := range urls {
		err := fx.ValidateApp(fxmodule.Module, fx.Supply(config(t, u, "ns")), fx.Invoke(func(*core.Cache, core.Backplane, core.LocalStore, fxmodule.HealthCheck) {}))
		if err != nil {
			t.Errorf("%s: ValidateApp: %v", u, err)
		}
	}
	if err := fx.ValidateApp(fxmodule.Module, fx.Invoke(func(*core.Cache) {})); err == nil || !strings.Contains(err.Error(), "fxmodule.Config") {
		t.Errorf("ValidateApp without a Config = %v, want a missing fxmodule.Config", err)
	}
	// The optional clients are accepted from the graph.
	err := fx.ValidateApp(fxmodule.Module,
		fx.Supply(config(t, "redis://ignored:1", "ns")),
		fx.Provide(func() redis.UniversalClient { return nil }),
		fx.Provide(func() *nats.Conn { return nil }),
		fxmodule.UseClient[redis.UniversalClient](),
		fxmodule.UseClient[*nats.Conn](),
		fx.Invoke(func(*core.Cache) {}))
	if err != nil {
		t.Errorf("ValidateApp with clients: %v", err)
	}
}

func TestModuleMem(t *testing.T) {
	ns := namespace(t)
	a := newApp(t, fx.Supply(config(t, "mem://module", ns)))
	b := newApp(t, fx.Supply(config(t, "mem://module", ns)))
	if err := a.health(context.Background()); !errors.Is(err, core.ErrNotStarted) {
		t.Fatalf("health before start = %v, want ErrNotStarted", err)
	}
	start(t, a)
	start(t, b)
	if err := a.health(context.Background()); err != nil {
		t.Fatalf("health after start: %v", err)
	}
	if a.bp.(*memtransport.Transport) == nil || a.store == nil {
		t.Fatal("Backplane or LocalStore not provided")
	}
	shareInvalidations(t, a, b)
}

// TestModuleTransition: an application with transition_url hears, and is
// heard by, applications on either of its two transports.
func TestModuleTransition(t *testing.T) {
	ns := namespace(t)
	cfg := config(t, "mem://transition-new", ns)
	cfg.TransitionURL = "mem://transition-old"
	moving := newApp(t, fx.Supply(cfg))
	onOld := newApp(t, fx.Supply(config(t, "mem://transition-old", ns)))
	onNew := newApp(t, fx.Supply(config(t, "mem://transition-new", ns)))
	start(t, moving)
	start(t, onOld)
	start(t, onNew)
	if l := moving.bp.Limits(); !l.Reorders {
		t.Errorf("Limits %+v of the transition's Backplane, want Reorders (transports.Dual)", l)
	}
	shareInvalidations(t, moving, onOld)
	shareInvalidations(t, moving, onNew)
}

// TestModuleOtter runs two applications on the otter store, one bigcache
// application beside them: the store is an instance's own choice.
func TestModuleOtter(t *testing.T) {
	ns := namespace(t)
	otter := func() fxmodule.Config {
		c := config(t, "mem://module-otter", ns)
		c.Store.Name = "otter"
		c.Store.Otter.MaxSizeMB = 16
		return c
	}
	a := newApp(t, fx.Supply(otter()))
	b := newApp(t, fx.Supply(otter()))
	c := newApp(t, fx.Supply(config(t, "mem://module-otter", ns)))
	start(t, a)
	start(t, b)
	start(t, c)
	if _, ok := a.store.(*otterstore.Store); !ok {
		t.Fatalf("store is %T, want *otterstore.Store", a.store)
	}
	shareInvalidations(t, a, b)
	shareInvalidations(t, a, c)
}

func TestHealthCheck(t *testing.T) {
	a := newApp(t, fx.Supply(config(t, "mem://health", namespace(t))))
	start(t, a)
	mt := a.bp.(*memtransport.Transport)
	mt.Disconnect(errors.New("cable cut"))
	eventually(t, "health to report the disconnect", func() bool { return errors.Is(a.health(context.Background()), fxmodule.ErrDisconnected) })
	err := a.health(context.Background())
	if !strings.Contains(err.Error(), "last flush") {
		t.Errorf("health %q does not mention the last flush", err)
	}
	mt.Reconnect()
	eventually(t, "health to recover", func() bool { return a.health(context.Background()) == nil })
	if h := a.cache.Health(); h.LastFlushCause == "" {
		t.Errorf("no flush cause after a reconnect: %+v", h)
	}

	// A silent link: the transport stays connected but delivers nothing.
	mt.DropIncoming(1 << 30)
	eventually(t, "health to report silence", func() bool { return errors.Is(a.health(context.Background()), fxmodule.ErrSilent) })
	mt.StopDropping()
	eventually(t, "health to recover from silence", func() bool { return a.health(context.Background()) == nil })
}

func TestHealthAfterStop(t *testing.T) {
	a := newApp(t, fx.Supply(config(t, "mem://stopped", namespace(t))))
	a.RequireStart()
	a.RequireStop()
	if err := a.health(context.Background()); !errors.Is(err, core.ErrNotStarted) {
		t.Fatalf("health after stop = %v, want ErrNotStarted", err)
	}
	if err := a.cache.Invalidate(context.Background(), "k"); !errors.Is(err, core.ErrClosed) {
		t.Fatalf("Invalidate after stop = %v, want ErrClosed", err)
	}
}

// TestStopDrains checks that OnStop publishes what was accepted before it.
func TestStopDrains(t *testing.T) {
	ns := namespace(t)
	hub := fxmodule.MemHub("drain")
	peer := hub.New(ns)
	got := make(chan struct{}, 100)
	if err := peer.Subscribe(context.Background(), core.HandlerFuncs{Message: func([]byte) { got <- struct{}{} }}); err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	cfg := config(t, "mem://drain", ns)
	cfg.HeartbeatInterval = 0
	a := newApp(t, fx.Supply(cfg))
	a.RequireStart()
	done := make(chan error, 1)
	go func() { done <- a.cache.Invalidate(context.Background(), "k") }()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.RequireStop()
	// Delivery to the peer runs on the hub's goroutine: published means
	// it arrives, not that it has arrived already.
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the invalidation accepted before stop was not published")
	}
}

func TestMisconfigurationFailsConstruction(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*fxmodule.Config)
		want []string
	}{
		{"bad URL", func(c *fxmodule.Config) { c.TransportURL = "localhost:6379" }, []string{"transport_url", "no scheme"}},
		{"unknown scheme", func(c *fxmodule.Config) { c.TransportURL = "kafka://x" }, []string{`"kafka"`, "registered"}},
		{"unknown parameter", func(c *fxmodule.Config) { c.TransportURL = "redis://127.0.0.1:6379?shard=true" }, []string{`"shard"`, "sharded"}},
		{"unknown store", func(c *fxmodule.Config) { c.Store.Name = "ristretto" }, []string{`"ristretto"`, "bigcache"}},
		{"invalid field", func(c *fxmodule.Config) { c.QueueSize = 0 }, []string{"QueueSize"}},
		{"payload limit too small", func(c *fxmodule.Config) { c.TransportURL = "mem://?max_payload=16" }, []string{"payload limit"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(t, "mem://misconfig-"+strings.ReplaceAll(tt.name, " ", "-"), "ns")
			tt.cfg(&cfg)
			app := fx.New(fxmodule.Module, fx.NopLogger, fx.Supply(cfg), fx.Invoke(func(*core.Cache) {}))
			err := app.Err()
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// silentServer accepts connections and never answers, like a broker
// behind a black hole. open reports the connections clients still hold.
func silentServer(t *testing.T) (addr string, open func() int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer n.Add(-1)
				_, _ = io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String(), func() int { return int(n.Load()) }
}

func TestUnreachableBrokerFailsStart(t *testing.T) {
	silent, open := silentServer(t)
	urls := []string{
		"redis://127.0.0.1:1", "rediss://127.0.0.1:1", "nats://127.0.0.1:1", "tls://127.0.0.1:1",
		"redis://" + silent, "nats://" + silent,
	}
	for _, u := range urls {
		t.Run(u, func(t *testing.T) {
			cfg := config(t, u, namespace(t))
			cfg.StartTimeout = time.Second
			app := fx.New(fxmodule.Module, fx.NopLogger, fx.Supply(cfg), fx.Invoke(func(*core.Cache) {}))
			if err := app.Err(); err != nil {
				t.Fatalf("construction must not dial: %v", err)
			}
			// The outer context is only a safety net: the start timeout
			// must end the start first.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			err := app.Start(ctx)
			if err == nil {
				_ = app.Stop(context.Background())
				t.Fatal("start succeeded")
			}
			if ctx.Err() != nil {
				t.Fatalf("start ended by the outer context, not the start timeout: %v", err)
			}
			if !strings.Contains(err.Error(), "backplane: start over "+u) {
				t.Errorf("error %q does not name the transport", err)
			}
			t.Logf("start error: %v", err)
			// A start that failed releases what it opened.
			eventually(t, "the failed start to close its connections", func() bool { return open() == 0 })
		})
	}
}

func TestStartTimeoutFromFxContext(t *testing.T) {
	cfg := config(t, "nats://127.0.0.1:1", namespace(t))
	cfg.StartTimeout = time.Hour
	app := fx.New(fxmodule.Module, fx.NopLogger, fx.Supply(cfg), fx.Invoke(func(*core.Cache) {}), fx.StartTimeout(500*time.Millisecond))
	if err := app.Start(context.Background()); err == nil {
		_ = app.Stop(context.Background())
		t.Fatal("start succeeded")
	}
}

// configSources returns the two options that supply a Config, one from the
// environment and one from a YAML file, on the same transport and
// namespace.
func configSources(t *testing.T, url, ns string) (fromEnv, fromYAML fx.Option) {
	t.Setenv("BACKPLANE_NAMESPACE", ns)
	t.Setenv("BACKPLANE_TRANSPORT_URL", url)
	t.Setenv("BACKPLANE_HEARTBEAT_INTERVAL", "200ms")
	t.Setenv("BACKPLANE_TTL", "1m")
	t.Setenv("BACKPLANE_START_TIMEOUT", "10s")
	path := writeFile(t, "backplane.yaml", fmt.Sprintf(`
namespace: %s
transport_url: %s
ttl: 1m
heartbeat_interval: 200ms
start_timeout: 10s
store:
  name: bigcache
  bigcache:
    shards: 16
    max_size_mb: 16
`, ns, url))
	return fxmodule.ConfigFromEnv("BACKPLANE_"), fxmodule.ConfigFromYAML(path)
}

func TestTwoAppsShareInvalidations(t *testing.T) {
	tests := []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"redis", func(t *testing.T) string { return testenv.RedisURL(t) + "?client_name=fxmodule-test" }},
		{"redis-sharded", func(t *testing.T) string { return testenv.RedisURL(t) + "?sharded=true" }},
		{"nats", func(t *testing.T) string { return testenv.NATSURL(t) + "?name=fxmodule-test" }},
		{"mem", func(*testing.T) string { return "mem://twoapps" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromEnv, fromYAML := configSources(t, tt.url(t), namespace(t))
			a := newApp(t, fromEnv)
			b := newApp(t, fromYAML)
			start(t, a)
			start(t, b)
			shareInvalidations(t, a, b)
		})
	}
}

func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Redis Cluster")
	}
	cluster := testenv.StartRedisCluster(t, 3)
	addrs := cluster.Addrs()
	// One node in the host, the others as addr parameters.
	u := "redis://" + addrs[0] + "?addr=" + strings.Join(addrs[1:], "&addr=")
	for _, sharded := range []string{"", "&sharded=false"} {
		ns := namespace(t)
		a := newApp(t, fx.Supply(config(t, u+sharded, ns)))
		b := newApp(t, fx.Supply(config(t, "redis://"+addrs[1]+"?cluster=true"+sharded, ns)))
		start(t, a)
		start(t, b)
		if got, want := a.bp.(*redistransport.Transport).Sharded(), sharded == ""; got != want {
			t.Errorf("sharded = %v, want %v", got, want)
		}
		shareInvalidations(t, a, b)
	}
}

func TestTLSParameters(t *testing.T) {
	t.Run("nats", func(t *testing.T) {
		srv := testenv.StartNATS(t, testenv.WithNATSTLS())
		u := srv.URL() + "?tls_ca=" + srv.CAFile()
		a := newApp(t, fx.Supply(config(t, u, namespace(t))))
		start(t, a)
		if err := a.health(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("redis", func(t *testing.T) {
		srv := testenv.StartRedisTLS(t)
		u := "rediss://" + srv.Addr() + "?tls_ca=" + srv.CAFile
		a := newApp(t, fx.Supply(config(t, u, namespace(t))))
		start(t, a)
		if err := a.health(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClientsFromGraph(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		url := testenv.RedisURL(t)
		opt, err := redis.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		client := redis.NewClient(opt)
		defer client.Close()
		ns := namespace(t)
		provide := fx.Options(fx.Provide(func() redis.UniversalClient { return client }), fxmodule.UseClient[redis.UniversalClient]())
		// The URL's address is ignored: the graph's client is used.
		a := newApp(t, provide, fx.Supply(config(t, "redis://unused.invalid:1", ns)))
		b := newApp(t, fx.Supply(config(t, url, ns)))
		start(t, a)
		start(t, b)
		shareInvalidations(t, a, b)
		a.RequireStop()
		if err := client.Ping(context.Background()).Err(); err != nil {
			t.Fatalf("the graph's client was closed: %v", err)
		}
	})
	t.Run("nats", func(t *testing.T) {
		url := testenv.NATSURL(t)
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ns := namespace(t)
		a := newApp(t, fx.Supply(nc), fxmodule.UseClient[*nats.Conn](), fx.Supply(config(t, "nats://unused.invalid:1", ns)))
		b := newApp(t, fx.Supply(config(t, url, ns)))
		start(t, a)
		start(t, b)
		shareInvalidations(t, a, b)
		a.RequireStop()
		if !nc.IsConnected() {
			t.Fatal("the graph's connection was closed")
		}
	})
	t.Run("postgres", func(t *testing.T) {
		url := testenv.PostgresURL(t)
		pool, err := pgxpool.New(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		ns := namespace(t)
		a := newApp(t, fx.Supply(pool), fxmodule.UseClient[*pgxpool.Pool](), fx.Supply(config(t, "postgres://unused.invalid:1/x", ns)))
		b := newApp(t, fx.Supply(config(t, url, ns)))
		start(t, a)
		start(t, b)
		shareInvalidations(t, a, b)
		a.RequireStop()
		if err := pool.Ping(context.Background()); err != nil {
			t.Fatalf("the graph's pool was closed: %v", err)
		}
	})
}

// A *core.Keyring in the graph signs what the Module's cache publishes:
// apps with the same keys share invalidations, and an app without them is
// not listened to.
func TestKeyringFromGraph(t *testing.T) {
	ns := namespace(t)
	kr, err := core.NewKeyring(core.SigningKey{ID: "k1", Secret: []byte("0123456789abcdef0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	a := newApp(t, fx.Supply(config(t, "mem://keyring", ns)), fx.Supply(kr))
	b := newApp(t, fx.Supply(config(t, "mem://keyring", ns)), fx.Supply(kr))
	// Without heartbeats the unsigned app publishes nothing but the
	// invalidation below, so a rejection on a is that invalidation's.
	quiet := config(t, "mem://keyring", ns)
	quiet.HeartbeatInterval = 0
	unsigned := newApp(t, fx.Supply(quiet))
	start(t, a)
	start(t, b)
	start(t, unsigned)
	shareInvalidations(t, a, b)

	ctx := context.Background()
	if err := a.cache.Set("k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := unsigned.cache.Invalidate(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the unsigned message to be rejected", func() bool { return a.cache.Stats().Rejected > 0 })
	if _, ok := a.cache.Get("k"); !ok {
		t.Fatal("an unsigned invalidation evicted a key on a signing app")
	}
}

func TestHealthErrorStates(t *testing.T) {
	ok := core.Health{Started: true, Connected: true}
	tests := []struct {
		name string
		h    core.Health
		want error
	}{
		{"healthy", ok, nil},
		{"not started", core.Health{}, core.ErrNotStarted},
		{"disconnected", core.Health{Started: true}, fxmodule.ErrDisconnected},
		{"silent", core.Health{Started: true, Connected: true, Silent: true}, fxmodule.ErrSilent},
		{"sync broken", core.Health{Started: true, Connected: true, SyncBroken: true}, fxmodule.ErrSyncBroken},
	}
	for _, tt := range tests {
		err := fxmodule.HealthError(tt.h)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if (err == nil) != tt.h.Healthy() {
			t.Errorf("%s: health check %v disagrees with Health.Healthy() = %v", tt.name, err, tt.h.Healthy())
		}
	}
}
