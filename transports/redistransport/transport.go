package redistransport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// Errors reported as the cause of EventDisconnected.
var (
	// ErrResubscribed is the cause of a disconnect that the transport
	// noticed only because Redis confirmed the subscription again: the
	// client replaced a broken connection by itself.
	ErrResubscribed = errors.New("redistransport: subscription renewed on a new connection")
	// ErrUnsubscribed is the cause of a disconnect when Redis ended the
	// subscription by itself (for example when a cluster slot moved).
	ErrUnsubscribed = errors.New("redistransport: subscription ended by the server")
	// ErrHealthCheck is the cause of a disconnect when the subscriber
	// connection did not answer a PING in time.
	ErrHealthCheck = errors.New("redistransport: no reply to health-check PING")
)

// Transport is a core.Backplane over Redis pub/sub. Messages of a namespace
// travel on one channel, ChannelPrefix + "{" + namespace + "}".
//
// A Transport is safe for concurrent use. Publish may be called from any
// number of goroutines. The handler given to Subscribe is called from one
// goroutine owned by the Transport, one call at a time; it never calls
// Publish or Close (core.Handler), and Close waits for it.
//
// The subscription uses its own connection. When that connection breaks,
// go-redis dials again and renews the subscription by itself; the Transport
// notices (a failed read, a second subscription confirmation, or an
// unanswered health-check PING) and reports EventDisconnected, then
// EventReconnected once Redis confirmed the subscription again.
type Transport struct {
	client  redis.UniversalClient
	owned   bool
	channel string
	sharded bool
	st      *stream // the stream mode's state; nil with pub/sub
	opts    Options
	log     *slog.Logger

	closed atomic.Bool
	life   context.Context // cancelled by Close
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	subscribed bool
	ps         *redis.PubSub

	busy     atomic.Bool           // a handler call is running
	lastRead atomic.Int64          // unix nanos of the last reply on ps
	cause    atomic.Pointer[error] // why the health check replaced ps

	modes modeWatch // the other mode's instances (modes.go)
	// handshake is the last failed TLS handshake of a client Open made
	// (nil otherwise), for the error of a Subscribe that ran out of time.
	handshake *atomic.Pointer[error]
}

var (
	_ core.Backplane = (*Transport)(nil)
	_ core.Splitter  = (*Transport)(nil)
)

// New returns a Transport that publishes and subscribes through client on
// the channel of namespace. The Transport does not own client: Close leaves
// it open. New does no I/O.
func New(client redis.UniversalClient, namespace string, opts ...Option) (*Transport, error) {
	if client == nil {
		return nil, invalid("nil client")
	}
	o, err := buildOptions(namespace, opts)
	if err != nil {
		return nil, err
	}
	return newTransport(client, false, namespace, o)
}

// Open creates a client from a URL and returns a Transport that owns it
// (Close closes the client). Open does no I/O. See the package
// documentation for the URL forms.
func Open(rawURL, namespace string, opts ...Option) (*Transport, error) {
	rawURL, fromURL, err := urlOptions(rawURL)
	if err != nil {
		return nil, err
	}
	o, err := buildOptions(namespace, append(opts, fromURL...))
	if err != nil {
		return nil, err
	}
	var handshake atomic.Pointer[error]
	client, err := newClient(rawURL, o, &handshake)
	if err != nil {
		return nil, err
	}
	t, err := newTransport(client, true, namespace, o)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	t.handshake = &handshake
	return t, nil
}

func buildOptions(namespace string, opts []Option) (Options, error) {
	if namespace == "" {
		return Options{}, invalid("empty namespace")
	}
	return transportopt.Apply(DefaultOptions(), opts).withDefaults()
}

func newTransport(client redis.UniversalClient, owned bool, namespace string, o Options) (*Transport, error) {
	sharded := o.Mode == PubSubSharded
	if o.Mode == PubSubAuto {
		_, sharded = client.(*redis.ClusterClient)
	}
	var st *stream
	if o.Stream.Enabled {
		var err error
		if st, err = newStream(client, o.ChannelPrefix+"{"+namespace+"}", o.Stream); err != nil {
			return nil, err
		}
		sharded = false
	}
	life, stop := context.WithCancel(context.Background())
	return &Transport{
		st:      st,
		life:    life,
		stop:    stop,
		client:  client,
		owned:   owned,
		channel: o.ChannelPrefix + "{" + namespace + "}",
		sharded: sharded,
		opts:    o,
		log:     o.Logger.With("channel", o.ChannelPrefix+"{"+namespace+"}"),
	}, nil
}

