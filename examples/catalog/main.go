package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/examples/catalog/catalog"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports"

	// The schemes the catalog speaks: nats://, tls://, redis://, rediss://.
	_ "github.com/backplane-go/backplane/transports/natstransport"
	_ "github.com/backplane-go/backplane/transports/redistransport"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func main() {
	addr := flag.String("addr", env("CATALOG_ADDR", "127.0.0.1:8080"), "listen address")
	sqlitePath := flag.String("sqlite", env("CATALOG_SQLITE", filepath.Join(os.TempDir(), "backplane-catalog.db")), "SQLite database file, shared by the instances on this machine")
	pgDSN := flag.String("postgres", env("CATALOG_POSTGRES", ""), "PostgreSQL DSN (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable); overrides -sqlite")
	transport := flag.String("transport", env("BACKPLANE_TRANSPORT_URL", "nats://127.0.0.1:4222"), "backplane URL (nats://, tls://, redis://, rediss://)")
	namespace := flag.String("namespace", env("BACKPLANE_NAMESPACE", "catalog"), "backplane namespace")
	table := flag.String("table", env("CATALOG_TABLE", catalog.DefaultTable), "products table")
	storeName := flag.String("store", env("CATALOG_STORE", "bigcache"), "local store: bigcache or otter")
	seed := flag.Int("seed", 100, "products to create if missing")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, *sqlitePath, *pgDSN, *table, *transport, *namespace, *storeName, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "catalog:", err)
		os.Exit(1)
	}
}

// newStore opens the local store called name.
func newStore(name string) (core.LocalStore, error) {
	switch name {
	case "bigcache":
		return bigcachestore.New(bigcachestore.DefaultConfig())
	case "otter":
		return otterstore.New(otterstore.DefaultConfig())
	}
	return nil, fmt.Errorf("unknown store %q (bigcache or otter)", name)
}

func run(ctx context.Context, addr, sqlitePath, pgDSN, table, transport, namespace, storeName string, seed int) error {
	store, err := newStore(storeName)
	if err != nil {
		return err
	}
	cfg := catalog.Config{Driver: catalog.DriverSQLite, DSN: sqlitePath, Table: table}
	if pgDSN != "" {
		cfg = catalog.Config{Driver: catalog.DriverPostgres, DSN: pgDSN, Table: table}
	}
	openCtx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	db, err := catalog.Open(openCtx, cfg)
	if err != nil {
		_ = store.Close()
		return err
	}
	defer db.Close()
	if err := db.Seed(openCtx, seed); err != nil {
		_ = store.Close()
		return err
	}

	bp, err := transports.Open(openCtx, transport, namespace) // no I/O yet
	if err != nil {
		_ = store.Close()
		return err // an unknown scheme or parameter; the error lists the valid ones
	}
	cache, err := core.Open(openCtx, store, bp)
	if err != nil {
		return fmt.Errorf("connect to the backplane (is a broker running at %s?): %w", transport, err)
	}
	defer cache.Close()

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: catalog.New(db, cache), ReadHeaderTimeout: 5 * time.Second}
	slog.Info("catalog: serving", "addr", ln.Addr().String(), "database", cfg.Driver, "namespace", namespace, "store", storeName)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutCtx, cancelShut := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelShut()
	if err := srv.Shutdown(shutCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
