package natstransport

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// Transport is a core.Backplane over a core NATS subject.
//
// A Transport is safe for concurrent use. Its handler is called from one
// goroutine at a time; a handler must not call Close.
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

	mu         sync.Mutex // guards sub, connStatus and the start of the watcher
	sub        *nats.Subscription
	connStatus chan nats.Status // New only: the state of the caller's connection

	watching atomic.Bool
	notes    chan note // connection changes from nats.go callbacks
	wg       sync.WaitGroup

	hmu     sync.Mutex // serialises handler calls; guards h, active, hclosed
	h       core.Handler
	active  *nats.Subscription // the subscription whose messages go to h
	hclosed bool
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
func Open(serverURLs, namespace string, opts ...Option) (*Transport, error) {
	t, err := newTransport(namespace, opts)
	if err != nil {
		return nil, err
	}
	if err := validateURLs(serverURLs); err != nil {
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
	return &Transport{
		opts:    o,
		ns:      namespace,
		subject: o.SubjectPrefix + "." + namespace,
		life:    life,
		stop:    stop,
		done:    life.Done(),
		notes:   make(chan note, 16),
	}, nil
}

// validateSubject checks s against the NATS subject rules for a literal
// subject: non-empty tokens separated by '.', no wildcards, no whitespace or
// control characters.
func validateSubject(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch tok {
		case "":
			return errors.New("empty token (leading, trailing or double '.')")
		case "*", ">":
			return fmt.Errorf("wildcard token %q", tok)
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f {
				return fmt.Errorf("invalid character %q", r)
			}
		}
	}
	return nil
}

func validateURLs(servers string) error {
	if strings.TrimSpace(servers) == "" {
		return fmt.Errorf("%w: natstransport: no server URL", core.ErrInvalidOption)
	}
	for s := range strings.SplitSeq(servers, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil {
			// url.Parse's error quotes the URL; do not echo a password.
			return fmt.Errorf("%w: natstransport: malformed server URL", core.ErrInvalidOption)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%w: natstransport: server URL %s: scheme must be nats, tls, ws or wss", core.ErrInvalidOption, redactURL(u))
		}
		if u.Host == "" {
			return fmt.Errorf("%w: natstransport: server URL %s: no host", core.ErrInvalidOption, redactURL(u))
		}
	}
	return nil
}

func redactURLs(servers string) string {
	var out []string
	for s := range strings.SplitSeq(servers, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil {
			out = append(out, redactURL(u))
		}
	}
	return strings.Join(out, ",")
}

// redactURL hides a password, and a token given as the user part
// (nats://TOKEN@host), which url.URL.Redacted would show.
func redactURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	if _, hasPassword := u.User.Password(); hasPassword {
		c.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		c.User = url.User("xxxxx")
	}
	return c.String()
}

// Subject returns the NATS subject the Transport publishes and subscribes
// to.
func (t *Transport) Subject() string { return t.subject }

// Conn returns the connection, or nil while a Transport made by Open has
// not connected yet.
func (t *Transport) Conn() *nats.Conn { return t.nc.Load() }

// Limits reports the largest payload: the server's max_payload, lowered to
// Options.MaxPayload if that is smaller; and Options.ConcurrentPublish.
//
// Before a Transport made by Open has connected, the server's value is not
// known, and Limits reports DefaultMaxPayload (or Options.MaxPayload). That
// answer is kept as a ceiling: Limits never reports more later, so a caller
// that read the limit early (core.New does) never builds payloads the
// Transport refuses, unless the server's max_payload is below
// DefaultMaxPayload. Against such a server, set WithMaxPayload or call
// Connect before reading Limits.
func (t *Transport) Limits() core.Limits {
	nc := t.nc.Load()
	n := t.maxPayload(nc)
	if nc == nil {
		t.ceiling.CompareAndSwap(0, int64(n))
	}
	return core.Limits{MaxPayload: n, ConcurrentPublish: t.opts.ConcurrentPublish}
}