// Channel returns the Redis channel the Transport uses; in the stream mode,
// the key of the stream.
func (t *Transport) Channel() string { return t.channel }

// Sharded reports whether the Transport uses sharded pub/sub (never in the
// stream mode).
func (t *Transport) Sharded() bool { return t.sharded }

// Client returns the client the Transport publishes and subscribes with.
func (t *Transport) Client() redis.UniversalClient { return t.client }

// Limits reports the largest payload Publish accepts and how many Publish
// calls the engine may run at once (Options.ConcurrentPublish; one in the
// stream mode, which is Durable).
func (t *Transport) Limits() core.Limits {
	if t.st != nil {
		return core.Limits{MaxPayload: t.opts.MaxPayload, ConcurrentPublish: 1, Durable: true}
	}
	return core.Limits{MaxPayload: t.opts.MaxPayload, ConcurrentPublish: t.opts.ConcurrentPublish}
}

// Publish sends each payload as one message on the namespace's channel, in
// order, in one pipeline (one round trip to a standalone server or to the
// cluster node owning the channel). It returns once Redis replied to every
// command. A payload over Limits().MaxPayload fails with
// core.ErrPayloadTooLarge before anything is sent.
func (t *Transport) Publish(ctx context.Context, payloads ...[]byte) error {
	if t.closed.Load() {
		return core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redistransport: publish: %w", err)
	}
	for i, p := range payloads {
		if len(p) > t.opts.MaxPayload {
			return fmt.Errorf("redistransport: payload %d of %d bytes exceeds %d: %w",
				i, len(p), t.opts.MaxPayload, core.ErrPayloadTooLarge)
		}
	}
	var err error
	switch {
	case len(payloads) == 0:
		return nil
	case t.st != nil:
		err = t.st.publish(ctx, t.client, payloads)
	case len(payloads) == 1:
		err = t.publishCmd(ctx, t.client, payloads[0]).Err()
	default:
		_, err = t.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, p := range payloads {
				t.publishCmd(ctx, pipe, p)
			}
			return nil
		})
	}
	if err != nil {
		if t.closed.Load() {
			return fmt.Errorf("redistransport: publish: %w (%v)", core.ErrClosed, err)
		}
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			// The client gave up on a read or write at the context's
			// deadline and says so as a network timeout.
			return fmt.Errorf("redistransport: publish to %s: %w (%v)", t.channel, cerr, err)
		}
		return fmt.Errorf("redistransport: publish to %s: %w", t.channel, err)
	}
	return nil
}

func (t *Transport) publishCmd(ctx context.Context, c redis.Cmdable, p []byte) *redis.IntCmd {
	if t.sharded {
		return c.SPublish(ctx, t.channel, p)
	}
	return c.Publish(ctx, t.channel, p)
}

// Subscribe starts delivery to h. It returns once Redis confirmed the
// subscription, so that any Publish that starts afterwards reaches h; ctx
// bounds that wait. The first event h sees is EventConnected.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return invalid("nil handler")
	}
	if t.closed.Load() {
		return core.ErrClosed
	}
	t.mu.Lock()
	if t.subscribed {
		t.mu.Unlock()
		return core.ErrAlreadySubscribed
	}
	t.subscribed = true
	t.mu.Unlock()
	if t.st != nil {
		return t.subscribeStream(ctx, h)
	}

	ps := t.newPubSub(ctx)
	if err := t.awaitConfirmation(ctx, ps); err != nil {
		_ = ps.Close()
		t.mu.Lock()
		t.subscribed = false
		t.mu.Unlock()
		if t.closed.Load() {
			return core.ErrClosed
		}
		if t.handshake != nil && ctx.Err() != nil {
			if last := t.handshake.Load(); last != nil {
				err = fmt.Errorf("%w (%v)", err, *last)
			}
		}
		return fmt.Errorf("redistransport: subscribe to %s: %w", t.channel, err)
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed.Load() {
		_ = ps.Close()
		return core.ErrClosed
	}
	t.ps = ps
	t.lastRead.Store(time.Now().UnixNano())
	t.wg.Add(3)
	go t.receive(h, ps)
	go t.healthCheck()
	go t.watchModes()
	return nil
}

