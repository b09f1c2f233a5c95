package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/examples/catalog/catalog"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// Two instances share a database and an in-process backplane: an update
// through one is read fresh through the other.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "catalog-example-")
	defer os.RemoveAll(dir)
	cfg := catalog.Config{Driver: catalog.DriverSQLite, DSN: filepath.Join(dir, "catalog.db")}
	hub := memtransport.NewHub()
	defer hub.Close()

	start := func() (*httptest.Server, func()) {
		db, err := catalog.Open(ctx, cfg)
		if err != nil {
			log.Fatal(err)
		}
		if err := db.Seed(ctx, 10); err != nil {
			log.Fatal(err)
		}
		store, _ := bigcachestore.New(bigcachestore.DefaultConfig())
		cache, err := core.Open(ctx, store, hub.New("catalog"))
		if err != nil {
			log.Fatal(err)
		}
		srv := httptest.NewServer(catalog.New(db, cache))
		return srv, func() { srv.Close(); cache.Close(); db.Close() }
	}
	a, stopA := start()
	defer stopA()
	b, stopB := start()
	defer stopB()

	read := func(srv *httptest.Server) (catalog.Product, string) {
		resp, err := http.Get(srv.URL + "/products/7")
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		var p catalog.Product
		_ = json.NewDecoder(resp.Body).Decode(&p)
		return p, resp.Header.Get("X-Cache")
	}
	read(b) // b caches product 7
	p, how := read(b)
	fmt.Printf("b: version %d, %d cents (%s)\n", p.Version, p.PriceCents, how)

	req, _ := http.NewRequest(http.MethodPut, a.URL+"/products/7", strings.NewReader(`{"price_cents": 1250}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	resp.Body.Close()

	// The invalidation reaches b within microseconds; poll briefly.
	deadline := time.Now().Add(5 * time.Second)
	for p, how = read(b); p.Version < 2 && time.Now().Before(deadline); p, how = read(b) {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("b: version %d, %d cents (%s)\n", p.Version, p.PriceCents, how)
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// b: version 1, 700 cents (hit)
	// b: version 2, 1250 cents (miss)
}
