package core_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// Two instances of a service share one backplane. An update on one evicts
// the entry on the other.
func Example() {
	ctx := context.Background()
	hub := memtransport.NewHub() // in production: redistransport, natstransport, ...

	newInstance := func() *core.Cache {
		store, err := bigcachestore.New(bigcachestore.DefaultConfig())
		if err != nil {
			log.Fatal(err)
		}
		c, err := core.Open(ctx, store, hub.New("catalog"), core.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	a, b := newInstance(), newInstance()
	defer a.Close()
	defer b.Close()

	price := "9.50" // the source of truth, e.g. a database row
	loadPrice := func(context.Context) ([]byte, error) { return []byte(price), nil }

	v, _ := b.GetOrLoad(ctx, "price:lamp", loadPrice)
	fmt.Println("b reads", string(v))

	price = "12.00" // a writes the database, then invalidates
	if err := a.Invalidate(ctx, "price:lamp"); err != nil {
		log.Fatal(err)
	}
	for { // the message reaches b within a millisecond or so
		if _, ok := b.Get("price:lamp"); !ok {
			break
		}
		time.Sleep(time.Millisecond)
	}
	v, _ = b.GetOrLoad(ctx, "price:lamp", loadPrice)
	fmt.Println("b reads", string(v))
	// Output:
	// b reads 9.50
	// b reads 12.00
}

// Typed views encode values with the cache's codec (JSON by default).
func ExampleTyped() {
	ctx := context.Background()
	store, _ := bigcachestore.New(bigcachestore.DefaultConfig())
	c, err := core.Open(ctx, store, memtransport.NewHub().New("shop"), core.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	type Product struct {
		SKU   string
		Price float64
	}
	products := core.NewTyped[Product](c)
	p, err := products.GetOrLoad(ctx, "product:7", func(context.Context) (Product, error) {
		return Product{SKU: "lamp-7", Price: 9.5}, nil // from the database
	})
	fmt.Println(p, err)
	cached, ok, _ := products.Get("product:7")
	fmt.Println(cached.SKU, ok)
	// Output:
	// {lamp-7 9.5} <nil>
	// lamp-7 true
}

// Options come as a struct (for configuration) or as functions.
func ExampleNew() {
	opts := core.DefaultOptions()
	opts.TTL = 5 * time.Minute
	opts.HeartbeatInterval = 500 * time.Millisecond
	store, _ := bigcachestore.New(bigcachestore.DefaultConfig())
	c, err := core.New(store, memtransport.NewHub().New("app"),
		core.WithOptions(opts),
		core.WithPolicies(core.PolicyFlush, core.PolicyFlush, core.PolicyKeep),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	_, err = core.New(store, memtransport.NewHub().New("app"), core.WithTTL(time.Minute, 1.5))
	fmt.Println(err)
	// Output:
	// backplane: invalid option: TTLJitter 1.5 is outside [0, 1)
}