func (t *Transport) newPubSub(ctx context.Context) *redis.PubSub {
	if t.sharded {
		return t.client.SSubscribe(ctx, t.channel)
	}
	return t.client.Subscribe(ctx, t.channel)
}

// awaitConfirmation reads from ps until Redis confirmed the subscription.
func (t *Transport) awaitConfirmation(ctx context.Context, ps *redis.PubSub) error {
	// Receive honours a deadline of ctx but not a cancellation: closing ps
	// unblocks it.
	stopOnCancel := context.AfterFunc(ctx, func() { _ = ps.Close() })
	stopOnClose := context.AfterFunc(t.life, func() { _ = ps.Close() })
	stop := func() bool {
		a, b := stopOnCancel(), stopOnClose()
		return a && b // false: ps is closed or being closed
	}
	for {
		m, err := ps.Receive(ctx)
		if err != nil {
			stop()
			if ctx.Err() != nil {
				return fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			return err
		}
		if s, ok := m.(*redis.Subscription); ok && s.Channel == t.channel && isSubscribe(s.Kind) {
			if !stop() {
				if err := ctx.Err(); err != nil {
					return err
				}
				return core.ErrClosed
			}
			return nil
		}
	}
}

func isSubscribe(kind string) bool   { return kind == "subscribe" || kind == "ssubscribe" }
func isUnsubscribe(kind string) bool { return kind == "unsubscribe" || kind == "sunsubscribe" }

// receive is the delivery loop. It reads with Receive rather than
// PubSub.Channel, which drops messages after a send timeout: here a slow
// handler slows the reading, and Redis itself closes a subscriber that
// falls too far behind (client-output-buffer-limit pubsub), which the loop
// reports as a disconnect.
func (t *Transport) receive(h core.Handler, ps *redis.PubSub) {
	defer t.wg.Done()
	t.event(h, core.EventConnected, nil)
	up := true
	backoff := time.Duration(0)
	for {
		m, err := ps.Receive(t.life)
		if t.closed.Load() {
			return
		}
		if err != nil {
			if c := t.cause.Swap(nil); c != nil {
				err = fmt.Errorf("%w: %w", *c, err)
			}
			if up {
				up = false
				t.event(h, core.EventDisconnected, err)
			}
			var rerr redis.Error
			replace := errors.Is(err, redis.ErrClosed) || errors.As(err, &rerr)
			if cur := t.current(); cur != ps {
				// The health check replaced the connection already.
				ps = cur
				continue
			}
			if backoff == 0 {
				backoff = t.opts.ReconnectBackoff
			} else {
				backoff = min(2*backoff, t.opts.MaxReconnectBackoff)
			}
			t.log.Debug("redistransport: receive failed", "err", err, "retry_in", backoff)
			if !t.sleep(backoff) {
				return
			}
			if replace {
				// A server error (for example MOVED after a slot
				// migration) does not make go-redis reconnect: start over.
				if ps = t.replace(ps, nil); ps == nil {
					return
				}
			}
			continue
		}
		t.lastRead.Store(time.Now().UnixNano())
		switch m := m.(type) {
		case *redis.Message:
			if m.Channel == t.channel {
				t.message(h, m.Payload)
			}
		case *redis.Subscription:
			if m.Channel != t.channel {
				continue
			}
			switch {
			case isSubscribe(m.Kind):
				backoff = 0
				if up {
					// The connection was replaced without a read error
					// reaching this loop (for example a failed PING).
					t.event(h, core.EventDisconnected, ErrResubscribed)
				}
				up = true
				t.event(h, core.EventReconnected, nil)
			case isUnsubscribe(m.Kind):
				if up {
					up = false
					t.event(h, core.EventDisconnected, ErrUnsubscribed)
				}
				if ps = t.replace(ps, nil); ps == nil {
					return
				}
			}
		}
	}
}

// current returns the PubSub in use.
func (t *Transport) current() *redis.PubSub {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ps
}

// replace closes old (if it is still current) and installs a fresh
// subscription. It returns the PubSub now in use, or nil after Close.
// cause, when set, is reported by the receive loop as the disconnect cause.
func (t *Transport) replace(old *redis.PubSub, cause error) *redis.PubSub {
	if cc, ok := t.client.(*redis.ClusterClient); ok {
		// Slots may have moved: refresh the routing table first.
		cc.ReloadState(context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), t.opts.MaxReconnectBackoff+5*time.Second)
	np := t.newPubSub(ctx)
	cancel()
	t.mu.Lock()
	if t.closed.Load() || t.ps != old {
		cur := t.ps
		t.mu.Unlock()
		_ = np.Close()
		if t.closed.Load() {
			return nil
		}
		return cur
	}
	t.ps = np
	if cause != nil {
		t.cause.Store(&cause)
	}
	t.lastRead.Store(time.Now().UnixNano())
	t.mu.Unlock()
	_ = old.Close()
	return np
}

// healthCheck PINGs the subscriber connection when it has been silent for
// HealthCheckInterval and replaces it when the PING gets no reply within
// HealthCheckTimeout (a half-open TCP connection never fails a read).
func (t *Transport) healthCheck() {
	defer t.wg.Done()
	interval := t.opts.HealthCheckInterval
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(min(interval, t.opts.HealthCheckTimeout) / 2)
	defer tick.Stop()
	var pingedAt time.Time
	for {
		select {
		case <-t.life.Done():
			return
		case now := <-tick.C:
			if t.busy.Load() {
				// The loop is in the handler, not reading: a PING reply
				// would wait behind it.
				pingedAt = time.Time{}
				continue
			}
			last := time.Unix(0, t.lastRead.Load())
			switch {
			case !pingedAt.IsZero() && last.After(pingedAt):
				pingedAt = time.Time{} // answered
			case !pingedAt.IsZero() && now.Sub(pingedAt) > t.opts.HealthCheckTimeout:
				t.log.Warn("redistransport: subscriber connection silent, replacing it", "since", last)
				pingedAt = time.Time{}
				if t.replace(t.current(), ErrHealthCheck) == nil {
					return
				}
			case pingedAt.IsZero() && now.Sub(last) >= interval:
				ps := t.current()
				ctx, cancel := context.WithTimeout(context.Background(), t.opts.HealthCheckTimeout)
				err := ps.Ping(ctx)
				cancel()
				if err != nil {
					// go-redis replaces the connection on a failed write;
					// the receive loop reports it.
					t.log.Debug("redistransport: health-check PING failed", "err", err)
				}
				pingedAt = now
			}
		}
	}
}

// sleep waits d or until Close; it reports false after Close.
func (t *Transport) sleep(d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-t.life.Done():
		return false
	}
}

