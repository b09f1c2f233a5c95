// Package catalog is a small HTTP product-catalog service that caches
// products in process, cache-aside, through a backplane [core.Cache]: the
// kind of service that is scaled out to several instances behind a load
// balancer, where an update through one instance must be read fresh on all.
//
// # Endpoints
//
//	GET  /products/{id}   the product, from the local cache or the database
//	                      (header X-Cache: hit or miss)
//	GET  /listings/cheapest?n=10
//	                      the n cheapest products, cached under a tag
//	PUT  /products/{id}   {"name": "...", "price_cents": 123}: updates the
//	                      database, then invalidates the product and every
//	                      listing everywhere; with ?ack=1 it returns once
//	                      every live instance applied that (header
//	                      X-Invalidation: confirmed or unconfirmed)
//	GET  /healthz         200 while invalidation is flowing, 503 otherwise
//
// # Consistency
//
// GET uses [core.Typed.GetOrLoad]: a miss loads the row from the database
// and caches it. PUT commits the update first and then calls
// [core.Cache.Invalidate], which evicts the entry locally and returns once
// the invalidation is on the broker; every other instance evicts it when the
// message arrives. A load that overlaps the invalidation is answered but not
// cached, so no instance keeps serving the old row. Listings are cached
// with [core.Typed.GetOrLoadWithTags] under [ListingsTag]; PUT also calls
// [core.Cache.InvalidateTags], which makes every instance stop serving every
// listing without knowing their keys.
//
// PUT ?ack=1 gives read-your-writes across instances: it calls
// [core.Cache.InvalidateTagsAcked] after the product's invalidation, which
// returns once every live instance has applied both. The client's next
// request, whichever instance the load balancer picks, reads the new row.
// It costs one acknowledgement per instance and the wait for the slowest.
//
// # Databases
//
// [Open] takes a [Config]: SQLite through the pure-Go modernc.org/sqlite
// driver (a file, WAL mode; several processes may share it) or PostgreSQL
// through pgx. Every product carries a version that each update increments,
// so that clients can tell an old read from a fresh one.
package catalog
