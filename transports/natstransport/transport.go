package natstransport

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// ErrNotConnected is returned (wrapped) by Publish while the connection to
// the server is down and being re-established; the caller may retry. When
// the connection was down as the call began, nothing of the call was sent.
// When it dropped during the call, some payloads may have reached the
// server, or may be sent by nats.go after the reconnect.
var ErrNotConnected = errors.New("natstransport: not connected")

// Transport is a core.Backplane over a core NATS subject, or over a
// JetStream stream of that subject in the JetStream mode
// (Options.JetStream).
//
// A Transport is safe for concurrent use. Its handler is called from one
// goroutine at a time; it never calls Publish, Send or Close (core.Handler),
// and Close waits for a handler call in progress.
type Transport struct {
	opts    Options
	ns      string
	subject string

	// Set for a Transport made by Open, which dials and owns its
	// connection.
	servers string
	owned   bool

	dialMu  sync.Mutex // guards dialing and the store of nc
	dialing *dial      // the dial in progress, or nil
	dialWG  sync.WaitGroup
	nc      atomic.Pointer[nats.Conn]
	ceiling atomic.Int64              // MaxPayload reported before connecting, or 0
	confirm atomic.Pointer[confirmer] // Send's confirm for the last nc used

	closed    atomic.Bool
	closeOnce sync.Once
	life      context.Context // cancelled by Close
	stop      context.CancelFunc
	done      <-chan struct{} // life.Done()

	mu         sync.Mutex // guards subscribed, sub, connStatus and the start of the watcher
	subscribed bool
	sub        *nats.Subscription
	connStatus chan nats.Status // New only: the state of the caller's connection

	watching atomic.Bool
	notes    chan note // connection changes from nats.go callbacks
	wg       sync.WaitGroup

	hmu     sync.Mutex // serialises handler calls; guards h, active, hclosed
	h       core.Handler
	active  *nats.Subscription // the subscription whose messages go to h
	hclosed bool

	js *jsMode // the JetStream mode, or nil for core NATS
}

type noteKind int

const (
	noteDown noteKind = iota + 1
	noteUp
)

type note struct {
	kind noteKind
	err  error
}

// New returns a Transport over nc on the subject "backplane.<namespace>".
// It does no I/O. The Transport does not close nc, and it does not replace
// nc's callbacks: it follows the connection's state with nc.StatusChanged.
//
// nc should be configured to reconnect (nats.go does by default, up to 60
// attempts; nats.MaxReconnects(-1) is better for a long-lived service).
//
// In the JetStream mode, publishing adds nats.go's acknowledgement
// subscription (one wildcard reply subject) to nc; it stays until nc is
// closed, after the Transport's Close.
func New(nc *nats.Conn, namespace string, opts ...Option) (*Transport, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: natstransport: nil *nats.Conn", core.ErrInvalidOption)
	}
	t, err := newTransport(namespace, opts)
	if err != nil {
		return nil, err
	}
	t.nc.Store(nc)
	return t, nil
}

// Open returns a Transport that connects to the NATS servers in serverURLs
// (one URL or a comma-separated list: nats://, tls://, ws://, wss://, with
// optional user:password@) and owns that connection.
//
// Open does no I/O: it validates its arguments, and the connection is
// dialled by the first Subscribe or Publish, within that call's context
// deadline. A dial that fails (no server, wrong credentials, TLS) fails that
// call with the cause; the next call dials again. Once connected, the
// connection reconnects forever.
//
// The URLs may carry the query parameters of the JetStream mode (see
// JetStreamURLOptions), which apply before opts; any other parameter is an
// error.
func Open(serverURLs, namespace string, opts ...Option) (*Transport, error) {
	if err := validateURLs(serverURLs); err != nil {
		return nil, err
	}
	serverURLs, urlOpts, err := splitURLParams(serverURLs)
	if err != nil {
		return nil, err
	}
	t, err := newTransport(namespace, append(urlOpts, opts...))
	if err != nil {
		return nil, err
	}
	t.servers = serverURLs
	t.owned = true
	return t, nil
}

func newTransport(namespace string, opts []Option) (*Transport, error) {
	o := transportopt.Apply(Options{}, opts)
	o.fill()
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := validateSubject(namespace); err != nil {
		return nil, transportopt.Invalid("natstransport", "namespace %q: %w", namespace, err)
	}
	life, stop := context.WithCancel(context.Background())
	t := &Transport{
		opts:    o,
		ns:      namespace,
		subject: o.SubjectPrefix + "." + namespace,
		life:    life,
		stop:    stop,
		done:    life.Done(),
		notes:   make(chan note, 16),
	}
	if o.JetStream.Enabled {
		t.js = newJSMode(t)
	}
	return t, nil
}

// Close unsubscribes, stops the Transport's goroutine and, for a Transport
// made by Open, closes the connection. It is idempotent. After it returns,
// the handler is not called again and Publish returns core.ErrClosed.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.stop()
		t.mu.Lock()
		sub, connStatus := t.sub, t.connStatus
		t.mu.Unlock()
		if sub != nil {
			_ = sub.Unsubscribe()
		}
		if t.js != nil {
			t.js.close()
		}
		t.wg.Wait()
		if connStatus != nil {
			t.nc.Load().RemoveStatusListener(connStatus)
		}
		t.hmu.Lock()
		t.hclosed = true
		t.hmu.Unlock()
		// A dial in progress ends within ConnectTimeout per server and
		// closes its connection itself, seeing closed.
		t.dialWG.Wait()
		if nc := t.nc.Load(); nc != nil && t.owned {
			nc.Close()
		}
	})
	return nil
}

var (
	_ core.Backplane = (*Transport)(nil)
	_ core.Sender    = (*Transport)(nil)
)