func (t *Transport) maxPayload(nc *nats.Conn) int {
	n := DefaultMaxPayload
	if nc != nil {
		if m := nc.MaxPayload(); m > 0 {
			n = int(m)
		}
		if c := int(t.ceiling.Load()); c > 0 && c < n {
			n = c
		}
	}
	if t.opts.MaxPayload > 0 && t.opts.MaxPayload < n {
		n = t.opts.MaxPayload
	}
	return n
}

// conn returns the connection, dialling it for a Transport made by Open.
// The dial runs in a goroutine of its own, so that ctx bounds the wait
// without shortening nats.go's connect timeout (which also applies to
// every reconnect); a dial that outlives its caller's ctx still completes
// and its connection serves the next call.
func (t *Transport) conn(ctx context.Context) (*nats.Conn, error) {
	if nc := t.nc.Load(); nc != nil {
		return nc, nil
	}
	t.dialMu.Lock()
	if nc := t.nc.Load(); nc != nil {
		t.dialMu.Unlock()
		return nc, nil
	}
	if t.closed.Load() {
		t.dialMu.Unlock()
		return nil, core.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		t.dialMu.Unlock()
		return nil, err
	}
	d := t.dialing
	if d == nil {
		o, err := t.natsOptions()
		if err != nil {
			t.dialMu.Unlock()
			return nil, err
		}
		d = &dial{done: make(chan struct{})}
		t.dialing = d
		t.dialWG.Add(1)
		go t.dial(o, d)
	}
	t.dialMu.Unlock()
	select {
	case <-d.done:
		if d.err != nil {
			return nil, d.err
		}
		if t.closed.Load() {
			return nil, core.ErrClosed
		}
		return d.nc, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("natstransport: connect to %s: %w", redactURLs(t.servers), ctx.Err())
	}
}

// dial is one connection attempt of a Transport made by Open.
type dial struct {
	done chan struct{} // closed when nc, err are set
	nc   *nats.Conn
	err  error
}

func (t *Transport) dial(o nats.Options, d *dial) {
	defer t.dialWG.Done()
	nc, err := o.Connect()
	if err != nil {
		err = fmt.Errorf("natstransport: connect to %s: %w", redactURLs(t.servers), err)
	}
	t.dialMu.Lock()
	if err == nil {
		if t.closed.Load() {
			nc.Close()
			nc, err = nil, core.ErrClosed
		} else {
			t.nc.Store(nc)
		}
	}
	d.nc, d.err = nc, err
	t.dialing = nil
	t.dialMu.Unlock()
	close(d.done)
}

