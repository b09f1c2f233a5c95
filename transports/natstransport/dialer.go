package natstransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// lifeDialer dials the servers of a Transport made by Open. A dial, and
// the connection it made, end when the Transport is closed, so that Close
// never waits for a server that accepted the TCP connection but does not
// speak NATS (a Redis port, say) until ConnectTimeout; and it remembers
// the last address that accepted a connection, for the error of a connect
// that ran out of time.
type lifeDialer struct {
	life    context.Context
	timeout time.Duration
	reached atomic.Pointer[string]
}

func (d *lifeDialer) Dial(network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{Timeout: d.timeout}).DialContext(d.life, network, addr)
	if err != nil {
		return nil, err
	}
	d.reached.Store(&addr)
	stop := context.AfterFunc(d.life, func() { _ = conn.Close() })
	return &lifeConn{Conn: conn, stop: stop}, nil
}

// lifeConn is a connection of a lifeDialer.
type lifeConn struct {
	net.Conn
	stop func() bool
}

func (c *lifeConn) Close() error {
	c.stop()
	return c.Conn.Close()
}

// connectHint explains a connect that timed out (ctx's deadline, or
// ConnectTimeout) when a server accepted the TCP connection: it did not
// answer as a NATS server.
func connectHint(d *lifeDialer, err error) error {
	if d == nil {
		return err
	}
	addr := d.reached.Load()
	timedOut := errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoServers)
	if addr == nil || !timedOut {
		return err
	}
	return fmt.Errorf("%w: %s accepted the connection but did not answer as a NATS server; is it one (NATS listens on 4222 by default), and is the scheme right (tls:// for a TLS server)?", err, *addr)
}
