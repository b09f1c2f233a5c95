package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// Product is what the service caches.
type Product struct {
	ID       string
	Category string
	Price    float64
}

func main() {
	url := "redis://127.0.0.1:6379/0"
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, url, newDB()); err != nil {
		log.Fatal(err)
	}
	fmt.Println("read, updated and invalidated product:42")
}

// listShoes caches a listing under a tag and, on a write of a product it
// lists, invalidates the tag: README's section on tags quotes it.
func listShoes(ctx context.Context, cache *core.Cache, db *DB) error {
	lists := core.NewTyped[[]Product](cache)
	shoes, err := lists.GetOrLoadWithTags(ctx, "list:shoes:page:1", []string{"category:shoes"}, func(ctx context.Context) ([]Product, error) {
		return db.ListCategory(ctx, "shoes")
	})
	if err != nil {
		return err
	}

	// on write of a product in that category:
	shoes[0].Price = 80
	if err := db.UpdateProduct(ctx, shoes[0]); err != nil {
		return err
	}
	return cache.InvalidateTags(ctx, "category:shoes") // every replica stops serving every entry under it
}

func run(ctx context.Context, redisURL string, db *DB) error {
	store, err := bigcachestore.New(bigcachestore.DefaultConfig())
	if err != nil {
		return err
	}
	bp, err := redistransport.Open(redisURL, "catalog") // no I/O yet
	if err != nil {
		store.Close()
		return err
	}
	cache, err := core.Open(ctx, store, bp) // subscribes; returns once delivery is active
	if err != nil {
		return err // the broker is unreachable or the URL is wrong; store and bp are closed
	}
	defer cache.Close() // drains pending invalidations

	products := core.NewTyped[Product](cache)
	p, err := products.GetOrLoad(ctx, "product:42", func(ctx context.Context) (Product, error) {
		return db.LoadProduct(ctx, "product:42") // on a miss; the result is cached
	})
	if err != nil {
		return err
	}

	// on write: the database first, then every replica evicts the key
	p.Price = 12
	if err := db.UpdateProduct(ctx, p); err != nil {
		return err
	}
	return cache.Invalidate(ctx, "product:42") // returns once the broker has it
}

// DB stands in for the service's database.
type DB struct {
	mu       sync.Mutex
	products map[string]Product
	loads    int
}

func newDB() *DB {
	return &DB{products: map[string]Product{
		"product:42": {ID: "product:42", Category: "lamps", Price: 9.5},
		"product:7":  {ID: "product:7", Category: "shoes", Price: 75},
	}}
}

// LoadProduct reads a product.
func (db *DB) LoadProduct(_ context.Context, id string) (Product, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.loads++
	p, ok := db.products[id]
	if !ok {
		return Product{}, fmt.Errorf("no product %s", id)
	}
	return p, nil
}

// ListCategory reads the products of a category, by ID.
func (db *DB) ListCategory(_ context.Context, category string) ([]Product, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.loads++
	var out []Product
	for _, p := range db.products {
		if p.Category == category {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b Product) int { return strings.Compare(a.ID, b.ID) })
	if len(out) == 0 {
		return nil, fmt.Errorf("no products in %s", category)
	}
	return out, nil
}

// UpdateProduct writes a product.
func (db *DB) UpdateProduct(_ context.Context, p Product) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.products[p.ID] = p
	return nil
}
