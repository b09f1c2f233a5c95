package core

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
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
	store LocalStore
	bp    Backplane
	opts  Options
	id    SourceID
	log   *slog.Logger
	inst  *instruments
	ctr   counters
	now   func() time.Time
	seed  maphash.Seed
	// coarse is the wall clock in Unix nanoseconds, refreshed every
	// coarseTick while started: reading the clock costs more than the
	// rest of a cache hit on some hosts. Tests with their own clock
	// bypass it (exactClock).
	coarse      atomic.Int64
	clockRead   atomic.Bool   // a read used the clock since the last tick
	clockAsleep atomic.Bool   // clockLoop sleeps until a read wakes it
	clockWake   chan struct{} // buffered: wakes clockLoop
	exactClock  bool

	stripes [numStripes]stripe

	flightMu sync.Mutex
	flights  map[string]*flight
	// nflights is len(flights), for a look without flightMu: an eviction
	// that finds no load in flight has none to detach. Changed with
	// flightMu held.
	nflights atomic.Int32

	maxPayload int // for the envelope, without the signature trailer
	trailer    int

	// lifecycle
	lifeMu    sync.RWMutex // guards started/closed transitions against enqueue
	started   bool
	closed    bool
	inflight  sync.WaitGroup // Invalidate/Clear calls between enqueue and done
	reqs      chan *pubReq
	pubToken  chan struct{} // held by whoever publishes; guards seq
	kick      chan struct{}
	seq       uint64       // last sequence number used
	sender    Sender       // bp as a Sender, or nil
	maxRounds int          // rounds that may be in flight at once (see mayOverlap)
	rounds    atomic.Int32 // rounds in flight whose callers released the token
	// the context publish rounds share (see roundContext); guarded by
	// pubToken
	roundCtx      context.Context
	roundCancel   context.CancelFunc
	roundDeadline time.Time
	// the context that confirmations over a Sender share (see
	// waitContext), and what abandons it; guarded by pubToken
	waitCtx     context.Context // a child of roundCtx, or nil
	waitAbandon func()
	stop        chan struct{}
	runCtx      context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup
	closeErr    error
	closeOne    sync.Once

	// receive side, guarded by recvMu
	recvMu    sync.Mutex
	peers     map[SourceID]*peer
	linkUp    bool
	silent    bool
	lastRecv  time.Time
	ownFresh  time.Time // newest publish time (own clock) of an own message that came back
	baseline  time.Time // since when the peer table is complete
	lastFlush time.Time
	lastCause string
	lastHeard time.Time
	// reorderWindow is Options.ReorderWindow over a transport whose
	// messages may overtake one another, zero otherwise.
	reorderWindow time.Duration
	reorderTimer  *time.Timer // runs expireReorders while messages are missing
	selfCanary    time.Time   // when the own canary last came back
	canarySince   time.Time   // since when canaries are expected
	degraded      atomic.Bool // not caching: link down or silent under PolicyFlush
	pendingCalls  atomic.Int64
	queued        atomic.Int64 // calls handed to the publisher and not answered (tests)
	reorderChecks atomic.Int64 // runs of expireReorders (tests)
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
		store:      store,
		bp:         bp,
		opts:       o,
		id:         NewSourceID(),
		inst:       newInstruments(o.MeterProvider),
		now:        o.now,
		seed:       maphash.MakeSeed(),
		flights:    make(map[string]*flight),
		maxPayload: max - trailer,
		trailer:    trailer,
		reqs:       make(chan *pubReq, o.QueueSize),
		pubToken:   make(chan struct{}, 1),
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		peers:      make(map[SourceID]*peer),
	}
	c.log = o.Logger.With("backplane.instance", c.id.String()[:8])
	c.exactClock = o.now != nil && !o.realClock
	c.coarse.Store(time.Now().UnixNano())
	c.clockWake = make(chan struct{}, 1)
	c.sender, _ = bp.(Sender)
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

// ready reports whether the cache may be used: ErrClosed or ErrNotStarted.
func (c *Cache) ready() error {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	switch {
	case c.closed:
		return ErrClosed
	case !c.started:
		return ErrNotStarted
	}
	return nil
}

func (c *Cache) isClosed() bool {
	c.lifeMu.RLock()
	defer c.lifeMu.RUnlock()
	return c.closed
}
