// Command backplane is the operator CLI of backplane: it shows the library
// working in one command, and it looks at and acts on a live invalidation
// bus.
//
//	backplane demo                       three catalog instances on an embedded NATS server
//	backplane tail URL -n NS             print every message on a namespace
//	backplane invalidate URL -n NS KEY…  evict keys on every instance now
//	backplane clear URL -n NS            empty every instance's cache (asks first)
//	backplane bench URL                  propagation latency and throughput, raw transport vs engine
//	backplane check URL                  is invalidation working in this environment?
//	backplane version
//
// URL names the broker: nats://host:4222, tls://host:4222, redis://host:6379/0,
// rediss://host:6380, amqp://user:pass@host:5672/ (amqps:// with TLS), or
// mem:// (in-process: only useful with demo --transport). Credentials go in the
// URL (nats://user:pass@host:4222, redis://:pass@host:6379); further
// parameters are those of the fxmodule package.
//
// # Exit codes
//
//	0    success
//	1    failure: a check failed, the demo saw a stale read, a publish failed
//	2    usage: bad arguments, flags or URL; clear refused without confirmation
//	3    cannot connect: broker unreachable, unknown host, TLS or authentication failure
//	4    aborted: clear was not confirmed
//	130  interrupted (Ctrl-C)
//
// tail runs until Ctrl-C, --count or --for, and exits 0 when stopped that way.
//
// Errors name the fix and never print a stack trace. Every network operation
// is bounded by --timeout (default 10s); --verbose logs the transports' and
// engines' diagnostics to stderr.
//
// # Safe on a shared broker
//
// check and bench work on fresh random namespaces of their own and never
// fault the broker; demo --transport does too. Only invalidate and clear act
// on an application's namespace, and clear asks first.
package main