func (t *Transport) natsOptions() (nats.Options, error) {
	o := nats.GetDefaultOptions()
	o.Servers = nil
	for s := range strings.SplitSeq(t.servers, ",") {
		o.Servers = append(o.Servers, strings.TrimSpace(s))
	}
	o.Name = t.opts.Name
	if o.Name == "" {
		o.Name = "backplane:" + t.ns
	}
	o.AllowReconnect = true
	o.MaxReconnect = -1
	o.ReconnectWait = t.opts.ReconnectWait
	o.PingInterval = t.opts.PingInterval
	o.Timeout = t.opts.ConnectTimeout
	o.User, o.Password, o.Token = t.opts.User, t.opts.Password, t.opts.Token
	var extra []nats.Option
	if t.opts.TLSConfig != nil {
		extra = append(extra, nats.Secure(t.opts.TLSConfig.Clone()))
	}
	if len(t.opts.RootCAFiles) > 0 {
		extra = append(extra, nats.RootCAs(t.opts.RootCAFiles...))
	}
	if t.opts.CredentialsFile != "" {
		extra = append(extra, nats.UserCredentials(t.opts.CredentialsFile))
	}
	if t.opts.NKeySeedFile != "" {
		nk, err := nats.NkeyOptionFromSeed(t.opts.NKeySeedFile)
		if err != nil {
			return o, fmt.Errorf("natstransport: NKey seed file: %w", err)
		}
		extra = append(extra, nk)
	}
	extra = append(extra, t.opts.NATSOptions...)
	for _, f := range extra {
		if err := f(&o); err != nil {
			return o, fmt.Errorf("%w: natstransport: nats option: %w", core.ErrInvalidOption, err)
		}
	}
	// Chain to any callbacks set through NATSOptions.
	prevDown, prevDownOld, prevUp := o.DisconnectedErrCB, o.DisconnectedCB, o.ReconnectedCB
	o.DisconnectedErrCB = func(nc *nats.Conn, err error) {
		if err == nil {
			err = errors.New("natstransport: connection lost")
		}
		t.notify(note{kind: noteDown, err: err})
		if prevDown != nil {
			prevDown(nc, err)
		} else if prevDownOld != nil {
			prevDownOld(nc)
		}
	}
	if o.AsyncErrorCB == nil {
		log := t.opts.Logger
		o.AsyncErrorCB = func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("natstransport: asynchronous error", "subject", subject, "err", err)
		}
	}
	prevClosed := o.ClosedCB
	o.ClosedCB = func(nc *nats.Conn) {
		// nats.go gives up only on errors it deems permanent (for
		// example credentials rejected on every server); Close also ends
		// here, after the watcher has stopped.
		t.notify(note{kind: noteDown, err: nats.ErrConnectionClosed})
		if prevClosed != nil {
			prevClosed(nc)
		}
	}
	o.ReconnectedCB = func(nc *nats.Conn) {
		t.notify(note{kind: noteUp})
		if prevUp != nil {
			prevUp(nc)
		}
	}
	return o, nil
}

// notify passes a connection change to the watcher. Changes before
// Subscribe do not matter and are dropped.
func (t *Transport) notify(n note) {
	if !t.watching.Load() {
		return
	}
	select {
	case t.notes <- n:
	case <-t.done:
	}
}

// Connect dials the connection of a Transport made by Open now rather than
// on first use, so that a wrong URL or credentials fail early and Limits
// reports the server's max_payload from the start. ctx bounds the wait;
// Options.ConnectTimeout bounds each server's dial. For a Transport made by
// New, and once connected, Connect does nothing.
func (t *Transport) Connect(ctx context.Context) error {
	if t.closed.Load() {
		return core.ErrClosed
	}
	if _, err := t.conn(ctx); err != nil {
		return err
	}
	return nil
}

// withTimeout gives ctx a deadline if it has none: nats.go's flush needs
// one.
func (t *Transport) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.opts.FlushTimeout)
}

// flush waits until the server has processed everything sent before.
func (t *Transport) flush(ctx context.Context, nc *nats.Conn) error {
	var err error
	if ctx.Done() == nil {
		// Not cancellable: skip making a context for the timeout.
		err = nc.FlushTimeout(t.opts.FlushTimeout)
	} else {
		c, cancel := t.withTimeout(ctx)
		err = nc.FlushWithContext(c)
		cancel()
	}
	if err != nil && t.closed.Load() {
		return core.ErrClosed
	}
	return err
}

