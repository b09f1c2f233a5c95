// Command catalog runs the product-catalog example service: products in a
// database, cached in process through backplane, updates invalidated on
// every instance.
//
// Run a few instances against one database and one broker, update through
// one, read through the others:
//
//	go run ./examples/catalog -addr 127.0.0.1:8081 &
//	go run ./examples/catalog -addr 127.0.0.1:8082 &
//	curl -s 127.0.0.1:8082/products/7
//	curl -s -X PUT -d '{"price_cents": 1250}' 127.0.0.1:8081/products/7
//	curl -s 127.0.0.1:8082/products/7
//
// Flags (environment variables in brackets):
//
//	-addr       listen address [CATALOG_ADDR], default 127.0.0.1:8080
//	-sqlite     SQLite file [CATALOG_SQLITE], default backplane-catalog.db in the temporary directory
//	-postgres   PostgreSQL DSN, used instead of SQLite [CATALOG_POSTGRES]
//	-transport  backplane URL [BACKPLANE_TRANSPORT_URL], default nats://127.0.0.1:4222
//	-namespace  backplane namespace [BACKPLANE_NAMESPACE], default catalog
//	-table      products table [CATALOG_TABLE], default catalog_products
//	-store      local store, bigcache or otter [CATALOG_STORE], default bigcache
//	-seed       products to create if missing, default 100
//
// The service needs a running broker (NATS or Redis). `go run
// ./cmd/backplane demo` runs three instances with an embedded NATS server
// and no setup at all.
package main
