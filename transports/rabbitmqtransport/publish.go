// Publish and Send (core.Sender): publishing on the session's channel in
// confirm mode and waiting for the broker's acknowledgements.

package rabbitmqtransport

import (
	"context"
	"errors"
	"fmt"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
)

// Publish sends each payload as one message to the namespace's exchange,
// in order, and returns once the broker confirmed every one of them
// (publisher confirms): a negative acknowledgement fails with ErrNacked, a
// channel or connection that closes first with ErrNotConnected, an ended
// ctx with its error. Publish does not buffer while disconnected: it
// fails with ErrNotConnected and sends nothing. A payload over
// Limits().MaxPayload fails with core.ErrPayloadTooLarge before anything
// is sent.
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	confirm, err := t.Send(ctx, payloads...)
	if err != nil {
		return err
	}
	return confirm(ctx)
}

// Send is the first half of Publish (core.Sender): it writes the payloads
// to the channel, after those of every earlier Send or Publish and before
// those of later ones, and returns without waiting for the broker. confirm
// waits for the broker's acknowledgements of them and returns what Publish
// would have; it may be called more than once.
func (t *Transport) Send(ctx context.Context, payloads ...[]byte) (confirm func(context.Context) error, err error) {
	if t.closed.Load() {
		return nil, core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("rabbitmqtransport: publish: %w", err)
	}
	for i, p := range payloads {
		if len(p) > t.opts.MaxPayload {
			return nil, fmt.Errorf("rabbitmqtransport: payload %d of %d bytes over %d: %w", i, len(p), t.opts.MaxPayload, core.ErrPayloadTooLarge)
		}
	}
	if len(payloads) == 0 {
		return noConfirm, nil
	}
	s, err := t.session(ctx)
	if err != nil {
		return nil, publishErr(err)
	}
	if reason := t.blocked.Load(); reason != nil {
		return nil, fmt.Errorf("rabbitmqtransport: publish to %s: %w (%s)", t.exchange, ErrBlocked, *reason)
	}
	dcs := make([]*amqp.DeferredConfirmation, 0, len(payloads))
	for _, p := range payloads {
		// The channel serializes publishes and numbers them for the
		// confirms under its own lock.
		dc, err := s.pub.PublishWithDeferredConfirm(t.exchange, "", false, false, amqp.Publishing{Body: p})
		if err != nil {
			return nil, t.sendErr(s, err)
		}
		dcs = append(dcs, dc)
	}
	return func(ctx context.Context) error { return t.await(ctx, s, dcs) }, nil
}

func noConfirm(context.Context) error { return nil }

// await waits for the broker's acknowledgement of every dc.
func (t *Transport) await(ctx context.Context, s *session, dcs []*amqp.DeferredConfirmation) error {
	for i, dc := range dcs {
		select {
		case <-dc.Done():
		case <-ctx.Done():
			return fmt.Errorf("rabbitmqtransport: publish to %s: no confirmation from the broker: %w", t.exchange, ctx.Err())
		}
		if dc.Acked() {
			continue
		}
		if t.closed.Load() {
			return core.ErrClosed
		}
		if s.pub.IsClosed() {
			return fmt.Errorf("rabbitmqtransport: publish to %s: the channel closed before the broker confirmed message %d of %d: %w", t.exchange, i+1, len(dcs), ErrNotConnected)
		}
		return fmt.Errorf("rabbitmqtransport: publish to %s: message %d of %d: %w", t.exchange, i+1, len(dcs), ErrNacked)
	}
	return nil
}

// sendErr classifies an error of a publish on s.
func (t *Transport) sendErr(s *session, err error) error {
	switch {
	case t.closed.Load():
		return core.ErrClosed
	case errors.Is(err, amqp.ErrClosed), s.pub.IsClosed():
		return fmt.Errorf("rabbitmqtransport: publish to %s: %w (%v)", t.exchange, ErrNotConnected, err)
	}
	return fmt.Errorf("rabbitmqtransport: publish to %s: %w", t.exchange, err)
}

// publishErr prefixes an error of session for Publish.
func publishErr(err error) error {
	if errors.Is(err, core.ErrClosed) {
		return core.ErrClosed
	}
	return fmt.Errorf("rabbitmqtransport: publish: %w", err)
}