// Subscribe subscribes to the subject and returns once the server the
// connection is attached to has the interest (a round trip after the
// SUB). In a cluster, the interest reaches the other nodes over routes
// shortly after; see the package documentation.
//
// EventConnected is delivered from the Transport's goroutine, as the first
// handler call, right after Subscribe succeeded; never from within
// Subscribe, so a caller may hold a lock around Subscribe that its handler
// also takes.
func (t *Transport) Subscribe(ctx context.Context, h core.Handler) error {
	if h == nil {
		return fmt.Errorf("%w: natstransport: nil handler", core.ErrInvalidOption)
	}
	if t.closed.Load() {
		return core.ErrClosed
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sub != nil {
		return core.ErrAlreadySubscribed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("natstransport: subscribe: %w", err)
	}
	ctx, cancel := t.withTimeout(ctx)
	defer cancel()
	nc, err := t.conn(ctx)
	if err != nil {
		return fmt.Errorf("natstransport: subscribe: %w", err)
	}

	// Hold the handler lock until EventConnected went out, so that it
	// precedes every message. On success the watcher goroutine delivers
	// EventConnected and unlocks (a sync.Mutex may be unlocked by another
	// goroutine than the one that locked it).
	t.hmu.Lock()
	handedOver := false
	defer func() {
		if !handedOver {
			t.hmu.Unlock()
		}
	}()
	if t.closed.Load() {
		return core.ErrClosed
	}
	sub, err := nc.Subscribe(t.subject, t.onMsg)
	if err != nil {
		return fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	msgs, bytes := t.opts.PendingMsgs, t.opts.PendingBytes
	if msgs == 0 {
		msgs = nats.DefaultSubPendingMsgsLimit
	}
	if bytes == 0 {
		bytes = nats.DefaultSubPendingBytesLimit
	}
	if err := sub.SetPendingLimits(msgs, bytes); err != nil {
		_ = sub.Unsubscribe()
		return fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	subStatus := sub.StatusChanged(nats.SubscriptionSlowConsumer)
	var connStatus chan nats.Status
	if !t.owned {
		connStatus = nc.StatusChanged(nats.RECONNECTING, nats.CONNECTED, nats.CLOSED)
	}
	if err := t.flush(ctx, nc); err != nil {
		_ = sub.Unsubscribe()
		if connStatus != nil {
			nc.RemoveStatusListener(connStatus)
		}
		return fmt.Errorf("natstransport: subscribe %s: %w", t.subject, err)
	}
	t.sub = sub
	t.connStatus = connStatus
	t.h, t.active = h, sub
	t.watching.Store(true)
	t.wg.Add(1)
	handedOver = true
	go t.watch(nc, sub, connStatus, subStatus)
	return nil
}

func (t *Transport) onMsg(m *nats.Msg) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	// A message of a subscription whose Subscribe failed is dropped.
	if t.hclosed || m.Sub != t.active {
		return
	}
	defer t.recoverHandler()
	t.h.HandleMessage(m.Data)
}

// event delivers ev unless the Transport is closed.
func (t *Transport) event(ev core.Event) {
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.hclosed {
		return
	}
	t.callEvent(ev)
}

// callEvent calls the handler's HandleEvent, recovering a panic. hmu is
// held.
func (t *Transport) callEvent(ev core.Event) {
	defer t.recoverHandler()
	t.h.HandleEvent(ev)
}

// recoverHandler, deferred around a handler call, recovers and logs a
// panic.
func (t *Transport) recoverHandler() {
	if r := recover(); r != nil {
		t.opts.Logger.Error("natstransport: handler panicked", "subject", t.subject, "panic", r)
	}
}

// reconcileInterval is how often the watcher compares its view of the
// connection with nats.go's, in case a status notification was missed
// (nats.go drops status notifications when a listener's buffer is full).
const reconcileInterval = time.Second

// errMissedDisconnect is the cause of an EventDisconnected that the watcher
// synthesises when it finds that the connection was re-established without
// it having seen the disconnect.
var errMissedDisconnect = errors.New("natstransport: connection was re-established (disconnect not observed)")

// watch turns connection and subscription changes into events. It runs
// from Subscribe until Close.
func (t *Transport) watch(nc *nats.Conn, sub *nats.Subscription, connStatus chan nats.Status, subStatus <-chan nats.SubStatus) {
	defer t.wg.Done()
	w := watcher{t: t, nc: nc, sub: sub, up: true, reconnects: nc.Stats().Reconnects}
	w.dropped, _ = sub.Dropped()
	// Subscribe handed hmu over.
	if !t.hclosed {
		t.callEvent(core.Event{Kind: core.EventConnected, Time: time.Now()})
	}
	t.hmu.Unlock()
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case n := <-t.notes:
			if n.kind == noteDown {
				w.noteDown(n.err)
			} else {
				w.reconcile()
			}
		case s, ok := <-connStatus:
			if !ok {
				connStatus = nil
				continue
			}
			switch s {
			case nats.CONNECTED:
				w.reconcile()
			case nats.CLOSED:
				w.down(nats.ErrConnectionClosed)
			default:
				err := nc.LastError()
				if err == nil {
					err = errors.New("natstransport: connection lost")
				}
				w.noteDown(err)
			}
		case _, ok := <-subStatus:
			if !ok {
				subStatus = nil
				continue
			}
			w.checkDropped()
		case <-tick.C:
			w.reconcile()
			w.checkDropped()
		}
	}
}

