package catalog_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/examples/catalog/catalog"
	"github.com/backplane-go/backplane/examples/catalog/internal/pgtest"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports"
	_ "github.com/backplane-go/backplane/transports/memtransport"
	_ "github.com/backplane-go/backplane/transports/natstransport"
	_ "github.com/backplane-go/backplane/transports/redistransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func randomName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// openDB opens the database of kind ("sqlite" or "postgres") on a table of
// its own, seeded with 20 products.
func openDB(t *testing.T, kind string) catalog.Config {
	t.Helper()
	cfg := catalog.Config{Driver: catalog.DriverSQLite, DSN: filepath.Join(t.TempDir(), "catalog.db")}
	if kind == catalog.DriverPostgres {
		cfg = catalog.Config{Driver: catalog.DriverPostgres, DSN: pgtest.DSN(t), Table: randomName("catalog_test_")}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := catalog.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Seed(ctx, 20); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if kind == catalog.DriverPostgres {
			_ = db.DropTable(ctx)
		}
		_ = db.Close()
	})
	return cfg
}

// instance is one running catalog service.
type instance struct {
	srv   *httptest.Server
	cache *core.Cache
}

// startInstance runs a catalog instance with its own database handle and
// its own connection to the broker.
func startInstance(t *testing.T, cfg catalog.Config, url, ns string) *instance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	db, err := catalog.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	bp, err := transports.Open(ctx, url, ns)
	if err != nil {
		t.Fatal(err)
	}
	scfg := bigcachestore.DefaultConfig()
	scfg.Shards, scfg.HardMaxCacheSize = 16, 16
	store, err := bigcachestore.New(scfg)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := core.Open(ctx, store, bp)
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{srv: httptest.NewServer(catalog.New(db, cache)), cache: cache}
	t.Cleanup(func() {
		in.srv.Close()
		_ = cache.Close()
		_ = db.Close()
	})
	return in
}

var client = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, in *instance, id int64) (catalog.Product, string) {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("%s/products/%d", in.srv.URL, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET product %d: status %s", id, resp.Status)
	}
	var p catalog.Product
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p, resp.Header.Get("X-Cache")
}

func cheapest(t *testing.T, in *instance, n int) ([]catalog.Product, string) {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("%s/listings/cheapest?n=%d", in.srv.URL, n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET listing: status %s", resp.Status)
	}
	var ps []catalog.Product
	if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
		t.Fatal(err)
	}
	return ps, resp.Header.Get("X-Cache")
}

func put(t *testing.T, in *instance, id int64, body string) (catalog.Product, int) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/products/%d", in.srv.URL, id), bytes.NewBufferString(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p catalog.Product
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
			t.Fatal(err)
		}
	}
	return p, resp.StatusCode
}

