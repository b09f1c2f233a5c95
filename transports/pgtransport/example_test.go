package pgtransport_test

import (
	"context"
	"log"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/pgtransport"
)

// An engine over the pool the application already has: the transport
// publishes through it, listens on a connection of its own, and leaves the
// pool open.
func ExampleNew() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app:secret@db.internal:5432/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	bp, err := pgtransport.New(pool, "orders")
	if err != nil {
		log.Fatal(err)
	}
	store, err := otterstore.New(otterstore.DefaultConfig())
	if err != nil {
		log.Fatal(err)
	}
	openCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cache, err := core.Open(openCtx, store, bp) // closes bp and store in Close
	if err != nil {
		log.Fatal(err)
	}
	defer cache.Close()
}

// Opening by URL, as fxmodule does with transport_url: the transport
// makes a pool of its own and closes it in Close.
func ExampleOpen() {
	bp, err := transports.Open(context.Background(),
		"postgres://app:secret@db.internal:5432/app?sslmode=verify-full&ping_interval=2s", "orders")
	if err != nil {
		log.Fatal(err) // an unknown parameter, a malformed URL
	}
	defer bp.Close()
}
