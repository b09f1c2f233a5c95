package rabbitmqtransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotConnected is returned by Publish, Send and Subscribe while the
	// Transport has no connection to the broker (it is reconnecting, or
	// the connection given to New is closed). Nothing was sent.
	ErrNotConnected = errors.New("rabbitmqtransport: not connected")
	// ErrNacked is returned when the broker answered a publish with a
	// negative acknowledgement (basic.nack): it did not take the message.
	ErrNacked = errors.New("rabbitmqtransport: publish nacked by the broker")
	// ErrBlocked is returned by Publish and Send while the broker has
	// blocked the connection (connection.blocked, a memory or disk
	// alarm): nothing is sent until it unblocks it.
	ErrBlocked = errors.New("rabbitmqtransport: connection blocked by the broker")
	// ErrOverflow is the cause of EventLoss: the instance's queue reached
	// its length limit and the broker dropped its oldest messages.
	ErrOverflow = errors.New("rabbitmqtransport: queue overflowed, the broker dropped messages")
	// ErrConnectionClosed is the cause reported when the connection given
	// to New closed: the Transport cannot reconnect it.
	ErrConnectionClosed = errors.New("rabbitmqtransport: the connection given to New is closed")
)

// Transport is a core.Backplane (and core.Sender) over RabbitMQ: a fanout
// exchange per namespace, "<ExchangePrefix><namespace>", and an exclusive
// queue per instance bound to it.
//
// A Transport is safe for concurrent use. Publish and Send may be called
// from any number of goroutines; they share one channel in confirm mode,
// which keeps their order. The handler given to Subscribe is called from
// the Transport's goroutines, one call at a time; it never calls Publish or
// Close (core.Handler), and Close waits for it.
//
// A Transport made by Open owns its connection and reconnects it, with
// backoff, whenever it or one of its channels closes; see the package
// documentation for what a reconnect means for delivery.
type Transport struct {
	opts     Options
	url      string           // Open: the broker URL without our parameters
	given    *amqp.Connection // New: the application's connection
	exchange string
	log      *slog.Logger

	closed atomic.Bool
	life   context.Context // cancelled by Close
	stop   context.CancelFunc
	wg     sync.WaitGroup // the supervisor and the delivery goroutines

	connect chan struct{} // one first connect at a time

	mu         sync.Mutex
	sess       *session // the live session; nil while down
	running    bool     // the supervisor owns the link
	subscribed bool
	h          core.Handler
	lastErr    error // why the link is down

	hmu     sync.Mutex // held during every handler call
	hclosed bool

	blocked atomic.Pointer[string] // the reason of connection.blocked
}

var (
	_ core.Backplane = (*Transport)(nil)
	_ core.Sender    = (*Transport)(nil)
)

// Open returns a Transport that dials rawURL (amqp:// or amqps://,
// user:password@host:port/vhost) when first needed and owns the
// connection: it reconnects it and Close closes it. Open does no I/O.
// Query parameters are those of amqp091-go's URIs (heartbeat,
// connection_timeout, channel_max, auth_mechanism, and for amqps://
// cacertfile, certfile, keyfile, server_name_indication); transports.Open
// takes this package's own parameters instead (see the package
// documentation).
func Open(rawURL, namespace string, opts ...Option) (*Transport, error) {
	o, err := buildOptions(namespace, opts)
	if err != nil {
		return nil, err
	}
	if _, err := amqp.ParseURI(rawURL); err != nil {
		return nil, transportopt.Invalid(pkg, "broker URL %s: %v", redact(rawURL), err)
	}
	return newTransport(rawURL, nil, namespace, o), nil
}

// New returns a Transport over conn, which the application dialled and
// keeps owning: Close leaves it open, and the Transport never dials. The
// Transport opens its two channels on conn and reopens them when they
// close; when conn itself closes, the Transport reports EventDisconnected
// and stays disconnected (Publish fails with ErrNotConnected): make a new
// Transport on a new connection. Options marked "Open only" are ignored.
// New does no I/O.
func New(conn *amqp.Connection, namespace string, opts ...Option) (*Transport, error) {
	if conn == nil {
		return nil, transportopt.Invalid(pkg, "nil connection")
	}
	o, err := buildOptions(namespace, opts)
	if err != nil {
		return nil, err
	}
	return newTransport("", conn, namespace, o), nil
}

func buildOptions(namespace string, opts []Option) (Options, error) {
	if namespace == "" {
		return Options{}, transportopt.Invalid(pkg, "empty namespace")
	}
	return transportopt.Apply(DefaultOptions(), opts).withDefaults(namespace)
}

func newTransport(rawURL string, given *amqp.Connection, namespace string, o Options) *Transport {
	life, stop := context.WithCancel(context.Background())
	ex := o.ExchangePrefix + namespace
	return &Transport{
		opts:     o,
		url:      rawURL,
		given:    given,
		exchange: ex,
		log:      o.Logger.With("exchange", ex),
		life:     life,
		stop:     stop,
		connect:  make(chan struct{}, 1),
	}
}

// Exchange returns the name of the namespace's fanout exchange.
func (t *Transport) Exchange() string { return t.exchange }

// Queue returns the name of the instance's queue while subscribed and
// connected ("" otherwise). A reconnect declares the queue anew; a
// broker-named queue gets a new name.
func (t *Transport) Queue() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess == nil {
		return ""
	}
	return t.sess.queue
}

// Conn returns the connection in use: the one given to New, or the current
// one of a Transport made by Open (nil while it has none). Closing the
// connection of a Transport made by Open is a fault it recovers from like
// any other dropped connection; closing the one given to New leaves the
// Transport disconnected for good.
func (t *Transport) Conn() *amqp.Connection {
	if t.given != nil {
		return t.given
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sess == nil {
		return nil
	}
	return t.sess.conn
}

// Limits reports Options.MaxPayload and Options.ConcurrentPublish; the
// transport is not Durable.
func (t *Transport) Limits() core.Limits {
	return core.Limits{MaxPayload: t.opts.MaxPayload, ConcurrentPublish: t.opts.ConcurrentPublish}
}

// Connect connects to the broker now, if the Transport has never been
// connected, instead of at the first Subscribe or Publish; ctx bounds the
// dial. It returns ErrNotConnected while a dropped connection is being
// replaced.
func (t *Transport) Connect(ctx context.Context) error {
	_, err := t.session(ctx)
	if err != nil && !errors.Is(err, core.ErrClosed) {
		return fmt.Errorf("rabbitmqtransport: %w", err)
	}
	return err
}

// Close stops delivery, waits until the handler has returned for the last
// time and closes the connection if Open made it (the channels only, with
// New). Afterwards Publish returns core.ErrClosed. Close is idempotent.
func (t *Transport) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	t.stop()
	t.mu.Lock()
	s := t.sess
	t.sess = nil
	t.mu.Unlock()
	var err error
	if s != nil {
		err = s.shutdown(t.given == nil)
	}
	t.wg.Wait()
	t.hmu.Lock()
	t.hclosed = true
	t.hmu.Unlock()
	if err != nil && !errors.Is(err, amqp.ErrClosed) {
		return fmt.Errorf("rabbitmqtransport: close: %w", err)
	}
	return nil
}

// redact returns rawURL without its password, for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(malformed URL)"
	}
	return u.Redacted()
}
