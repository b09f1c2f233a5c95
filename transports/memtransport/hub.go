package memtransport

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// ErrDisconnected is wrapped by the error of Publish on a transport that is
// cut from its hub (Transport.Disconnect or Hub.Restart), and is the default
// cause of EventDisconnected.
var ErrDisconnected = errors.New("memtransport: disconnected")

// errRestart is the cause Hub.Restart reports.
var errRestart = fmt.Errorf("%w: broker restarted", ErrDisconnected)

// Defaults of the HubOptions.
const (
	DefaultMaxPayload = 1 << 20
	DefaultQueueSize  = 4096
)

// HubOption configures a Hub.
type HubOption func(*hubOptions)

type hubOptions struct {
	maxPayload int
	queueSize  int
	logger     *slog.Logger
	// retention > 0 makes the hub durable (WithDurable).
	retention int
}

// WithDurable makes the hub play a broker with a log (core.Limits.Durable):
// messages for a transport that is cut are kept, up to retention of them,
// and a Reconnect delivers them in order after EventReconnected with
// Resumed true; a cut transport that missed more than retention messages
// loses them all, and Reconnect says so (Resumed false). Messages queued
// for a transport when it is cut are kept too.
func WithDurable(retention int) HubOption {
	return func(o *hubOptions) {
		if retention > 0 {
			o.retention = retention
		}
	}
}

// WithMaxPayload sets the largest payload in bytes that Publish accepts
// (Limits().MaxPayload). The default is DefaultMaxPayload (1 MiB); n <= 0
// keeps the default.
func WithMaxPayload(n int) HubOption {
	return func(o *hubOptions) {
		if n > 0 {
			o.maxPayload = n
		}
	}
}

// WithQueueSize sets the number of messages each subscriber's delivery queue
// holds; Publish blocks while a queue is full. The default is
// DefaultQueueSize (4096); n <= 0 keeps the default.
func WithQueueSize(n int) HubOption {
	return func(o *hubOptions) {
		if n > 0 {
			o.queueSize = n
		}
	}
}

// WithLogger sets the logger that reports recovered handler panics. The
// default is slog.Default().
func WithLogger(l *slog.Logger) HubOption {
	return func(o *hubOptions) {
		if l != nil {
			o.logger = l
		}
	}
}

// Hub is an in-process broker: it broadcasts what any of its transports
// publishes to every subscribed transport on the same namespace. A Hub is
// safe for concurrent use. The zero value is not usable; call NewHub.
type Hub struct {
	opts hubOptions

	mu     sync.Mutex
	closed bool
	all    map[*Transport]struct{}
	// subs holds the subscribed transports per namespace. The slices are
	// copied on write, so Publish may range over a snapshot unlocked.
	subs map[string][]*Transport
}

// NewHub returns a new, empty hub. One hub plays one broker.
func NewHub(opts ...HubOption) *Hub {
	o := hubOptions{
		maxPayload: DefaultMaxPayload,
		queueSize:  DefaultQueueSize,
		logger:     slog.Default(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	return &Hub{
		opts: o,
		all:  make(map[*Transport]struct{}),
		subs: make(map[string][]*Transport),
	}
}

// New returns a transport on namespace: one instance's connection to the
// hub. It implements core.Backplane. The transport starts connected and
// unsubscribed. On a closed hub it returns a closed transport.
func (h *Hub) New(namespace string) *Transport {
	t := newTransport(h, namespace)
	h.mu.Lock()
	closed := h.closed
	if !closed {
		h.all[t] = struct{}{}
	}
	h.mu.Unlock()
	if closed {
		_ = t.Close()
	}
	return t
}

// Restart simulates a broker restart. Every connected transport is cut:
// its handler gets EventDisconnected (with an Err wrapping
// ErrDisconnected), the messages queued for it and not yet delivered are
// discarded, and messages published meanwhile are lost. Then every
// transport it cut reconnects: its handler gets EventReconnected and
// delivery resumes. Restart returns once every transport is connected
// again. Transports cut by Transport.Disconnect stay cut.
func (h *Hub) Restart() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	var cut []*Transport
	for t := range h.all {
		if t.disconnect(errRestart) {
			cut = append(cut, t)
		}
	}
	for _, t := range cut {
		t.reconnect()
	}
}

// Close closes every transport of the hub, as Transport.Close does, and
// makes New return closed transports. It is idempotent and returns nil.
func (h *Hub) Close() error {
	h.mu.Lock()
	h.closed = true
	ts := make([]*Transport, 0, len(h.all))
	for t := range h.all {
		ts = append(ts, t)
	}
	h.mu.Unlock()
	for _, t := range ts {
		_ = t.Close()
	}
	return nil
}

// subscribe registers t as a subscriber of its namespace. The caller holds
// h.mu.
func (h *Hub) subscribeLocked(t *Transport) {
	h.subs[t.ns] = append(slices.Clip(h.subs[t.ns]), t)
}

// remove forgets t.
func (h *Hub) remove(t *Transport) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.all, t)
	old := h.subs[t.ns]
	i := slices.Index(old, t)
	if i < 0 {
		return
	}
	if len(old) == 1 {
		delete(h.subs, t.ns)
		return
	}
	h.subs[t.ns] = slices.Delete(slices.Clone(old), i, i+1)
}

// subscribers returns a snapshot of the subscribers of ns; the caller must
// not modify it.
func (h *Hub) subscribers(ns string) []*Transport {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.subs[ns]
}
