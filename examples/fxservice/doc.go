// Command fxservice is a small HTTP service built with go.uber.org/fx that
// caches items in process and keeps the caches of all its instances
// coherent through a backplane.
//
//	GET /items/{id}   the item, cache-aside: from the local cache, else the database
//	PUT /items/{id}   store the JSON body, then invalidate the item everywhere
//	GET /readyz       200 while invalidations are flowing, 503 otherwise
//
// The database is an in-memory map standing in for a real one. The
// backplane is configured from the environment (see package fxmodule).
// BACKPLANE_TRANSPORT_URL is required; point the instances at one broker:
//
//	BACKPLANE_TRANSPORT_URL=nats://127.0.0.1:4222 ADDR=:8081 go run ./examples/fxservice
//	BACKPLANE_TRANSPORT_URL=nats://127.0.0.1:4222 ADDR=:8082 go run ./examples/fxservice
//
// The service imports natstransport only, so it speaks nats://, tls:// and
// mem:// (one process only) and links no other transport's SDK (a test
// checks it with go list -deps). Import redistransport too for redis://.
package main
