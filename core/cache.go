// cache.go: the Cache type, which holds the engine's parts, and its
// construction. Each part's state and what guards it are declared with the
// part: fills (reads.go), publisher (publisher.go), receiver (receiver.go),
// link (liveness.go), lifecycle (lifecycle.go) and coarseClock (clock.go).

package core

import (
	"context"
	"fmt"
	"log/slog"
	"time"
)

// Cache is the engine: a local store kept coherent with other instances
// over a Backplane.
//
// Reads (Get, GetOrLoad) are served from the local store. Invalidate and
// Clear evict locally and then broadcast; other instances evict when the
// message arrives. A Cache is safe for concurrent use. It owns the store and
// the backplane it is given and closes them on Close.
//
// Lifecycle: New does no I/O and starts no goroutine; Start subscribes and
// returns once delivery is active; Close (or Shutdown) drains pending
// publishes and releases everything.
type Cache struct {
	// Set by New and never changed.
	store LocalStore
	bp    Backplane
	opts  Options
	id    SourceID
	log   *slog.Logger
	inst  *instruments
	ctr   counters
	now   func() time.Time

	clock coarseClock // the read path's clock
	fills fills       // the read path: fill guard and single flight
	pub   publisher   // Invalidate and Clear: rounds to the transport
	recv  receiver    // what arrives: verification, peers, evictions
	link  link        // liveness: the link's state, guarded by recv.mu
	echo  echoes      // the latest own messages, to recognise their echo
	life  lifecycle   // Start, Close and the goroutines between them
}

// New returns a Cache over store and bp. It validates the options and does
// no I/O; call Start to subscribe.
func New(store LocalStore, bp Backplane, opts ...Option) (*Cache, error) {
	if store == nil {
		return nil, fmt.Errorf("%w: nil LocalStore", ErrInvalidOption)
	}
	if bp == nil {
		return nil, fmt.Errorf("%w: nil Backplane", ErrInvalidOption)
	}
	o := DefaultOptions()
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	max := bp.Limits().MaxPayload
	if o.MaxPayload > 0 && (max <= 0 || o.MaxPayload < max) {
		max = o.MaxPayload
	}
	trailer := 0
	if o.Keyring != nil {
		trailer = o.Keyring.trailerLen()
	}
	if max < minPayload+trailer {
		return nil, fmt.Errorf("%w: transport payload limit %d is below the minimum %d", ErrInvalidOption, max, minPayload+trailer)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.now == nil {
		o.now, o.realClock = time.Now, true
	}
	c := &Cache{
		store: store,
		bp:    bp,
		opts:  o,
		id:    NewSourceID(),
		inst:  newInstruments(o.MeterProvider),
		now:   o.now,
	}
	c.log = o.Logger.With("backplane.instance", c.id.String()[:8])
	c.clock.init(o.now, !o.realClock)
	c.fills.init()
	c.pub.init(bp, o.QueueSize, max-trailer, trailer)
	c.recv.init()
	c.life.init()
	return c, nil
}

// Open is New followed by Start.
func Open(ctx context.Context, store LocalStore, bp Backplane, opts ...Option) (*Cache, error) {
	c, err := New(store, bp, opts...)
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// ID returns this instance's source ID.
func (c *Cache) ID() SourceID { return c.id }
