package faultproxy_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/internal/faultproxy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitBound bounds every wait of these tests; generous for loaded machines.
const waitBound = 10 * time.Second

// echoServer echoes every connection and counts the bytes it received.
type echoServer struct {
	ln       net.Listener
	received atomic.Int64
	mute     atomic.Bool // receive but do not echo
	wg       sync.WaitGroup
	mu       sync.Mutex
	conns    []net.Conn
}

func startEcho(t *testing.T) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					s.received.Add(int64(n))
					if n > 0 && !s.mute.Load() {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *echoServer) Addr() string { return s.ln.Addr().String() }

func newProxy(t *testing.T, upstream string) *faultproxy.Proxy {
	t.Helper()
	p, err := faultproxy.New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitBound)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// roundTrip writes msg and reads the echo.
func roundTrip(t *testing.T, c net.Conn, msg string) error {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(waitBound))
	defer func() { _ = c.SetDeadline(time.Time{}) }()
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != msg {
		t.Fatalf("echo %q, want %q", got, msg)
	}
	return nil
}

// refused reports whether a connection to addr fails: at connect time or
// (the handshake completed before the proxy's reset) on first use.
func refused(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitBound)
	if err != nil {
		return true
	}
	defer c.Close()
	return roundTrip(t, c, "x") != nil
}

