package redistransport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/backplane-go/backplane/core"
)

// ErrConnectionReplaced is the cause of a disconnect in the stream mode
// that the transport noticed only because the reader's client dialled a new
// connection (it found the old one closed while idle).
var ErrConnectionReplaced = errors.New("redistransport: stream reader connection replaced")

// streamField is the field of an entry that carries the payload.
const streamField = "p"

// stream is the state of the stream mode that Publish and Subscribe share.
// The position belongs to the read loop alone.
type stream struct {
	key  string
	opts StreamOptions
	// reader is a client of its own for the read loop: one connection per
	// node, no retries and no redirects, so that a broken connection or a
	// moved slot is an error the loop sees, never a silent reconnect.
	reader redis.UniversalClient
	// dials counts the reader's connections: one dialled while the loop
	// thinks it is connected was a silent reconnect.
	dials atomic.Int64
	// node is the address of the cluster node that holds the stream, the
	// one whose dials count (nil: every dial counts).
	node atomic.Pointer[string]
	// trimmedAt is when Publish last trimmed by age with XTRIM (unix
	// nanos), when MaxLen takes the XADD's trimming argument.
	trimmedAt atomic.Int64
}

// newStream makes the stream mode's state, with a reader client made from
// the options of client.
func newStream(client redis.UniversalClient, key string, o StreamOptions) (*stream, error) {
	var reader redis.UniversalClient
	switch c := client.(type) {
	case *redis.Client:
		ro := *c.Options()
		ro.PoolSize, ro.MinIdleConns, ro.MaxIdleConns, ro.MaxActiveConns = 1, 0, 1, 1
		ro.MaxRetries = -1
		ro.ContextTimeoutEnabled = true
		// The copy would share the original's push-notification
		// handlers; the reader needs none.
		ro.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		reader = redis.NewClient(&ro)
	case *redis.ClusterClient:
		co := *c.Options()
		co.PoolSize, co.MinIdleConns, co.MaxIdleConns, co.MaxActiveConns = 1, 0, 1, 1
		co.MaxRetries, co.MaxRedirects = -1, -1
		co.ContextTimeoutEnabled = true
		co.ReadOnly, co.RouteByLatency, co.RouteRandomly = false, false, false
		co.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
		reader = redis.NewClusterClient(&co)
	default:
		return nil, invalid("the stream mode needs a *redis.Client or *redis.ClusterClient, not %T", client)
	}
	s := &stream{key: key, opts: o, reader: reader}
	if cc, ok := reader.(*redis.ClusterClient); ok {
		cc.OnNewNode(func(n *redis.Client) { n.AddHook(dialCounter{s}) })
	} else {
		reader.AddHook(dialCounter{s})
	}
	return s, nil
}

// dialCounter is a redis.Hook that counts the successful dials to the
// server that holds the stream.
type dialCounter struct{ s *stream }

func (d dialCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if node := d.s.node.Load(); err == nil && (node == nil || *node == addr) {
			d.s.dials.Add(1)
		}
		return c, err
	}
}

func (d dialCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (d dialCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// xadd returns the XADD of one payload, trimming as the options say.
func (s *stream) xadd(p []byte) *redis.XAddArgs {
	a := &redis.XAddArgs{Stream: s.key, Approx: true, Values: []any{streamField, p}}
	if s.opts.MaxLen > 0 {
		a.MaxLen = s.opts.MaxLen
	} else {
		a.MinID = s.minID()
	}
	return a
}

func (s *stream) minID() string {
	return strconv.FormatInt(time.Now().Add(-s.opts.Retention).UnixMilli(), 10)
}

// trimDue reports whether Publish should trim by age with an XTRIM of its
// own: with both bounds, at most once a second.
func (s *stream) trimDue() bool {
	if s.opts.MaxLen <= 0 || s.opts.Retention <= 0 {
		return false
	}
	now := time.Now().UnixNano()
	last := s.trimmedAt.Load()
	return now-last >= int64(time.Second) && s.trimmedAt.CompareAndSwap(last, now)
}

// publish appends each payload as one entry, in one pipeline when there
// are several (or an XTRIM is due).
func (s *stream) publish(ctx context.Context, c redis.UniversalClient, payloads [][]byte) error {
	trim := s.trimDue()
	if len(payloads) == 1 && !trim {
		return c.XAdd(ctx, s.xadd(payloads[0])).Err()
	}
	_, err := c.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, p := range payloads {
			pipe.XAdd(ctx, s.xadd(p))
		}
		if trim {
			pipe.XTrimMinIDApprox(ctx, s.key, s.minID(), 0)
		}
		return nil
	})
	return err
}

