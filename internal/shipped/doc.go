// Package shipped is the conformance wiring the transports' tests share.
// It lists the local stores the module ships, so that the tests of every
// transport run the engine end to end over each of them (together they
// cover every (store, transport) pair); it runs the suites over a
// transport's named harnesses (RunBackplane, RunCacheOn); and it gives
// every instance a harness makes a TCP proxy of its own (Proxies), through
// which a harness cuts (Disconnect) or stalls (Stall) one instance on a
// server other tests share.
package shipped
