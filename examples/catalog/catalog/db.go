package catalog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	_ "modernc.org/sqlite"             // registers the "sqlite" database/sql driver
)

// ErrNotFound is returned for a product that does not exist.
var ErrNotFound = errors.New("catalog: product not found")

// Driver names accepted by Config.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// DefaultTable is the table products live in unless Config.Table says
// otherwise.
const DefaultTable = "catalog_products"

// Config says which database to open.
type Config struct {
	// Driver is DriverSQLite (default) or DriverPostgres.
	Driver string
	// DSN is the SQLite file path (or a modernc.org/sqlite "file:" DSN), or
	// a PostgreSQL connection string such as
	// postgres://user@127.0.0.1:5432/db?sslmode=disable.
	DSN string
	// Table is the products table. Default DefaultTable.
	Table string
}

// Product is one catalog entry. Version starts at 1 and every update
// increments it.
type Product struct {
	ID         int64     `json:"id"`
	Name       string    `json:"name"`
	PriceCents int64     `json:"price_cents"`
	Version    int64     `json:"version"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Update is the body of PUT /products/{id}; absent fields stay unchanged.
type Update struct {
	Name       *string `json:"name,omitempty"`
	PriceCents *int64  `json:"price_cents,omitempty"`
}

// DB is the products table. It is safe for concurrent use.
type DB struct {
	db       *sql.DB
	table    string
	postgres bool
}

var tableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Open opens the database cfg names, checks that it answers and creates the
// products table if it does not exist.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	d := &DB{table: cfg.Table}
	if d.table == "" {
		d.table = DefaultTable
	}
	if !tableName.MatchString(d.table) {
		return nil, fmt.Errorf("catalog: table name %q: use lower-case letters, digits and _", d.table)
	}
	var err error
	switch cfg.Driver {
	case "", DriverSQLite:
		if cfg.DSN == "" {
			return nil, errors.New("catalog: empty SQLite path")
		}
		d.db, err = sql.Open("sqlite", sqliteDSN(cfg.DSN))
	case DriverPostgres:
		if cfg.DSN == "" {
			return nil, errors.New("catalog: empty PostgreSQL DSN")
		}
		d.postgres = true
		d.db, err = sql.Open("pgx", cfg.DSN)
	default:
		return nil, fmt.Errorf("catalog: unknown driver %q (use %s or %s)", cfg.Driver, DriverSQLite, DriverPostgres)
	}
	if err != nil {
		return nil, fmt.Errorf("catalog: open %s: %w", cfg.Driver, err)
	}
	if err := d.migrate(ctx); err != nil {
		_ = d.db.Close()
		return nil, err
	}
	return d, nil
}

// sqliteDSN adds a busy timeout and WAL mode to a plain path, so that
// several processes can share the file.
func sqliteDSN(dsn string) string {
	if strings.Contains(dsn, "_pragma") {
		return dsn
	}
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	if !strings.HasPrefix(dsn, "file:") {
		dsn = "file:" + (&url.URL{Path: dsn}).EscapedPath()
	}
	return dsn + sep + "_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
}

func (d *DB) migrate(ctx context.Context) error {
	q := `CREATE TABLE IF NOT EXISTS ` + d.table + ` (
		id          BIGINT PRIMARY KEY,
		name        TEXT NOT NULL,
		price_cents BIGINT NOT NULL,
		version     BIGINT NOT NULL,
		updated_at  BIGINT NOT NULL
	)`
	if _, err := d.db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("catalog: create table %s: %w", d.table, err)
	}
	return nil
}

// ph returns the n-th (1-based) bind parameter of the dialect.
func (d *DB) ph(n int) string {
	if d.postgres {
		return fmt.Sprintf("$%d", n)
	}
	return "?"
}

// Seed inserts products 1..n that do not exist yet, named "product n"
// with a price of n dollars.
func (d *DB) Seed(ctx context.Context, n int) error {
	q := `INSERT INTO ` + d.table + ` (id, name, price_cents, version, updated_at) VALUES (` +
		d.ph(1) + `, ` + d.ph(2) + `, ` + d.ph(3) + `, 1, ` + d.ph(4) + `) ON CONFLICT (id) DO NOTHING`
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("catalog: seed: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	now := time.Now().UnixNano()
	for i := 1; i <= n; i++ {
		if _, err := tx.ExecContext(ctx, q, i, fmt.Sprintf("product %d", i), i*100, now); err != nil {
			return fmt.Errorf("catalog: seed product %d: %w", i, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("catalog: seed: %w", err)
	}
	return nil
}

const columns = `id, name, price_cents, version, updated_at`

func scan(row *sql.Row) (Product, error) {
	var p Product
	var ns int64
	if err := row.Scan(&p.ID, &p.Name, &p.PriceCents, &p.Version, &ns); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return p, ErrNotFound
		}
		return p, err
	}
	p.UpdatedAt = time.Unix(0, ns).UTC()
	return p, nil
}

// Product reads product id.
func (d *DB) Product(ctx context.Context, id int64) (Product, error) {
	p, err := scan(d.db.QueryRowContext(ctx, `SELECT `+columns+` FROM `+d.table+` WHERE id = `+d.ph(1), id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("catalog: read product %d: %w", id, err)
	}
	return p, err
}

// Cheapest reads the n cheapest products, cheapest first.
func (d *DB) Cheapest(ctx context.Context, n int) ([]Product, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT `+columns+` FROM `+d.table+` ORDER BY price_cents, id LIMIT `+d.ph(1), n)
	if err != nil {
		return nil, fmt.Errorf("catalog: list products: %w", err)
	}
	defer rows.Close()
	var ps []Product
	for rows.Next() {
		var p Product
		var ns int64
		if err := rows.Scan(&p.ID, &p.Name, &p.PriceCents, &p.Version, &ns); err != nil {
			return nil, fmt.Errorf("catalog: list products: %w", err)
		}
		p.UpdatedAt = time.Unix(0, ns).UTC()
		ps = append(ps, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("catalog: list products: %w", err)
	}
	return ps, nil
}

// Update applies u to product id, increments its version and returns the
// updated row.
func (d *DB) Update(ctx context.Context, id int64, u Update) (Product, error) {
	q := `UPDATE ` + d.table + ` SET name = COALESCE(` + d.ph(1) + `, name), price_cents = COALESCE(` + d.ph(2) +
		`, price_cents), version = version + 1, updated_at = ` + d.ph(3) + ` WHERE id = ` + d.ph(4) + ` RETURNING ` + columns
	var name, price any
	if u.Name != nil {
		name = *u.Name
	}
	if u.PriceCents != nil {
		price = *u.PriceCents
	}
	p, err := scan(d.db.QueryRowContext(ctx, q, name, price, time.Now().UnixNano(), id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return p, fmt.Errorf("catalog: update product %d: %w", id, err)
	}
	return p, err
}

// DropTable drops the products table (tests use it to clean up).
func (d *DB) DropTable(ctx context.Context) error {
	_, err := d.db.ExecContext(ctx, `DROP TABLE IF EXISTS `+d.table)
	return err
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }
