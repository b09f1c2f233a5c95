// Package pgtest finds the PostgreSQL server the catalog example's tests
// use.
package pgtest

import (
	"context"
	"database/sql"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/backplane-go/backplane/internal/testenv"
)

// DSNEnv points the PostgreSQL tests at a server.
const DSNEnv = "CATALOG_TEST_POSTGRES"

// DSN returns the DSN of a PostgreSQL server that answers a ping: $DSNEnv,
// or the local server's test database. Without one the test is skipped
// (failed under BACKPLANE_REQUIRE_SERVICES=1).
func DSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv(DSNEnv)
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&connect_timeout=3"
	}
	db, err := sql.Open("pgx", dsn)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
		_ = db.Close()
	}
	if err != nil {
		testenv.Unavailable(t, "no PostgreSQL at %s (set %s): %v", dsn, DSNEnv, err)
	}
	return dsn
}
