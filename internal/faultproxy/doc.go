// Package faultproxy is a TCP proxy for tests that injects network faults
// between a client and a server it does not control.
//
// A Proxy listens on a free port of 127.0.0.1 and forwards every
// connection it accepts to one upstream address. Faults are set at run time
// and apply to the connections already open as well as to new ones:
//
//   - SetLatency delays every byte by a fixed time in one direction, keeping
//     the order of the stream.
//   - SetBandwidth limits one direction to a number of bytes per second.
//     The proxy then reads that slowly too, so the sender's socket buffers
//     fill: downstream, this is a slow subscriber as a broker sees it.
//   - SetBlackhole swallows the bytes of one direction while both sockets
//     stay open: a half-dead link that no TCP error reveals. Swallowed bytes
//     are gone; after the blackhole is lifted the stream resumes at whatever
//     byte comes next, which a protocol parser may or may not notice.
//   - SetStall holds the bytes of one direction: nothing is read or
//     forwarded until the stall ends, then everything arrives, late but
//     intact. This is a one-way network blackhole as TCP endpoints see it
//     (packets dropped, retransmitted later).
//   - Reset closes every open connection at once with a TCP reset, as a
//     crashing middlebox or a broker restart would.
//   - SetRefuse resets every new connection right after accepting it, as a
//     host with nothing listening would.
//
// Heal lifts every fault. Close stops the listener and every connection and
// waits for the proxy's goroutines.
//
// Directions are named from the client's side: Up is client to server,
// Down is server to client.
//
//	p, err := faultproxy.New("127.0.0.1:6379")
//	...
//	defer p.Close()
//	client := redis.NewClient(&redis.Options{Addr: p.Addr()})
//	p.SetBlackhole(faultproxy.Down, true) // the client hears nothing more
//
// When either side closes its connection, the proxy forwards what it has
// already read from that side and then closes both.
package faultproxy
