package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/fx"
	"go.uber.org/fx/fxtest"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/internal/testenv"

	// The tests run the service over Redis too.
	_ "github.com/backplane-go/backplane/transports/redistransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// instance runs one instance of the service in process over db and returns
// its base URL.
func instance(t *testing.T, db *DB) string {
	t.Helper()
	var h http.Handler
	app := fxtest.New(t, fx.NopLogger, fx.Supply(db), Service, fx.Populate(&h))
	app.RequireStart()
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		app.RequireStop()
	})
	return srv.URL
}

func do(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func getItem(t *testing.T, base, id string) Item {
	t.Helper()
	code, body := do(t, http.MethodGet, base+"/items/"+id, "")
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", id, code, body)
	}
	var it Item
	if err := json.Unmarshal([]byte(body), &it); err != nil {
		t.Fatal(err)
	}
	return it
}

func TestTwoInstances(t *testing.T) {
	transports := map[string]func(t *testing.T) string{
		"mem":   func(*testing.T) string { return "mem://fxservice-test" },
		"redis": func(t *testing.T) string { return testenv.RedisURL(t) },
		"nats":  func(t *testing.T) string { return testenv.NATSURL(t) },
	}
	for name, url := range transports {
		t.Run(name, func(t *testing.T) {
			t.Setenv("BACKPLANE_TRANSPORT_URL", url(t))
			t.Setenv("BACKPLANE_NAMESPACE", fmt.Sprintf("fxservice-%d", time.Now().UnixNano()))
			db := NewDB() // the instances share one database
			a, b := instance(t, db), instance(t, db)

			for _, base := range []string{a, b} {
				if code, body := do(t, http.MethodGet, base+"/readyz", ""); code != http.StatusOK {
					t.Fatalf("readyz: %d %s", code, body)
				}
			}
			if code, _ := do(t, http.MethodGet, b+"/items/7", ""); code != http.StatusNotFound {
				t.Fatalf("absent item: %d", code)
			}
			if code, body := do(t, http.MethodPut, a+"/items/7", `{"name":"lamp","price":9.5}`); code != http.StatusNoContent {
				t.Fatalf("PUT: %d %s", code, body)
			}
			if it := getItem(t, b, "7"); it.Price != 9.5 {
				t.Fatalf("b serves %+v", it)
			}
			// b caches the item. The PUT's invalidation may still be on its
			// way to b and evict the first fill (or keep it from being
			// cached), so poll until a GET is served without the database.
			deadline := time.Now().Add(10 * time.Second)
			for {
				reads := db.Reads()
				if it := getItem(t, b, "7"); it.Price != 9.5 {
					t.Fatalf("b serves %+v", it)
				}
				if db.Reads() == reads {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("b never served the item from its cache")
				}
				time.Sleep(5 * time.Millisecond)
			}

			// An update through a is read fresh on b once the invalidation
			// has arrived there.
			if code, body := do(t, http.MethodPut, a+"/items/7", `{"name":"lamp","price":12}`); code != http.StatusNoContent {
				t.Fatalf("PUT: %d %s", code, body)
			}
			deadline = time.Now().Add(10 * time.Second)
			for getItem(t, b, "7").Price != 12 {
				if time.Now().After(deadline) {
					t.Fatal("b still serves the old item")
				}
				time.Sleep(5 * time.Millisecond)
			}

			if code, _ := do(t, http.MethodPut, a+"/items/7", `not json`); code != http.StatusBadRequest {
				t.Fatalf("bad body: %d", code)
			}
		})
	}
}

func TestLoadConfigFromEnv(t *testing.T) {
	t.Setenv("BACKPLANE_TRANSPORT_URL", "")
	cfg, err := loadConfig()
	if err == nil || !strings.Contains(err.Error(), "BACKPLANE_TRANSPORT_URL") {
		t.Fatalf("empty transport URL: %+v, %v; want an error naming BACKPLANE_TRANSPORT_URL", cfg, err)
	}
	t.Setenv("BACKPLANE_TRANSPORT_URL", "nats://127.0.0.1:4222")
	t.Setenv("BACKPLANE_TTL", "1m")
	cfg, err = loadConfig()
	if err != nil || cfg.TransportURL != "nats://127.0.0.1:4222" || cfg.TTL != time.Minute || cfg.Namespace != "fxservice" {
		t.Fatalf("loadConfig = %+v, %v", cfg, err)
	}
}

func TestServe(t *testing.T) {
	t.Setenv("ADDR", "127.0.0.1:0")
	t.Setenv("BACKPLANE_TRANSPORT_URL", "mem://serve-test")
	app := fxtest.New(t, fx.NopLogger, fx.Provide(NewDB), Service, fx.Invoke(serve))
	app.RequireStart()
	app.RequireStop()
}

// The service links the SDK of the transport it imports (NATS) and of no
// other: fxmodule registers no scheme but mem://.
func TestLinksOnlyItsTransport(t *testing.T) {
	if testing.Short() {
		t.Skip("go list in -short mode")
	}
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	has := func(prefix string) bool {
		return slices.ContainsFunc(deps, func(d string) bool { return strings.HasPrefix(d, prefix) })
	}
	for _, p := range []string{"github.com/nats-io/nats.go", "go.uber.org/fx", "github.com/backplane-go/backplane/transports/natstransport"} {
		if !has(p) {
			t.Errorf("the service does not link %s", p)
		}
	}
	for _, p := range []string{
		"github.com/Azure/", "github.com/redis/go-redis", "github.com/nats-io/nats-server",
		"github.com/backplane-go/backplane/transports/redistransport",
		"github.com/backplane-go/backplane/transports/servicebustransport",
		"github.com/backplane-go/backplane/transports/pgtransport",
		"modernc.org/sqlite", "github.com/jackc/",
		"github.com/rabbitmq/amqp091-go", "github.com/backplane-go/backplane/transports/rabbitmqtransport",
	} {
		if has(p) {
			t.Errorf("the service links %s", p)
		}
	}
}
