package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Direction selects the direction of the stream a fault applies to.
type Direction uint8

const (
	// Up is the client-to-server direction.
	Up Direction = 1 << iota
	// Down is the server-to-client direction.
	Down
	// Both is Up and Down.
	Both = Up | Down
)

// String returns "up", "down" or "both".
func (d Direction) String() string {
	switch d {
	case Up:
		return "up"
	case Down:
		return "down"
	case Both:
		return "both"
	default:
		return fmt.Sprintf("Direction(%d)", uint8(d))
	}
}

// ErrClosed is returned by operations on a closed Proxy.
var ErrClosed = errors.New("faultproxy: closed")

const (
	readBuf    = 32 << 10
	queueLen   = 256 // chunks in flight per direction (the proxy's "window")
	dialTimout = 5 * time.Second
	stallPoll  = 2 * time.Millisecond // how often a stalled direction looks again
)

// Stats are a Proxy's counters since New.
type Stats struct {
	// Accepted counts connections accepted and connected upstream.
	Accepted uint64
	// Refused counts connections reset at once: SetRefuse was on, or the
	// upstream could not be reached.
	Refused uint64
	// Resets counts connections closed by Reset.
	Resets uint64
	// Active is the number of connections open now.
	Active int
	// ForwardedUp and ForwardedDown count bytes written to the other side.
	ForwardedUp, ForwardedDown uint64
	// DroppedUp and DroppedDown count bytes swallowed by a blackhole.
	DroppedUp, DroppedDown uint64
}

// dir is the fault state of one direction.
type dir struct {
	latency   atomic.Int64 // nanoseconds
	bps       atomic.Int64 // bytes per second, 0 unlimited
	blackhole atomic.Bool
	stall     atomic.Bool
	forwarded atomic.Uint64
	dropped   atomic.Uint64
}

// Proxy forwards TCP connections to an upstream address and injects
// faults into them. Its methods are safe for concurrent use.
type Proxy struct {
	ln       net.Listener
	upstream string
	dirs     [2]dir // 0: Up, 1: Down
	refuse   atomic.Bool

	accepted, refused, resets atomic.Uint64

	ctx    context.Context // ends on Close; bounds upstream dials
	cancel context.CancelFunc

	mu     sync.Mutex
	links  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

// New starts a proxy on a free port of 127.0.0.1 that forwards to upstream
// (host:port). The upstream is dialled for every accepted connection, so it
// need not be up yet.
func New(upstream string) (*Proxy, error) {
	if _, _, err := net.SplitHostPort(upstream); err != nil {
		return nil, fmt.Errorf("faultproxy: upstream %q: %w", upstream, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{ln: ln, upstream: upstream, links: make(map[*link]struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr returns the proxy's address, 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Upstream returns the address the proxy forwards to.
func (p *Proxy) Upstream() string { return p.upstream }

func (p *Proxy) each(d Direction, f func(*dir)) {
	if d&Up != 0 {
		f(&p.dirs[0])
	}
	if d&Down != 0 {
		f(&p.dirs[1])
	}
}

// SetLatency delays the bytes of direction d by lat (zero: none). Bytes
// already waiting keep the delay they were read with.
func (p *Proxy) SetLatency(d Direction, lat time.Duration) {
	p.each(d, func(s *dir) { s.latency.Store(int64(max(lat, 0))) })
}

// SetBandwidth limits direction d to bytesPerSecond (zero or less:
// unlimited). The proxy reads no faster than it forwards, so the sender's
// buffers fill. A read already waiting when the limit is set may return up
// to 32 KiB at once; the pause after it accounts for them.
func (p *Proxy) SetBandwidth(d Direction, bytesPerSecond int) {
	p.each(d, func(s *dir) { s.bps.Store(int64(max(bytesPerSecond, 0))) })
}

// SetBlackhole swallows (on) or forwards again (off) the bytes of
// direction d. The connections stay open either way.
func (p *Proxy) SetBlackhole(d Direction, on bool) {
	p.each(d, func(s *dir) { s.blackhole.Store(on) })
}

// SetStall holds (on) or releases (off) the bytes of direction d: the
// proxy stops reading and forwarding them, so they wait in the sender's
// socket buffers and then block the sender, as behind a network that drops
// every packet of that direction. The connections stay open; when the
// stall ends, the held bytes are delivered, late but intact. This is the
// one-way blackhole that TCP endpoints see; SetBlackhole instead loses
// bytes in the middle of the stream.
func (p *Proxy) SetStall(d Direction, on bool) {
	p.each(d, func(s *dir) { s.stall.Store(on) })
}

// SetRefuse makes the proxy reset every new connection right after
// accepting it (on) or forward them again (off). Open connections are not
// affected; see Reset.
func (p *Proxy) SetRefuse(on bool) { p.refuse.Store(on) }

// Reset closes every open connection with a TCP reset on both sides and
// returns how many it closed. New connections are accepted as before.
func (p *Proxy) Reset() int {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	n := 0
	for _, l := range links {
		if l.close(true) {
			n++
		}
	}
	p.resets.Add(uint64(n))
	return n
}

// Heal lifts every fault: latency, bandwidth limits, blackholes, stalls
// and refusal.
func (p *Proxy) Heal() {
	p.SetLatency(Both, 0)
	p.SetBandwidth(Both, 0)
	p.SetBlackhole(Both, false)
	p.SetStall(Both, false)
	p.SetRefuse(false)
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	active := len(p.links)
	p.mu.Unlock()
	return Stats{
		Accepted:      p.accepted.Load(),
		Refused:       p.refused.Load(),
		Resets:        p.resets.Load(),
		Active:        active,
		ForwardedUp:   p.dirs[0].forwarded.Load(),
		ForwardedDown: p.dirs[1].forwarded.Load(),
		DroppedUp:     p.dirs[0].dropped.Load(),
		DroppedDown:   p.dirs[1].dropped.Load(),
	}
}

// Close stops accepting, closes every connection and waits until every
// goroutine of the proxy has returned. It is idempotent.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	links := make([]*link, 0, len(p.links))
	for l := range p.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	p.cancel()
	err := p.ln.Close()
	for _, l := range links {
		l.close(false)
	}
	p.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("faultproxy: close listener: %w", err)
	}
	return nil
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			select {
			case <-p.ctx.Done():
				return
			case <-time.After(10 * time.Millisecond): // back off on EMFILE and the like
			}
			continue
		}
		if p.refuse.Load() {
			p.refused.Add(1)
			abort(c)
			continue
		}
		p.wg.Add(1)
		go p.connect(c)
	}
}

// connect dials the upstream for client c and starts forwarding.
func (p *Proxy) connect(c net.Conn) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimout}
	s, err := d.DialContext(p.ctx, "tcp", p.upstream)
	if err != nil {
		p.refused.Add(1)
		abort(c)
		return
	}
	l := &link{p: p, client: c, server: s, done: make(chan struct{})}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		abort(c)
		abort(s)
		return
	}
	p.links[l] = struct{}{}
	p.wg.Add(4)
	p.mu.Unlock()
	p.accepted.Add(1)
	up, down := make(chan chunk, queueLen), make(chan chunk, queueLen)
	go l.read(c, up, &p.dirs[0])
	go l.write(s, up, &p.dirs[0])
	go l.read(s, down, &p.dirs[1])
	go l.write(c, down, &p.dirs[1])
}

