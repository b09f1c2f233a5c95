package pgtransport

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// Errors reported as the cause of core events.
var (
	// ErrPing is the cause of a disconnect when the listener connection
	// did not answer a ping within Options.PingTimeout.
	ErrPing = errors.New("pgtransport: no reply to the listener connection's ping")
	// ErrPendingLimit is the cause of core.EventLoss when notifications
	// were dropped because Options.PendingMessages of them were already
	// waiting for the handler.
	ErrPendingLimit = errors.New("pgtransport: notifications dropped: too many waiting for the handler")
)

// notifySQL publishes one payload. pg_notify takes the channel as text, so
// it is neither case-folded nor truncated, like a quoted identifier.
const notifySQL = "SELECT pg_notify($1, $2)"

// notifyStmt names notifySQL prepared on a pool connection.
const notifyStmt = "backplane_pg_notify"

// connectTimeout bounds one attempt to open the listener connection, when
// the connection configuration sets no connect_timeout of its own.
const connectTimeout = 15 * time.Second

// Transport is a core.Backplane over PostgreSQL LISTEN/NOTIFY. Messages of
// a namespace travel on one channel, ChannelName(ChannelPrefix,
// namespace), each payload base64-encoded as the text of one NOTIFY.
//
// Publish runs on a connection of a *pgxpool.Pool. The subscription has a
// connection of its own, dialled with the pool's connection configuration
// (and its BeforeConnect and AfterConnect hooks): a LISTEN holds a
// session, which a pooled connection cannot keep.
//
// A Transport is safe for concurrent use. The handler given to Subscribe
// is called from one goroutine owned by the Transport, one call at a time;
// it never calls Publish or Close (core.Handler), and Close waits for it.
type Transport struct {
	pool          *pgxpool.Pool
	owned         bool
	connConfig    *pgx.ConnConfig
	beforeConnect func(context.Context, *pgx.ConnConfig) error
	afterConnect  func(context.Context, *pgx.Conn) error
	channel       string
	listenSQL     string
	opts          Options
	log           *slog.Logger

	closed atomic.Bool
	life   context.Context // cancelled by Close
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	subscribed bool

	pid     atomic.Uint32 // backend PID of the listener connection; 0 while down
	queue   chan item     // received notifications and events, for deliver
	dropped atomic.Int64  // notifications dropped since the last EventLoss
	loss    atomic.Int64  // notifications dropped in all
}

// item is one handler call: a payload, or an event when ev is set.
type item struct {
	payload []byte
	ev      *core.Event
}

var _ core.Backplane = (*Transport)(nil)

// New returns a Transport that publishes through pool and listens on a
// connection of its own dialled with pool's configuration, on the channel
// of namespace. The Transport does not own pool: Close leaves it open. New
// does no I/O.
func New(pool *pgxpool.Pool, namespace string, opts ...Option) (*Transport, error) {
	if pool == nil {
		return nil, invalid("nil pool")
	}
	o, err := buildOptions(namespace, opts)
	if err != nil {
		return nil, err
	}
	return newTransport(pool, pool.Config(), false, namespace, o), nil
}

// Open creates a pool from a connection string (a postgres:// or
// postgresql:// URL, or key=value pairs, as pgxpool.ParseConfig takes) and
// returns a Transport that owns it (Close closes the pool). Open does no
// I/O.
func Open(connString, namespace string, opts ...Option) (*Transport, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("pgtransport: %w: %v", core.ErrInvalidOption, err)
	}
	return OpenConfig(cfg, namespace, opts...)
}

// OpenConfig creates a pool from cfg (made by pgxpool.ParseConfig) and
// returns a Transport that owns it, as Open. It does no I/O.
func OpenConfig(cfg *pgxpool.Config, namespace string, opts ...Option) (*Transport, error) {
	if cfg == nil {
		return nil, invalid("nil pool configuration")
	}
	o, err := buildOptions(namespace, opts)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		return nil, fmt.Errorf("pgtransport: %w: %v", core.ErrInvalidOption, err)
	}
	return newTransport(pool, pool.Config(), true, namespace, o), nil
}

func buildOptions(namespace string, opts []Option) (Options, error) {
	if namespace == "" {
		return Options{}, invalid("empty namespace")
	}
	return transportopt.Apply(DefaultOptions(), opts).withDefaults()
}

func newTransport(pool *pgxpool.Pool, cfg *pgxpool.Config, owned bool, namespace string, o Options) *Transport {
	life, stop := context.WithCancel(context.Background())
	channel := ChannelName(o.ChannelPrefix, namespace)
	return &Transport{
		pool:          pool,
		owned:         owned,
		connConfig:    cfg.ConnConfig,
		beforeConnect: cfg.BeforeConnect,
		afterConnect:  cfg.AfterConnect,
		channel:       channel,
		listenSQL:     "LISTEN " + pgx.Identifier{channel}.Sanitize(),
		opts:          o,
		log:           o.Logger.With("channel", channel),
		life:          life,
		stop:          stop,
	}
}

// Channel returns the PostgreSQL channel the Transport uses.
func (t *Transport) Channel() string { return t.channel }

// Pool returns the pool the Transport publishes through.
func (t *Transport) Pool() *pgxpool.Pool { return t.pool }

// ListenerPID returns the backend process ID of the listener connection
// (pg_stat_activity.pid), or 0 before Subscribe and while it reconnects.
func (t *Transport) ListenerPID() uint32 { return t.pid.Load() }

