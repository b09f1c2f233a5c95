package fxmodule_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"go.uber.org/fx"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
)

// Two instances of a service, each an fx application with the Module, on
// the process-wide in-memory hub "example". In production the transport URL
// would be redis://... or nats://..., from the environment or a file.
func Example() {
	ctx := context.Background()
	cfg := fxmodule.DefaultConfig()
	cfg.Namespace = "orders"
	cfg.TransportURL = "mem://example"

	newInstance := func() (*fx.App, *core.Cache) {
		var c *core.Cache
		app := fx.New(
			fx.NopLogger,
			fx.Supply(cfg),
			fxmodule.Module,
			fx.Populate(&c),
		)
		if err := app.Start(ctx); err != nil {
			log.Fatal(err)
		}
		return app, c
	}
	appA, a := newInstance()
	appB, b := newInstance()
	defer appA.Stop(ctx)
	defer appB.Stop(ctx)

	price := "9.50"
	load := func(context.Context) ([]byte, error) { return []byte(price), nil }

	v, _ := a.GetOrLoad(ctx, "order:7", load)
	fmt.Println("a caches", string(v))

	price = "12.00"                                      // b updates the database...
	if err := b.Invalidate(ctx, "order:7"); err != nil { // ...and invalidates everywhere
		log.Fatal(err)
	}
	for { // the invalidation reaches a asynchronously
		if _, ok := a.Get("order:7"); !ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	v, _ = a.GetOrLoad(ctx, "order:7", load)
	fmt.Println("a reloads", string(v))
	// Output:
	// a caches 9.50
	// a reloads 12.00
}

func ExampleLoadYAML() {
	cfg, err := fxmodule.LoadYAML(strings.NewReader(`
namespace: orders
transport_url: redis://cache.internal:6379/0?sharded=false
ttl: 5m
on_reconnect: flush
store:
  name: bigcache
  bigcache:
    max_size_mb: 64
`))
	if err != nil {
		log.Fatal(err)
	}
	o := cfg.CoreOptions()
	fmt.Println(cfg.Namespace, cfg.RedactedTransportURL())
	fmt.Println("ttl", o.TTL, "on reconnect", o.OnReconnect, "store MiB", cfg.Store.BigCache.BigCache().HardMaxCacheSize)

	_, err = fxmodule.LoadYAML(strings.NewReader("namespace: orders\nttl: 5 minutes\n"))
	fmt.Println(err)
	// Output:
	// orders redis://cache.internal:6379/0?sharded=false
	// ttl 5m0s on reconnect flush store MiB 64
	// backplane: invalid option: yaml line 2: ttl: "5 minutes" is not a duration (like 500ms, 5s or 10m): time: unknown unit " minutes" in duration "5 minutes"
}

func ExampleOpenBackplane() {
	_, err := fxmodule.OpenBackplane(context.Background(), "redis://127.0.0.1:6379?shard=true", "orders")
	fmt.Println(err)
	// Output:
	// fxmodule: open redis://127.0.0.1:6379?shard=true: backplane: unknown parameter "shard" for redis:// (valid: addr, channel_prefix, client_name, cluster, concurrent_publish, conn_max_idle_time, conn_max_lifetime, db, dial_timeout, health_check_interval, health_check_timeout, max_active_conns, max_idle_conns, max_payload, max_redirects, max_retries, max_retry_backoff, maxlen, min_idle_conns, min_retry_backoff, mode, namespace, pool_fifo, pool_size, pool_timeout, protocol, read_only, read_timeout, replay, retention, route_by_latency, route_randomly, sharded, skip_verify, tls_ca, tls_cert, tls_key, tls_server_name, write_timeout)
}
