// The connection: dialling it for a Transport made by Open, its nats.go
// options and callbacks, and the round trip (flush) that Subscribe and
// Publish wait for.

package natstransport

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
)

// conn returns the connection, dialling it for a Transport made by Open.
// The dial runs in a goroutine of its own, so that ctx bounds the wait
// without shortening nats.go's connect timeout (which also applies to
// every reconnect); a dial that outlives its caller's ctx still completes
// and its connection serves the next call.
func (t *Transport) conn(ctx context.Context) (*nats.Conn, error) {
	if nc := t.nc.Load(); nc != nil {
		return nc, nil
	}
	t.dialMu.Lock()
	if nc := t.nc.Load(); nc != nil {
		t.dialMu.Unlock()
		return nc, nil
	}
	if t.closed.Load() {
		t.dialMu.Unlock()
		return nil, core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		t.dialMu.Unlock()
		return nil, err
	}
	d := t.dialing
	if d == nil {
		o, err := t.natsOptions()
		if err != nil {
			t.dialMu.Unlock()
			return nil, err
		}
		d = &dial{done: make(chan struct{})}
		if o.CustomDialer == nil {
			d.dialer = &lifeDialer{life: t.life, timeout: o.Timeout}
			o.CustomDialer = d.dialer
		}
		t.dialing = d
		t.dialWG.Add(1)
		go t.dial(o, d)
	}
	t.dialMu.Unlock()
	select {
	case <-d.done:
		if d.err != nil {
			return nil, connectHint(d.dialer, d.err)
		}
		if t.closed.Load() {
			return nil, core.ErrClosed
		}
		return d.nc, nil
	case <-ctx.Done():
		return nil, connectHint(d.dialer, fmt.Errorf("natstransport: connect to %s: %w", redactURLs(t.servers), ctx.Err()))
	}
}

// dial is one connection attempt of a Transport made by Open.
type dial struct {
	done   chan struct{} // closed when nc, err are set
	dialer *lifeDialer   // nil with a CustomDialer from NATSOptions
	nc     *nats.Conn
	err    error
}

func (t *Transport) dial(o nats.Options, d *dial) {
	defer t.dialWG.Done()
	nc, err := o.Connect()
	if err != nil {
		err = fmt.Errorf("natstransport: connect to %s: %w", redactURLs(t.servers), err)
	}
	t.dialMu.Lock()
	if err == nil {
		if t.closed.Load() {
			nc.Close()
			nc, err = nil, core.ErrClosed
		} else {
			t.nc.Store(nc)
		}
	}
	d.nc, d.err = nc, err
	t.dialing = nil
	t.dialMu.Unlock()
	close(d.done)
}

func (t *Transport) natsOptions() (nats.Options, error) {
	o := nats.GetDefaultOptions()
	o.Servers = nil
	for s := range strings.SplitSeq(t.servers, ",") {
		o.Servers = append(o.Servers, strings.TrimSpace(s))
	}
	o.Name = t.opts.Name
	if o.Name == "" {
		o.Name = "backplane:" + t.ns
	}
	o.AllowReconnect = true
	o.MaxReconnect = -1
	o.ReconnectWait = t.opts.ReconnectWait
	o.PingInterval = t.opts.PingInterval
	o.Timeout = t.opts.ConnectTimeout
	o.User, o.Password, o.Token = t.opts.User, t.opts.Password, t.opts.Token
	var extra []nats.Option
	if t.opts.TLSConfig != nil {
		extra = append(extra, nats.Secure(t.opts.TLSConfig.Clone()))
	}
	if len(t.opts.RootCAFiles) > 0 {
		extra = append(extra, nats.RootCAs(t.opts.RootCAFiles...))
	}
	if t.opts.CredentialsFile != "" {
		extra = append(extra, nats.UserCredentials(t.opts.CredentialsFile))
	}
	if t.opts.NKeySeedFile != "" {
		nk, err := nats.NkeyOptionFromSeed(t.opts.NKeySeedFile)
		if err != nil {
			return o, fmt.Errorf("natstransport: NKey seed file: %w", err)
		}
		extra = append(extra, nk)
	}
	extra = append(extra, t.opts.NATSOptions...)
	for _, f := range extra {
		if err := f(&o); err != nil {
			return o, fmt.Errorf("%w: natstransport: nats option: %w", core.ErrInvalidOption, err)
		}
	}
	// Chain to any callbacks set through NATSOptions.
	prevDown, prevDownOld, prevUp := o.DisconnectedErrCB, o.DisconnectedCB, o.ReconnectedCB
	o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		if err == nil {
			err = errors.New("natstransport: connection lost")
		}
		t.notify(note{kind: noteDown, err: err})
		if prevDown != nil {
			prevDown(nc, err)
		} else if prevDownOld != nil {
			prevDownOld(nc)
		}
	}
	if o.AsyncErrorCB == nil {
		log := t.opts.Logger
		o.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("natstransport: asynchronous error", "subject", subject, "err", err)
		}
	}
	prevClosed := o.ClosedCB
	o.ClosedCB = func(nc *nats.Conn) {
		// nats.go gives up only on errors it deems permanent (for
		// example credentials rejected on every server); Close also ends
		// here, after the watcher has stopped.
		t.notify(note{kind: noteDown, err: nats.ErrConnectionClosed})
		if prevClosed != nil {
			prevClosed(nc)
		}
	}
	o.ReconnectedCB = func(nc *nats.Conn) {
		t.notify(note{kind: noteUp})
		if prevUp != nil {
			prevUp(nc)
		}
	}
	return o, nil
}

// notify passes a connection change to the watcher. Changes before
// Subscribe do not matter and are dropped.
func (t *Transport) notify(n note) {
	if !t.watching.Load() {
		return
	}
	select {
	case t.notes <- n:
	case <-t.done:
	}
}

// Connect dials the connection of a Transport made by Open now rather than
// on first use, so that a wrong URL or credentials fail early and Limits
// reports the server's max_payload from the start. ctx bounds the wait;
// Options.ConnectTimeout bounds each server's dial. For a Transport made by
// New, and once connected, Connect does nothing.
func (t *Transport) Connect(ctx context.Context) error {
	if t.closed.Load() {
		return core.ErrClosed
	}
	if _, err := t.conn(ctx); err != nil {
		return err
	}
	return nil
}

// withTimeout gives ctx a deadline if it has none: nats.go's flush needs
// one.
func (t *Transport) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.opts.FlushTimeout)
}

// flush waits until the server has processed everything sent before.
func (t *Transport) flush(ctx context.Context, nc *nats.Conn) error {
	var err error
	if ctx.Done() == nil {
		// Not cancellable: skip making a context for the timeout.
		err = nc.FlushTimeout(t.opts.FlushTimeout)
	} else {
		c, cancel := t.withTimeout(ctx)
		err = nc.FlushWithContext(c)
		cancel()
	}
	if err != nil && t.closed.Load() {
		return core.ErrClosed
	}
	return err
}