// Dropped returns how many received notifications the Transport dropped
// because Options.PendingMessages of them were waiting for the handler.
func (t *Transport) Dropped() int64 { return t.loss.Load() }

// Limits reports the largest payload Publish accepts and how many Publish
// calls the engine may run at once.
func (t *Transport) Limits() core.Limits {
	return core.Limits{MaxPayload: t.opts.MaxPayload, ConcurrentPublish: t.opts.ConcurrentPublish}
}

// Connect checks that the server accepts a connection of the pool, within
// ctx, so that a wrong address or credentials fail here rather than at the
// first Publish or Subscribe.
func (t *Transport) Connect(ctx context.Context) error {
	if t.closed.Load() {
		return core.ErrClosed
	}
	c, err := t.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("pgtransport: connect: %w", err)
	}
	defer c.Release()
	if err := c.Ping(ctx); err != nil {
		return fmt.Errorf("pgtransport: connect: %w", err)
	}
	return nil
}

// Publish sends each payload as one NOTIFY on the namespace's channel, in
// order, on one connection of the pool. Each NOTIFY is a transaction of
// its own, so that PostgreSQL does not fold identical payloads into one
// notification as it does within a transaction; the NOTIFYs of one call
// are pipelined (one round trip). It returns once the server committed
// every one. A payload over Limits().MaxPayload fails with
// core.ErrPayloadTooLarge before anything is sent. An error means some
// payloads may have been published and others not.
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	if t.closed.Load() {
		return core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pgtransport: publish: %w", err)
	}
	for i, p := range payloads {
		if len(p) > t.opts.MaxPayload {
			return fmt.Errorf("pgtransport: payload %d of %d bytes exceeds %d: %w",
				i, len(p), t.opts.MaxPayload, core.ErrPayloadTooLarge)
		}
	}
	if len(payloads) == 0 {
		return nil
	}
	// Close ends a Publish in flight, so that closing an owned pool, which
	// waits for its connections to come back, does not wait for it.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(t.life, cancel)()
	err := t.publish(ctx, payloads)
	if err != nil {
		if t.closed.Load() {
			return fmt.Errorf("pgtransport: publish: %w (%v)", core.ErrClosed, err)
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			return fmt.Errorf("pgtransport: publish to %s: %w (%v)", t.channel, cerr, err)
		}
		return fmt.Errorf("pgtransport: publish to %s: %w", t.channel, err)
	}
	return nil
}

func (t *Transport) publish(ctx context.Context, payloads [][]byte) error {
	c, err := t.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	conn := c.Conn()
	if len(payloads) == 1 {
		// One round trip either way; Exec uses the connection's statement
		// cache (or the pool's query mode), so the server does not parse
		// the NOTIFY every time.
		_, err := conn.Exec(ctx, notifySQL, t.channel, base64.StdEncoding.EncodeToString(payloads[0]))
		return err
	}
	// Several: pipelined, on the statement prepared on this connection
	// when the pool's mode caches statements.
	var sd *pgconn.StatementDescription
	if conn.Config().DefaultQueryExecMode == pgx.QueryExecModeCacheStatement {
		if sd, err = conn.Prepare(ctx, notifyStmt, notifySQL); err != nil {
			return err
		}
	}
	channel := []byte(t.channel)
	size := 0
	for _, payload := range payloads {
		size += encodedLen(len(payload))
	}
	buf := make([]byte, size)
	p := conn.PgConn().StartPipeline(ctx)
	for _, payload := range payloads {
		text := buf[:encodedLen(len(payload))]
		buf = buf[len(text):]
		base64.StdEncoding.Encode(text, payload)
		if sd != nil {
			p.SendQueryStatement(sd, [][]byte{channel, text}, nil, nil)
		} else {
			p.SendQueryParams(notifySQL, [][]byte{channel, text}, nil, nil, nil)
		}
		// A Sync after every NOTIFY ends its implicit transaction.
		p.SendPipelineSync()
	}
	if err := p.Flush(); err != nil {
		_ = p.Close()
		return err
	}
	var first error
	for synced := 0; synced < len(payloads); {
		res, err := p.GetResults()
		if err != nil {
			first = cmp(first, err)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				break // the connection failed
			}
			continue
		}
		switch r := res.(type) {
		case nil:
			synced = len(payloads)
		case *pgconn.ResultReader:
			if _, err := r.Close(); err != nil {
				first = cmp(first, err)
			}
		case *pgconn.PipelineSync:
			synced++
		}
	}
	if err := p.Close(); err != nil {
		first = cmp(first, err)
	}
	return first
}

// cmp returns first, or err when first is nil.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// Close stops delivery and waits until the handler has returned for the
// last time; afterwards Publish returns core.ErrClosed. It ends Publish
// calls in flight, closes the listener connection, and closes the pool
// only when Open created it. Close is idempotent.
func (t *Transport) Close() error {
	// Under mu, so that a Subscribe either starts its goroutines before
	// (and Close waits for them) or sees the Transport closed.
	t.mu.Lock()
	first := t.closed.CompareAndSwap(false, true)
	t.mu.Unlock()
	if !first {
		return nil
	}
	t.stop()
	t.wg.Wait()
	if t.owned {
		t.pool.Close()
	}
	return nil
}
