// Package transports opens a backplane transport by URL, the way
// database/sql opens a database by driver name and gocloud.dev opens a
// topic by URL: each transport package registers its URL schemes in its
// init function, and an application links only the transports it imports
// (import _ "github.com/backplane-go/backplane/transports/natstransport").
// The schemes of the transports of this module, and the package to import
// for each:
//
//	mem://                transports/memtransport (fxmodule imports it)
//	redis://, rediss://   transports/redistransport
//	nats://, tls://       transports/natstransport
//	sb://, servicebus://  transports/servicebustransport
//	postgres://, postgresql://  transports/pgtransport
//	amqp://, amqps://     transports/rabbitmqtransport
//
// The catalog example (examples/catalog) opens the URL of its -transport
// flag:
//
//	bp, err := transports.Open(openCtx, transport, namespace) // no I/O yet
//	if err != nil {
//		_ = store.Close()
//		return err // an unknown scheme or parameter; the error lists the valid ones
//	}
//
// A URL whose scheme no imported package registered fails with an error
// wrapping ErrUnknownScheme; for the schemes above, the error names the
// package to import. Each scheme's query parameters are listed in the
// documentation of its package (and of fxmodule); a parameter the scheme
// does not know fails with an error wrapping ErrUnknownParameter that
// names the valid ones. Error messages never contain a URL's password.
//
// # Registering a transport
//
// Register adds a scheme, typically from the init function of the package
// that implements it. An Opener does no I/O, rejects parameters it does
// not know with CheckParams, and reads the others with Params.
package transports