// TestEndToEnd runs three instances over a real broker and database,
// updates products through one and checks that every instance reads the
// new version, and never an older one afterwards.
func TestEndToEnd(t *testing.T) {
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		name, db, broker string
	}{
		{"nats-sqlite", catalog.DriverSQLite, "embedded-nats"},
		{"redis-sqlite", catalog.DriverSQLite, "redis"},
		{"nats-postgres", catalog.DriverPostgres, "embedded-nats"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var url string
			switch tc.broker {
			case "embedded-nats":
				url = testenv.StartNATS(t).URL()
			case "redis":
				url = testenv.RedisURL(t)
			}
			cfg := openDB(t, tc.db)
			ns := randomName("catalog-test-")
			ins := []*instance{startInstance(t, cfg, url, ns), startInstance(t, cfg, url, ns), startInstance(t, cfg, url, ns)}

			for id := int64(1); id <= 5; id++ {
				for i, in := range ins {
					p, _ := get(t, in, id)
					if p.Version != 1 {
						t.Fatalf("instance %d: product %d version %d, want 1", i, id, p.Version)
					}
					if _, how := get(t, in, id); how != "hit" {
						t.Fatalf("instance %d: second read of product %d was a %q, want a hit", i, id, how)
					}
				}
			}
			for round := int64(1); round <= 3; round++ {
				writer := ins[int(round)%len(ins)]
				for id := int64(1); id <= 5; id++ {
					p, status := put(t, writer, id, fmt.Sprintf(`{"price_cents": %d}`, 1000*round+id))
					if status != http.StatusOK || p.Version != round+1 {
						t.Fatalf("PUT product %d: status %d, version %d, want 200 and %d", id, status, p.Version, round+1)
					}
				}
				for id := int64(1); id <= 5; id++ {
					for i, in := range ins {
						waitVersion(t, in, i, id, round+1, 1000*round+id)
					}
				}
			}
			// Every instance caches the listing of the 3 cheapest.
			for i, in := range ins {
				cheapest(t, in, 3)
				if _, how := cheapest(t, in, 3); how != "hit" {
					t.Fatalf("instance %d: second read of the listing was a %q, want a hit", i, how)
				}
			}
			// Make product 5 the cheapest through one instance: every
			// instance's listing shows it, though the writer never named
			// the listing's key.
			if _, status := put(t, ins[0], 5, `{"price_cents": 1}`); status != http.StatusOK {
				t.Fatalf("PUT product 5: status %d", status)
			}
			for i, in := range ins {
				deadline := time.Now().Add(5 * time.Second)
				for {
					ps, _ := cheapest(t, in, 3)
					if len(ps) > 0 && ps[0].ID == 5 && ps[0].PriceCents == 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("instance %d: the listing still starts with %+v after 5s", i, ps)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}

// waitVersion polls in until product id reads at version want, failing on a
// version that goes backwards or on the deadline.
func waitVersion(t *testing.T, in *instance, i int, id, want, price int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var last int64
	for {
		p, _ := get(t, in, id)
		if p.Version < last {
			t.Fatalf("instance %d: product %d went back from version %d to %d", i, id, last, p.Version)
		}
		last = p.Version
		if p.Version == want {
			if p.PriceCents != price {
				t.Fatalf("instance %d: product %d version %d has price %d, want %d", i, id, want, p.PriceCents, price)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %d: product %d still at version %d after 5s, want %d", i, id, p.Version, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHTTPErrors(t *testing.T) {
	defer client.CloseIdleConnections()
	cfg := openDB(t, catalog.DriverSQLite)
	in := startInstance(t, cfg, "mem://"+randomName("hub"), "catalog")
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{http.MethodGet, "/products/abc", "", http.StatusBadRequest},
		{http.MethodGet, "/products/0", "", http.StatusBadRequest},
		{http.MethodGet, "/products/999", "", http.StatusNotFound},
		{http.MethodPut, "/products/999", `{"name": "x"}`, http.StatusNotFound},
		{http.MethodPut, "/products/1", `{}`, http.StatusBadRequest},
		{http.MethodPut, "/products/1", `{"price": 3}`, http.StatusBadRequest},
		{http.MethodPut, "/products/1", `not json`, http.StatusBadRequest},
		{http.MethodPut, "/products/1", `{"name": "lamp"}`, http.StatusOK},
		{http.MethodDelete, "/products/1", "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/healthz", "", http.StatusOK},
	} {
		req, err := http.NewRequest(tc.method, in.srv.URL+tc.path, bytes.NewBufferString(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s %s: status %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.want)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []catalog.Config{
		{Driver: "oracle", DSN: "x"},
		{Driver: catalog.DriverSQLite},
		{Driver: catalog.DriverPostgres},
		{Driver: catalog.DriverSQLite, DSN: filepath.Join(t.TempDir(), "x.db"), Table: "Robert'); DROP TABLE x;--"},
	} {
		if db, err := catalog.Open(ctx, cfg); err == nil {
			_ = db.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
}

// TestReadYourWrites: after PUT ?ack=1 returns, every instance reads the
// new version at once, without waiting for the invalidation.
func TestReadYourWrites(t *testing.T) {
	defer client.CloseIdleConnections()
	url := testenv.RedisURL(t)
	cfg := openDB(t, catalog.DriverSQLite)
	ns := randomName("catalog-ack-")
	ins := []*instance{startInstance(t, cfg, url, ns), startInstance(t, cfg, url, ns), startInstance(t, cfg, url, ns)}
	for round := int64(1); round <= 3; round++ {
		for i, in := range ins {
			if p, _ := get(t, in, 1); p.Version != round {
				t.Fatalf("instance %d: version %d before update %d", i, p.Version, round)
			}
		}
		req, err := http.NewRequest(http.MethodPut, ins[int(round)%3].srv.URL+"/products/1?ack=1", bytes.NewBufferString(`{"price_cents": 777}`))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Invalidation") != "confirmed" {
			t.Fatalf("PUT ?ack=1: status %d, X-Invalidation %q", resp.StatusCode, resp.Header.Get("X-Invalidation"))
		}
		for i, in := range ins {
			if p, _ := get(t, in, 1); p.Version != round+1 {
				t.Fatalf("instance %d right after PUT ?ack=1 returned: version %d, want %d", i, p.Version, round+1)
			}
		}
	}
}