// watcher is the state of watch.
type watcher struct {
	t          *Transport
	nc         *nats.Conn
	sub        *nats.Subscription
	up         bool   // as last reported to the handler
	reconnects uint64 // nc's reconnect count when up was last confirmed
	dropped    int    // sub's dropped count last reported
}

// down reports a disconnect unless one is already reported.
func (w *watcher) down(err error) {
	if w.up {
		w.up = false
		w.t.event(core.Event{Kind: core.EventDisconnected, Err: err, Time: time.Now()})
	}
}

// noteDown handles a disconnect notification from nats.go. A notification
// that arrives after reconcile already found the connection re-established
// (and reported the pair) is stale and ignored.
func (w *watcher) noteDown(err error) {
	if w.up && w.nc.Status() == nats.CONNECTED && w.nc.Stats().Reconnects == w.reconnects {
		return
	}
	w.down(err)
}

// reconcile reports a reconnect when the connection is up and either a
// disconnect was reported or nats.go reconnected since the last check (a
// disconnect the watcher did not see), and a disconnect it missed while the
// connection is still down.
func (w *watcher) reconcile() {
	switch st := w.nc.Status(); {
	case st == nats.CONNECTED:
		rc := w.nc.Stats().Reconnects
		if w.up && rc == w.reconnects {
			return
		}
		w.down(errMissedDisconnect)
		if w.t.confirmUp(w.nc) {
			w.up, w.reconnects = true, rc
			w.t.event(core.Event{Kind: core.EventReconnected, Time: time.Now()})
		}
	case st == nats.RECONNECTING, st == nats.CLOSED:
		w.down(fmt.Errorf("natstransport: connection %s", st))
	}
}

// checkDropped reports EventLoss when nats.go dropped messages of the
// subscription since the last report.
func (w *watcher) checkDropped() {
	d, err := w.sub.Dropped()
	if err != nil || d <= w.dropped {
		return
	}
	w.dropped = d
	err = fmt.Errorf("%w (%d dropped by this subscription so far)", nats.ErrSlowConsumer, d)
	w.t.event(core.Event{Kind: core.EventLoss, Err: err, Time: time.Now()})
}

// confirmUp waits until the server has processed the subscription that
// nats.go re-sent on reconnect. It gives up when the connection drops
// again (a new noteUp will follow) or the Transport closes.
func (t *Transport) confirmUp(nc *nats.Conn) bool {
	for {
		ctx, cancel := context.WithTimeout(t.life, t.opts.FlushTimeout)
		err := nc.FlushWithContext(ctx)
		cancel()
		if err == nil {
			return true
		}
		if t.life.Err() != nil || !nc.IsConnected() {
			return false
		}
	}
}

// Publish sends each payload as one message on the subject, then waits for
// one round trip to the server, so that it returns once the server has
// received all of them. Publish does not buffer while the connection is
// down: it fails with ErrNotConnected instead. A payload over
// Limits().MaxPayload fails the call with core.ErrPayloadTooLarge before
// anything is sent.
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
// confirm waits for the round trip that tells the server has them. One
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