// snapshot is what the server that holds the stream says about itself
// and the stream, read on one connection.
type snapshot struct {
	// runID is the server's run_id and replication ID, "" when it does not
	// tell (INFO denied): it changes when the server restarts, and when a
	// replica is promoted or follows another primary.
	runID string
	// durable: the server proves that it lost no acknowledged entry, were
	// it not the one read from before: a primary that was never a replica
	// (no second replication ID) and fsyncs its append-only file before
	// every reply. Only asked for on a reconnect.
	durable bool
	// stream is XINFO STREAM, nil when the key is missing.
	stream *redis.XInfoStream
}

// snapshot reads INFO (all of it on a reconnect, else its server section),
// on a reconnect CONFIG GET appendfsync, and XINFO STREAM.
func (s *stream) snapshot(ctx context.Context, reconnect bool) (snapshot, error) {
	var snap snapshot
	var n *redis.Client
	switch c := s.reader.(type) {
	case *redis.ClusterClient:
		if reconnect {
			// Slots may have moved: refresh the routing table first.
			c.ReloadState(ctx)
		}
		var err error
		if n, err = c.MasterForKey(ctx, s.key); err != nil {
			return snap, err
		}
		addr := n.Options().Addr
		if old := s.node.Swap(&addr); old == nil || *old != addr {
			s.dials.Add(1) // another node: not the connection read from before
		}
	case *redis.Client:
		n = c
	}
	// One command at a time: a pipeline with an error reply in it (XINFO
	// of a missing key) costs go-redis its connection.
	section := []string{"server", "replication"}
	if reconnect {
		section = nil // all of it: persistence and replication too
	}
	info := n.Info(ctx, section...)
	if err := info.Err(); err != nil && !isServerError(err) {
		return snap, err
	}
	dials := s.dials.Load()
	var cfg *redis.MapStringStringCmd
	if reconnect {
		cfg = n.ConfigGet(ctx, "appendfsync")
	}
	xinfo := n.XInfoStream(ctx, s.key)
	switch err := xinfo.Err(); {
	case err == nil:
		snap.stream = xinfo.Val()
	case isServerError(err) && strings.Contains(err.Error(), "no such key"):
	default:
		return snap, err
	}
	if s.dials.Load() != dials {
		return snap, ErrConnectionReplaced // the answers came from two connections
	}
	if info.Err() != nil {
		return snap, nil // INFO denied: the server is unknown
	}
	text := info.Val()
	if id, repl := infoField(text, "run_id"), infoField(text, "master_replid"); id != "" {
		snap.runID = id + "/" + repl
	}
	snap.durable = reconnect && infoField(text, "role") == "master" &&
		infoField(text, "aof_enabled") == "1" &&
		strings.Trim(infoField(text, "master_replid2"), "0") == "" &&
		cfg.Err() == nil && cfg.Val()["appendfsync"] == "always"
	return snap, nil
}

func isServerError(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr)
}

// infoField returns a field of an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && k == field {
			return v
		}
	}
	return ""
}

// start places a subscriber at the stream's end: what is published from
// now on gets a later entry ID, which it reads.
func (s *stream) start(ctx context.Context) (position, error) {
	var p position
	snap, err := s.snapshot(ctx, false)
	if err != nil {
		return p, err
	}
	p.server = snap.runID
	if err := p.anchor(snap.stream); err != nil {
		return p, err
	}
	if s.opts.Replay {
		err = p.rewind(snap.stream)
	}
	return p, err
}