func (t *Transport) message(h core.Handler, payload string) {
	t.busy.Store(true)
	defer t.idle()
	defer t.recoverHandler("HandleMessage")
	h.HandleMessage([]byte(payload))
}

func (t *Transport) event(h core.Handler, kind core.EventKind, err error) {
	t.report(h, core.Event{Kind: kind, Err: err, Time: time.Now()})
}

func (t *Transport) report(h core.Handler, ev core.Event) {
	t.busy.Store(true)
	defer t.idle()
	defer t.recoverHandler("HandleEvent")
	if ev.Kind == core.EventDisconnected || ev.Err != nil {
		t.log.Warn("redistransport: subscriber "+ev.Kind.String(), "err", ev.Err, "resumed", ev.Resumed)
	} else {
		t.log.Info("redistransport: subscriber "+ev.Kind.String(), "resumed", ev.Resumed)
	}
	h.HandleEvent(ev)
}

// idle marks the end of a handler call. A slow handler delays the reading
// of replies, so the health check counts the time spent in the handler as
// activity rather than as silence of the connection.
func (t *Transport) idle() {
	t.lastRead.Store(time.Now().UnixNano())
	t.busy.Store(false)
}

func (t *Transport) recoverHandler(method string) {
	if r := recover(); r != nil {
		t.log.Error("redistransport: handler panicked", "method", method, "panic", r)
	}
}

// Close stops delivery and waits until the handler has returned for the last
// time; afterwards Publish returns core.ErrClosed. It closes the client only
// when Open created it. Close is idempotent.
func (t *Transport) Close() error {
	if !t.closed.CompareAndSwap(false, true) {
		return nil
	}
	t.stop()
	t.mu.Lock()
	ps := t.ps
	t.mu.Unlock()
	if ps != nil {
		_ = ps.Close()
	}
	if t.st != nil {
		// Unblocks an XREAD BLOCK, which a cancelled context does not.
		_ = t.st.reader.Close()
	}
	t.wg.Wait()
	if t.owned {
		if err := t.client.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			return fmt.Errorf("redistransport: close client: %w", err)
		}
	}
	return nil
}
