// dual.go: Dual, one Backplane over two, for moving a fleet from one
// transport or mode to another by rolling deploys.

package transports

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Dual returns a Backplane that publishes every payload on both primary
// and secondary and delivers what either of them delivers. It is the
// transition setting for moving a fleet from one transport or mode to
// another (Redis pub/sub to Redis Streams, say, or Redis to NATS) without
// any instance missing the invalidations of an instance on the other side:
//
//  1. deploy every instance with Dual(new, old) (fxmodule: transition_url
//     set to the old URL, transport_url to the new one);
//  2. once every instance runs Dual, deploy them with the new transport
//     alone.
//
// Moving back is the same with the roles swapped. While instances on the
// old transport alone and instances on Dual share a namespace, each hears
// the other: the old ones read the old transport, on which Dual publishes
// too.
//
// An instance on Dual receives the messages of other Dual instances twice,
// once per side, in no fixed order between sides: Limits.Reorders is true,
// so the engine waits Options.ReorderWindow for a message the other side
// overtook and applies a second copy as the harmless repeat it is. Limits
// are those of both sides together (the smaller MaxPayload); Dual is never
// Durable, since what one side's log keeps the other side may have lost:
// a disconnect of either side, and its reconnect, count as a disconnect
// and a reconnect that may have lost messages. Publish returns when both
// sides have the payloads, or with the error of each side that failed.
//
// Dual calls Bridge on each side that is a Bridger. Close closes both
// sides. Neither side may be subscribed or closed by
// anyone else.
func Dual(primary, secondary core.Backplane) core.Backplane {
	for _, bp := range []core.Backplane{primary, secondary} {
		if b, ok := bp.(Bridger); ok {
			b.Bridge()
		}
	}
	return &dual{sides: [2]core.Backplane{primary, secondary}}
}

// Bridger is implemented by a Backplane that needs to know it is one side
// of a Dual: Dual calls Bridge before anything else. A redistransport
// Transport then tells the transition from a fleet split across modes
// (see core.Splitter).
type Bridger interface {
	Bridge()
}

// sideNames name the sides in errors.
var sideNames = [2]string{"primary", "secondary"}

type dual struct {
	sides [2]core.Backplane

	subMu      sync.Mutex // guards subscribed during Subscribe
	subscribed [2]bool

	mu        sync.Mutex // serialises handler calls; guards what follows
	h         core.Handler
	connected [2]bool // the side reported EventConnected (or delivered)
	down      [2]bool // the side is disconnected
	reported  bool    // EventConnected was passed on
}

func (d *dual) Limits() core.Limits {
	a, b := d.sides[0].Limits(), d.sides[1].Limits()
	l := core.Limits{MaxPayload: a.MaxPayload, Reorders: true}
	if l.MaxPayload <= 0 || (b.MaxPayload > 0 && b.MaxPayload < l.MaxPayload) {
		l.MaxPayload = b.MaxPayload
	}
	return l
}

func (d *dual) Publish(ctx context.Context, payloads ...[]byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m := d.Limits().MaxPayload; m > 0 {
		for _, p := range payloads {
			if len(p) > m {
				return fmt.Errorf("%w: %d bytes, limit %d", core.ErrPayloadTooLarge, len(p), m)
			}
		}
	}
	var errs [2]error
	var wg sync.WaitGroup
	wg.Go(func() { errs[1] = d.sides[1].Publish(ctx, payloads...) })
	errs[0] = d.sides[0].Publish(ctx, payloads...)
	wg.Wait()
	return d.join(errs)
}

// join names each side's error; nil if both are nil.
func (d *dual) join(errs [2]error) error {
	var out []error
	for i, err := range errs {
		if err != nil {
			out = append(out, fmt.Errorf("%s transport: %w", sideNames[i], err))
		}
	}
	return errors.Join(out...)
}

func (d *dual) Subscribe(ctx context.Context, h core.Handler) error {
	d.subMu.Lock()
	defer d.subMu.Unlock()
	if d.subscribed[0] && d.subscribed[1] {
		return core.ErrAlreadySubscribed
	}
	d.mu.Lock()
	d.h = h
	d.mu.Unlock()
	for i, bp := range d.sides {
		if d.subscribed[i] {
			continue // a retry after the other side failed
		}
		if err := bp.Subscribe(ctx, side{d, i}); err != nil {
			return fmt.Errorf("%s transport: %w", sideNames[i], err)
		}
		d.subscribed[i] = true
	}
	return nil
}

func (d *dual) Close() error {
	var errs [2]error
	for i, bp := range d.sides {
		errs[i] = bp.Close()
	}
	return d.join(errs)
}

// side is the Handler given to one side.
type side struct {
	d *dual
	i int
}

func (s side) HandleMessage(p []byte) {
	s.d.mu.Lock()
	defer s.d.mu.Unlock()
	s.d.h.HandleMessage(p)
}

// HandleEvent passes on one event per change of the pair: connected once
// both sides are, disconnected when the first side goes down, reconnected
// (never resumed) when the last one is back, and every loss.
func (s side) HandleEvent(ev core.Event) {
	d := s.d
	d.mu.Lock()
	defer d.mu.Unlock()
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	if ev.Err != nil {
		ev.Err = fmt.Errorf("%s transport: %w", sideNames[s.i], ev.Err)
	}
	other := 1 - s.i
	switch ev.Kind {
	case core.EventConnected:
		d.connected[s.i] = true
		if d.connected[other] && !d.reported {
			d.reported = true
			d.h.HandleEvent(ev)
		}
	case core.EventDisconnected:
		if d.down[s.i] {
			return
		}
		d.down[s.i] = true
		if !d.down[other] {
			d.h.HandleEvent(ev)
		}
	case core.EventReconnected:
		if !d.down[s.i] {
			return
		}
		d.down[s.i] = false
		if !d.down[other] {
			ev.Resumed = false
			d.h.HandleEvent(ev)
		}
	default:
		d.h.HandleEvent(ev)
	}
}
