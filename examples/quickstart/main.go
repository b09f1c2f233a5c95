package main

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

type product struct {
	SKU   string
	Price float64
}

func main() {
	ctx := context.Background()
	hub := memtransport.NewHub()
	db := map[string]product{"product:7": {SKU: "lamp-7", Price: 9.50}}
	load := func(ctx context.Context) (product, error) { return db["product:7"], nil }

	open := func() *core.Cache {
		store, err := bigcachestore.New(bigcachestore.DefaultConfig())
		if err != nil {
			log.Fatal(err)
		}
		c, err := core.Open(ctx, store, hub.New("shop"))
		if err != nil {
			log.Fatal(err)
		}
		return c
	}
	a, b := open(), open()
	defer a.Close()
	defer b.Close()
	pb := core.NewTyped[product](b)

	p, _ := pb.GetOrLoad(ctx, "product:7", load)
	fmt.Printf("instance b caches %+v\n", p)

	db["product:7"] = product{SKU: "lamp-7", Price: 12.00} // instance a updates the database...
	start := time.Now()
	if err := a.Invalidate(ctx, "product:7"); err != nil { // ...then invalidates everywhere
		log.Fatal(err)
	}
	for {
		if _, ok, _ := pb.Get("product:7"); !ok {
			break
		}
		time.Sleep(50 * time.Microsecond)
	}
	fmt.Printf("instance b evicted it %v after a's Invalidate started\n", time.Since(start).Round(time.Microsecond))
	p, _ = pb.GetOrLoad(ctx, "product:7", load)
	fmt.Printf("instance b now reads %+v\n", p)
}