// silentFor reports whether nothing arrives on c within d (a negative
// check: d only bounds how long the test looks).
func silentFor(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var b [1]byte
	_, err := c.Read(b[:])
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func eventually(cond func() bool) bool {
	deadline := time.Now().Add(waitBound)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}

func TestForwards(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	if p.Upstream() != echo.Addr() {
		t.Fatalf("Upstream() = %q", p.Upstream())
	}
	c := dial(t, p.Addr())
	big := string(bytes.Repeat([]byte("0123456789"), 20000))
	for _, msg := range []string{"hello", big} {
		if err := roundTrip(t, c, msg); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(5 + len(big))
	if !eventually(func() bool {
		st := p.Stats()
		return st.Accepted == 1 && st.Active == 1 && st.ForwardedUp == want && st.ForwardedDown == want
	}) {
		t.Fatalf("stats %+v: want 1 accepted, 1 active, %d bytes each way", p.Stats(), want)
	}
}

func TestLatency(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	c := dial(t, p.Addr())
	const lat = 50 * time.Millisecond
	for _, d := range []faultproxy.Direction{faultproxy.Up, faultproxy.Down, faultproxy.Both} {
		t.Run(d.String(), func(t *testing.T) {
			p.SetLatency(d, lat)
			defer p.SetLatency(faultproxy.Both, 0)
			start := time.Now()
			if err := roundTrip(t, c, "ping"); err != nil {
				t.Fatal(err)
			}
			// A lower bound only: the proxy must hold the bytes back at
			// least this long; how much longer is the machine's business.
			want := lat
			if d == faultproxy.Both {
				want = 2 * lat
			}
			if rtt := time.Since(start); rtt < want {
				t.Fatalf("round trip %v with %v latency %s: the delay was not applied", rtt, lat, d)
			}
		})
	}
}

func TestLatencyKeepsOrder(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	c := dial(t, p.Addr())
	p.SetLatency(faultproxy.Up, 20*time.Millisecond)
	var want bytes.Buffer
	for i := range 200 {
		b := []byte{byte(i), byte(i >> 8)}
		want.Write(b)
		if _, err := c.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	got := make([]byte, want.Len())
	_ = c.SetReadDeadline(time.Now().Add(waitBound))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatal("bytes were reordered")
	}
}

func TestReset(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	c1, c2 := dial(t, p.Addr()), dial(t, p.Addr())
	for _, c := range []net.Conn{c1, c2} {
		if err := roundTrip(t, c, "x"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.Reset(); n != 2 {
		t.Fatalf("Reset closed %d connections, want 2", n)
	}
	for i, c := range []net.Conn{c1, c2} {
		_ = c.SetReadDeadline(time.Now().Add(waitBound))
		var b [1]byte
		if _, err := c.Read(b[:]); err == nil {
			t.Fatalf("connection %d still reads after Reset", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("connection %d was not closed by Reset", i)
		}
	}
	if st := p.Stats(); st.Resets != 2 || st.Active != 0 {
		t.Fatalf("stats %+v: want 2 resets, 0 active", st)
	}
	// New connections work.
	if err := roundTrip(t, dial(t, p.Addr()), "again"); err != nil {
		t.Fatal(err)
	}
}

func TestBlackhole(t *testing.T) {
	t.Parallel()
	tests := []struct {
		dir          faultproxy.Direction
		serverGetsIt bool
	}{
		{faultproxy.Up, false},
		{faultproxy.Down, true},
		{faultproxy.Both, false},
	}
	for _, tt := range tests {
		t.Run(tt.dir.String(), func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t)
			p := newProxy(t, echo.Addr())
			c := dial(t, p.Addr())
			if err := roundTrip(t, c, "before"); err != nil {
				t.Fatal(err)
			}
			base := echo.received.Load()
			p.SetBlackhole(tt.dir, true)
			if _, err := c.Write([]byte("lost")); err != nil {
				t.Fatal(err)
			}
			if tt.serverGetsIt {
				if !eventually(func() bool { return echo.received.Load() == base+4 }) {
					t.Fatal("the server did not receive the bytes of the open direction")
				}
				if !eventually(func() bool { return p.Stats().DroppedDown == 4 }) {
					t.Fatalf("stats %+v: want 4 bytes dropped down", p.Stats())
				}
			} else if !eventually(func() bool { return p.Stats().DroppedUp == 4 }) {
				t.Fatalf("stats %+v: want 4 bytes dropped up", p.Stats())
			}
			// The socket stays open and silent: no error, no data.
			if !silentFor(c, 100*time.Millisecond) {
				t.Fatal("the client heard something through a blackhole, or its connection closed")
			}
			if !tt.serverGetsIt && echo.received.Load() != base {
				t.Fatal("the server received bytes through an upstream blackhole")
			}
			p.Heal()
			if err := roundTrip(t, c, "after"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStall(t *testing.T) {
	t.Parallel()
	for _, d := range []faultproxy.Direction{faultproxy.Up, faultproxy.Down} {
		t.Run(d.String(), func(t *testing.T) {
			t.Parallel()
			echo := startEcho(t)
			p := newProxy(t, echo.Addr())
			c := dial(t, p.Addr())
			if err := roundTrip(t, c, "before"); err != nil {
				t.Fatal(err)
			}
			base := echo.received.Load()
			p.SetStall(d, true)
			if _, err := c.Write([]byte("held")); err != nil {
				t.Fatal(err)
			}
			if !silentFor(c, 100*time.Millisecond) {
				t.Fatal("the client heard something through a stall, or its connection closed")
			}
			if d == faultproxy.Up && echo.received.Load() != base {
				t.Fatal("the server received bytes through an upstream stall")
			}
			p.SetStall(d, false)
			// The held bytes arrive intact, then the stream goes on.
			got := make([]byte, 4)
			_ = c.SetReadDeadline(time.Now().Add(waitBound))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != "held" {
				t.Fatalf("after the stall read %q, %v; want \"held\"", got, err)
			}
			if err := roundTrip(t, c, "after"); err != nil {
				t.Fatal(err)
			}
			if st := p.Stats(); st.DroppedUp+st.DroppedDown != 0 {
				t.Fatalf("stats %+v: a stall dropped bytes", st)
			}
		})
	}
}

func TestRefuse(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	open := dial(t, p.Addr())
	if err := roundTrip(t, open, "x"); err != nil {
		t.Fatal(err)
	}
	p.SetRefuse(true)
	if !refused(t, p.Addr()) {
		t.Fatal("a connection went through while refusing")
	}
	if err := roundTrip(t, open, "still"); err != nil {
		t.Fatalf("SetRefuse affected an open connection: %v", err)
	}
	if !eventually(func() bool { st := p.Stats(); return st.Refused == 1 && st.Accepted == 1 }) {
		t.Fatalf("stats %+v: want 1 refused, 1 accepted", p.Stats())
	}
	p.SetRefuse(false)
	if err := roundTrip(t, dial(t, p.Addr()), "x"); err != nil {
		t.Fatal(err)
	}
}

func TestUpstreamDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	p := newProxy(t, addr)
	if !refused(t, p.Addr()) {
		t.Fatal("a connection to a closed upstream went through")
	}
	if !eventually(func() bool { return p.Stats().Refused == 1 }) {
		t.Fatalf("stats %+v: want 1 refused", p.Stats())
	}
}

func TestBandwidth(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	echo.mute.Store(true)
	p := newProxy(t, echo.Addr())
	const bps, n = 20000, 10000 // half a second of data
	p.SetBandwidth(faultproxy.Up, bps)
	c := dial(t, p.Addr())
	start := time.Now()
	go func() { _, _ = c.Write(make([]byte, n)) }()
	if !eventually(func() bool { return echo.received.Load() == n }) {
		t.Fatalf("the server received %d of %d bytes", echo.received.Load(), n)
	}
	// A lower bound only: the first read is free, the rest is paced.
	if el, min := time.Since(start), time.Duration(n-bps/20)*time.Second/bps; el < min {
		t.Fatalf("%d bytes at %d B/s arrived after %v, want at least %v", n, bps, el, min)
	}
}

func TestSlowReaderBacksUp(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p := newProxy(t, echo.Addr())
	const bps = 1000
	p.SetBandwidth(faultproxy.Down, bps)
	c := dial(t, p.Addr())
	start := time.Now()
	// The server echoes a lot; the proxy reads it at 1 kB/s, so the data
	// waits in the server's socket buffers, not in the proxy.
	go func() { _, _ = c.Write(make([]byte, 1<<20)) }()
	if !eventually(func() bool { return echo.received.Load() > 64<<10 }) {
		t.Fatal("the server did not receive the data")
	}
	// The pacing allows one read ahead; anything beyond that would be
	// the proxy reading faster than it forwards.
	fwd := p.Stats().ForwardedDown
	if allowed := uint64(time.Since(start).Seconds()*bps) + bps; fwd > allowed {
		t.Fatalf("the proxy forwarded %d bytes down at %d B/s within %v", fwd, bps, time.Since(start))
	}
}

func TestCloseStopsEverything(t *testing.T) {
	t.Parallel()
	echo := startEcho(t)
	p, err := faultproxy.New(echo.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, p.Addr())
	if err := roundTrip(t, c, "x"); err != nil {
		t.Fatal(err)
	}
	p.SetLatency(faultproxy.Down, time.Hour) // a writer waits on a timer
	if _, err := c.Write([]byte("held")); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(waitBound))
	var b [1]byte
	if _, err := c.Read(b[:]); err == nil {
		t.Fatal("connection still open after Close")
	}
	if _, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		t.Fatal("still accepting after Close")
	}
}

func TestNewRejectsBadUpstream(t *testing.T) {
	t.Parallel()
	if _, err := faultproxy.New("no-port"); err == nil {
		t.Fatal("New accepted an address without a port")
	}
}

func TestDirectionString(t *testing.T) {
	t.Parallel()
	for d, want := range map[faultproxy.Direction]string{
		faultproxy.Up: "up", faultproxy.Down: "down", faultproxy.Both: "both", 0: "Direction(0)",
	} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}
