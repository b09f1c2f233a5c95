// Command cacheaside is the "in your service" example of README.md as a
// program: one replica's cache-aside read and write over Redis pub/sub.
// README quotes its run function verbatim, and a test checks that it
// still does.
//
//	go run ./examples/cacheaside                          # Redis on 127.0.0.1:6379
//	go run ./examples/cacheaside redis://host:6379/0
//
// With the broker down it fails at once with the cause, within the
// caller's deadline.
package main
