package redistransport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"
)

// tlsDialer returns a dialer for a rediss:// client whose TLS handshake
// honours the context (go-redis's own bounds it by DialTimeout alone, so a
// plain server that never answers the handshake holds a caller with a
// shorter deadline for seconds), and whose error says what a failed
// handshake most likely means. It returns nil, go-redis's dialer, without
// TLS.
func tlsDialer(timeout time.Duration, cfg *tls.Config, lastHandshake *atomic.Pointer[error]) func(context.Context, string, string) (net.Conn, error) {
	if cfg == nil {
		return nil
	}
	// lastHandshake is the error of the last failed handshake, until one
	// succeeds: go-redis may retry a dial once the caller's deadline has
	// passed, and that attempt's error would hide the cause. The
	// Transport reads it too: a subscription that ran into its deadline
	// may see the closed connection before the dial's error.
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		raw, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			if last := lastHandshake.Load(); last != nil && ctx.Err() != nil {
				return nil, *last
			}
			return nil, err // no TCP connection: not a TLS matter
		}
		c := cfg
		if c.ServerName == "" {
			c = cfg.Clone()
			c.ServerName, _, _ = net.SplitHostPort(addr)
		}
		conn := tls.Client(raw, c)
		if err := conn.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			var rec tls.RecordHeaderError
			if errors.As(err, &rec) || ctx.Err() != nil {
				err = fmt.Errorf("no TLS handshake with %s (%w): is it a TLS server? rediss:// needs one; use redis:// for a plain server", addr, err)
			} else {
				err = fmt.Errorf("TLS handshake with %s: %w", addr, err)
			}
			lastHandshake.Store(&err)
			return nil, err
		}
		lastHandshake.Store(nil)
		return conn, nil
	}
}
