package main

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/examples/catalog/catalog"
	"github.com/backplane-go/backplane/examples/catalog/internal/pgtest"
	"github.com/backplane-go/backplane/internal/testenv"
)

// bin is the catalog binary built by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "catalog-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "catalog")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

var client = &http.Client{Timeout: 10 * time.Second}

// startProcess runs one catalog process and waits until it is healthy.
func startProcess(t *testing.T, args ...string) string {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	cmd := exec.Command(bin, append([]string{"-addr", addr, "-seed", "20"}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	url := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(url + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return url
			}
		}
		select {
		case <-exited:
			t.Fatalf("catalog %v exited:\n%s", args, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("catalog %v not healthy within 30s:\n%s", args, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func product(t *testing.T, url string, id int) catalog.Product {
	t.Helper()
	resp, err := client.Get(fmt.Sprintf("%s/products/%d", url, id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p catalog.Product
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/products/%d: %s", url, id, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestProcesses runs three catalog processes on one database and one
// broker, updates through one and reads fresh through all.
func TestProcesses(t *testing.T) {
	defer client.CloseIdleConnections()
	for _, tc := range []struct{ name, broker, db, store string }{
		{"nats-sqlite", "nats", "sqlite", "bigcache"},
		{"redis-postgres", "redis", "postgres", "bigcache"},
		{"nats-sqlite-otter", "nats", "sqlite", "otter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := []string{"-store", tc.store}
			switch tc.broker {
			case "nats":
				args = append(args, "-transport", testenv.StartNATS(t).URL())
			case "redis":
				args = append(args, "-transport", testenv.RedisURL(t))
			}
			b := make([]byte, 6)
			_, _ = rand.Read(b)
			args = append(args, "-namespace", "catalog-test-"+hex.EncodeToString(b))
			switch tc.db {
			case "sqlite":
				args = append(args, "-sqlite", filepath.Join(t.TempDir(), "catalog.db"))
			case "postgres":
				dsn := pgtest.DSN(t)
				table := "catalog_proc_test_" + hex.EncodeToString(b)
				args = append(args, "-postgres", dsn, "-table", table)
				t.Cleanup(func() {
					if db, err := sql.Open("pgx", dsn); err == nil {
						_, _ = db.Exec("DROP TABLE IF EXISTS " + table)
						_ = db.Close()
					}
				})
			}
			// The first process creates and seeds the table alone.
			urls := []string{startProcess(t, args...)}
			urls = append(urls, startProcess(t, args...), startProcess(t, args...))
			for _, u := range urls {
				if p := product(t, u, 3); p.Version != 1 {
					t.Fatalf("%s: product 3 at version %d, want 1", u, p.Version)
				}
			}
			req, _ := http.NewRequest(http.MethodPut, urls[1]+"/products/3", bytes.NewBufferString(`{"name": "desk lamp", "price_cents": 4200}`))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("PUT: %s", resp.Status)
			}
			for _, u := range urls {
				deadline := time.Now().Add(5 * time.Second)
				for {
					p := product(t, u, 3)
					if p.Version == 2 && p.Name == "desk lamp" && p.PriceCents == 4200 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%s still serves %+v 5s after the update", u, p)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}