// abort closes c with a TCP reset.
func abort(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// link is one proxied connection: the client's socket and the upstream's.
type link struct {
	p              *Proxy
	client, server net.Conn
	done           chan struct{}
	once           sync.Once
}

type chunk struct {
	b  []byte
	at time.Time // when it was read
}

// close closes both sockets (with a reset if rst) and reports whether this
// call did it.
func (l *link) close(rst bool) bool {
	did := false
	l.once.Do(func() {
		did = true
		close(l.done)
		if rst {
			abort(l.client)
			abort(l.server)
		} else {
			_ = l.client.Close()
			_ = l.server.Close()
		}
		l.p.mu.Lock()
		delete(l.p.links, l)
		l.p.mu.Unlock()
	})
	return did
}

// read reads src into q at the direction's bandwidth until src fails,
// dropping what a blackhole swallows, then closes q.
func (l *link) read(src net.Conn, q chan<- chunk, d *dir) {
	defer l.p.wg.Done()
	defer close(q)
	buf := make([]byte, readBuf)
	var next time.Time // bandwidth: when the next read may start
	for {
		if !l.waitStall(d) {
			return
		}
		n := len(buf)
		if bps := d.bps.Load(); bps > 0 {
			// Small reads keep a slow direction smooth: about 20 per second.
			n = int(min(max(bps/20, 1), int64(len(buf))))
		}
		m, err := src.Read(buf[:n])
		if m > 0 {
			if d.blackhole.Load() {
				d.dropped.Add(uint64(m))
			} else {
				c := chunk{b: append([]byte(nil), buf[:m]...), at: time.Now()}
				select {
				case q <- c:
				case <-l.done:
					return
				}
			}
		}
		if err != nil {
			return
		}
		if bps := d.bps.Load(); bps > 0 && m > 0 {
			// Pace the reads: the sender's buffers fill, as in front of a
			// slow reader.
			now := time.Now()
			if next.Before(now) {
				next = now
			}
			next = next.Add(time.Duration(int64(m) * int64(time.Second) / bps))
			if !l.sleepUntil(next) {
				return
			}
		} else {
			next = time.Time{}
		}
	}
}

// write forwards q to dst with the direction's latency, and
// closes the link when q ends or dst fails.
func (l *link) write(dst net.Conn, q <-chan chunk, d *dir) {
	defer l.p.wg.Done()
	defer l.close(false)
	for {
		var c chunk
		var ok bool
		select {
		case c, ok = <-q:
			if !ok {
				return
			}
		case <-l.done:
			return
		}
		due := c.at.Add(time.Duration(d.latency.Load()))
		if !l.sleepUntil(due) || !l.waitStall(d) {
			return
		}
		if _, err := dst.Write(c.b); err != nil {
			return
		}
		d.forwarded.Add(uint64(len(c.b)))
	}
}

// waitStall waits while direction d is stalled and reports false if the
// link closed first.
func (l *link) waitStall(d *dir) bool {
	for d.stall.Load() {
		if !l.sleepUntil(time.Now().Add(stallPoll)) {
			return false
		}
	}
	return true
}

// sleepUntil waits until t and reports false if the link closed first.
func (l *link) sleepUntil(t time.Time) bool {
	wait := time.Until(t)
	if wait <= 0 {
		return true
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-l.done:
		return false
	}
}