// judge checks p against snap, and on a reconnect checks the server too (a
// server other than the one read from before must prove it lost nothing).
// It returns an error wrapping ErrStreamLoss when entries may have been
// lost, and then places p at the stream's end; any other error means the
// snapshot could not be used.
func (p *position) judge(snap snapshot, reconnect bool) error {
	var loss error
	switch {
	case !reconnect:
	case snap.runID == "" || p.server == "":
		loss = fmt.Errorf("%w: the server does not report its run_id (INFO): a resume cannot be proven", ErrStreamLoss)
	case snap.runID != p.server && !snap.durable:
		loss = fmt.Errorf("%w: the server restarted or failed over (run_id/replication ID %s, was %s) "+
			"and does not prove it kept every entry (appendfsync always on a primary that was never a replica)",
			ErrStreamLoss, snap.runID, p.server)
	}
	p.server = snap.runID
	if loss == nil {
		loss = p.check(snap.stream)
	}
	if loss != nil {
		if err := p.anchor(snap.stream); err != nil {
			return err
		}
		p.seen = true // a missing key from now on is a loss again
	}
	return loss
}

// subscribeStream starts the read loop at the stream's end.
func (t *Transport) subscribeStream(ctx context.Context, h core.Handler) error {
	p, err := t.st.start(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil && t.closed.Load() {
		err = core.ErrClosed
	}
	if err != nil {
		t.subscribed = false
		if t.closed.Load() {
			return core.ErrClosed
		}
		return fmt.Errorf("redistransport: subscribe to stream %s: %w", t.st.key, err)
	}
	t.wg.Add(2)
	go t.readStream(h, p)
	go t.watchModes()
	return nil
}

// readStream is the stream mode's delivery loop: XREAD BLOCK from the
// position on the reader's connection, a check of the position every
// CheckInterval, and after a failed read a check of the server and the
// position before EventReconnected says whether delivery resumed.
func (t *Transport) readStream(h core.Handler, p position) {
	defer t.wg.Done()
	s := t.st
	block := t.opts.HealthCheckInterval
	if block <= 0 {
		block = DefaultHealthCheckInterval
	}
	wait := block + max(t.opts.HealthCheckTimeout, 0)
	t.event(h, core.EventConnected, nil)
	up, checked, backoff := true, time.Now(), time.Duration(0)
	dials := s.dials.Load() // the connections dialled as far as the loop knows
	down := func(err error) bool {
		if up {
			up = false
			t.event(h, core.EventDisconnected, err)
		}
		if backoff == 0 {
			backoff = t.opts.ReconnectBackoff
		} else {
			backoff = min(2*backoff, t.opts.MaxReconnectBackoff)
		}
		t.log.Debug("redistransport: stream read failed", "err", err, "retry_in", backoff)
		return t.sleep(backoff)
	}
	for !t.closed.Load() {
		if !up || time.Since(checked) >= s.opts.CheckInterval {
			ctx, cancel := context.WithTimeout(t.life, wait)
			snap, err := s.snapshot(ctx, !up)
			cancel()
			if t.closed.Load() {
				return
			}
			if err == nil && up && (s.dials.Load() != dials || snap.runID != p.server) {
				err = ErrConnectionReplaced
			}
			if err == nil {
				err = p.judge(snap, !up)
			}
			if err != nil && !errors.Is(err, ErrStreamLoss) {
				if !down(err) {
					return
				}
				continue
			}
			checked, dials = time.Now(), s.dials.Load()
			switch {
			case !up:
				up, backoff = true, 0
				t.report(h, core.Event{Kind: core.EventReconnected, Err: err, Time: time.Now(), Resumed: err == nil})
			case err != nil:
				t.report(h, core.Event{Kind: core.EventLoss, Err: err, Time: time.Now()})
			}
		}
		ctx, cancel := context.WithTimeout(t.life, wait)
		res, err := s.reader.XRead(ctx, &redis.XReadArgs{
			Streams: []string{s.key, p.id.String()}, Count: 1000, Block: block,
		}).Result()
		cancel()
		if t.closed.Load() {
			return
		}
		if err == nil || errors.Is(err, redis.Nil) {
			if s.dials.Load() != dials {
				// What a new connection read is delivered only once
				// the position was verified on it.
				err = ErrConnectionReplaced
			} else if err != nil {
				continue
			}
		}
		if err != nil {
			if !down(err) {
				return
			}
			continue
		}
		for _, xs := range res {
			for _, m := range xs.Messages {
				id, err := parseID(m.ID)
				if err != nil {
					t.log.Error("redistransport: skipping a stream entry", "err", err)
					continue
				}
				p.read(id)
				payload, _ := m.Values[streamField].(string)
				t.message(h, payload)
			}
		}
	}
}
