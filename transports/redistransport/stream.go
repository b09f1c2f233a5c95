package redistransport

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
)

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
		reader = redis.NewClient(&ro)
	case *redis.ClusterClient:
		co := *c.Options()
		co.PoolSize, co.MinIdleConns, co.MaxIdleConns, co.MaxActiveConns = 1, 0, 1, 1
		co.MaxRetries, co.MaxRedirects = -1, -1
		co.ContextTimeoutEnabled = true
		co.ReadOnly, co.RouteByLatency, co.RouteRandomly = false, false, false
		reader = redis.NewClusterClient(&co)
	default:
		return nil, invalid("the stream mode needs a *redis.Client or *redis.ClusterClient, not %T", client)
	}
	return &stream{key: key, opts: o, reader: reader}, nil
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

// node returns the client of the server that holds the stream.
func (s *stream) node(ctx context.Context) (*redis.Client, error) {
	switch c := s.reader.(type) {
	case *redis.ClusterClient:
		return c.MasterForKey(ctx, s.key)
	default:
		return c.(*redis.Client), nil
	}
}

// info returns XINFO STREAM of the stream, nil when the key is missing.
func (s *stream) info(ctx context.Context) (*redis.XInfoStream, error) {
	info, err := s.reader.XInfoStream(ctx, s.key).Result()
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) && strings.Contains(err.Error(), "no such key") {
			return nil, nil
		}
		return nil, err
	}
	return info, nil
}

// server returns the run_id of the server that holds the stream, "" when
// the server does not tell (INFO denied), and whether, if it is not the
// server the subscriber read from before, it proves that it lost no
// acknowledged entry: a primary that was never a replica (no second
// replication ID) and fsyncs its append-only file before every reply.
func (s *stream) server(ctx context.Context) (runID string, durable bool, err error) {
	n, err := s.node(ctx)
	if err != nil {
		return "", false, err
	}
	info, err := n.Info(ctx).Result()
	if err != nil {
		var rerr redis.Error
		if errors.As(err, &rerr) {
			return "", false, nil
		}
		return "", false, err
	}
	runID = infoField(info, "run_id")
	durable = infoField(info, "role") == "master" &&
		infoField(info, "aof_enabled") == "1" &&
		strings.Trim(infoField(info, "master_replid2"), "0") == ""
	if durable {
		cfg, err := n.ConfigGet(ctx, "appendfsync").Result()
		durable = err == nil && cfg["appendfsync"] == "always"
	}
	return runID, durable, nil
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
	id, _, err := s.server(ctx)
	if err != nil {
		return p, err
	}
	info, err := s.info(ctx)
	if err != nil {
		return p, err
	}
	p.server = id
	return p, p.anchor(info)
}

// verify checks p against the stream, and on a reconnect against the
// server too (resume: a server other than the one read from before must
// prove it lost nothing). It returns an error wrapping ErrStreamLoss when
// entries may have been lost, and then places p at the stream's end; any
// other error means the server could not be asked.
func (s *stream) verify(ctx context.Context, p *position, resume bool) error {
	var changed error
	if resume {
		if cc, ok := s.reader.(*redis.ClusterClient); ok {
			cc.ReloadState(ctx)
		}
		id, durable, err := s.server(ctx)
		if err != nil {
			return err
		}
		switch {
		case id == "" || p.server == "":
			changed = fmt.Errorf("%w: the server does not report its run_id (INFO): a resume cannot be proven", ErrStreamLoss)
		case id != p.server && !durable:
			changed = fmt.Errorf("%w: the server restarted or failed over (run_id %.8s, was %.8s) "+
				"and does not prove it kept every entry (appendfsync always on a primary that was never a replica)",
				ErrStreamLoss, id, p.server)
		}
		p.server = id
	}
	info, err := s.info(ctx)
	if err != nil {
		return err
	}
	loss := changed
	if loss == nil {
		loss = p.check(info)
	}
	if loss != nil {
		if err := p.anchor(info); err != nil {
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
	t.wg.Add(1)
	go t.readStream(h, p)
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
			err := s.verify(ctx, &p, !up)
			cancel()
			if t.closed.Load() {
				return
			}
			if err != nil && !errors.Is(err, ErrStreamLoss) {
				if !down(err) {
					return
				}
				continue
			}
			checked = time.Now()
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
		if errors.Is(err, redis.Nil) {
			continue
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
