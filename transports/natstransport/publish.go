// Publish and Send (core.Sender): writing payloads to the one connection
// and waiting for the server's round trip.

package natstransport

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
)

// Publish sends each payload as one message on the subject, then waits for
// one round trip to the server, so that it returns once the server has
// received all of them. Publish does not buffer while the connection is
// down: it fails with ErrNotConnected instead. A payload over
// Limits().MaxPayload fails the call with core.ErrPayloadTooLarge before
// anything is sent. In the JetStream mode it returns once the stream has
// stored every payload (the stream's acknowledgements).
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	confirm, err := t.Send(ctx, payloads...)
	if err != nil {
		return err
	}
	return confirm(ctx)
}

// Send is the first half of Publish (core.Sender): it writes the payloads
// to the connection, after those of every earlier Send or Publish and
// before those of later ones, and returns without waiting for the server.
// confirm waits for the round trip that tells the server has them (in the
// JetStream mode: for the stream's acknowledgements of them). One
// connection keeps the order, so the engine may send its next round while
// an earlier one waits for its confirmation.
func (t *Transport) Send(ctx context.Context, payloads ...[]byte) (confirm func(context.Context) error, err error) {
	if t.closed.Load() {
		return nil, core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("natstransport: publish: %w", err)
	}
	nc := t.nc.Load()
	if nc == nil {
		dctx, cancel := t.withTimeout(ctx)
		var err error
		nc, err = t.conn(dctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("natstransport: publish: %w", err)
		}
	}
	limit := t.maxPayload(nc)
	for i, p := range payloads {
		if len(p) > limit {
			return nil, fmt.Errorf("natstransport: payload %d of %d bytes over %d: %w", i, len(p), limit, core.ErrPayloadTooLarge)
		}
	}
	if len(payloads) == 0 {
		return func(context.Context) error { return nil }, nil
	}
	if st := nc.Status(); st != nats.CONNECTED {
		if t.closed.Load() {
			return nil, core.ErrClosed
		}
		return nil, fmt.Errorf("natstransport: publish: connection %s: %w", st, ErrNotConnected)
	}
	if t.js != nil {
		return t.js.send(ctx, nc, payloads)
	}
	for _, p := range payloads {
		if err := nc.Publish(t.subject, p); err != nil {
			return nil, t.publishErr(nc, err)
		}
	}
	cf := t.confirm.Load()
	if cf == nil || cf.nc != nc {
		cf = &confirmer{nc: nc}
		cf.fn = func(ctx context.Context) error {
			if err := t.flush(ctx, nc); err != nil {
				return t.publishErr(nc, err)
			}
			return nil
		}
		t.confirm.Store(cf)
	}
	return cf.fn, nil
}

// confirmer is Send's confirm for one connection: made once per
// connection, not per call.
type confirmer struct {
	nc *nats.Conn
	fn func(context.Context) error
}

// publishErr classifies an error of nats.go's Publish or Flush.
func (t *Transport) publishErr(nc *nats.Conn, err error) error {
	switch {
	case t.closed.Load():
		return core.ErrClosed
	case errors.Is(err, nats.ErrMaxPayload):
		// The server's limit changed under the call (a reconnect to a
		// server with a smaller max_payload).
		return fmt.Errorf("natstransport: publish: %w: %w", core.ErrPayloadTooLarge, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("natstransport: publish: %w", err)
	case nc.Status() != nats.CONNECTED:
		return fmt.Errorf("natstransport: publish: connection %s during the call (%w): %w", nc.Status(), err, ErrNotConnected)
	}
	return fmt.Errorf("natstransport: publish: %w", err)
}
