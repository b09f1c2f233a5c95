// The JetStream mode: the namespace's stream, the ordered consumer that
// reads it, the proof that a resume lost nothing, and publishing with
// acknowledgements.

package natstransport

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/backplane-go/backplane/core"
)

// ErrStreamLoss is wrapped by the Err of every loss the JetStream mode
// reports (core.EventLoss, and the cause logged with an EventReconnected
// that did not resume): its position was trimmed from the stream, the
// stream is gone or was recreated, or its sequence jumped.
var ErrStreamLoss = errors.New("natstransport: messages of the stream may have been lost")

// consumerInactive is how long the server keeps the ephemeral consumer of
// a Transport that went away. A consumer that expires while its Transport
// is disconnected is recreated at the position on reconnect.
const consumerInactive = 30 * time.Second

// resyncTimeout bounds each attempt of a resync (at most
// Options.FlushTimeout): a request sent just as the connection drops gets
// no reply, and the watcher tries again on its next tick.
const resyncTimeout = 2 * time.Second

// jsMode is the state of a Transport in the JetStream mode.
type jsMode struct {
	t    *Transport
	name string // the stream
	cfg  jetstream.StreamConfig

	mu    sync.Mutex // guards js, jsNC, ready
	js    jetstream.JetStream
	jsNC  *nats.Conn
	ready bool // the stream is known to exist

	cmu     sync.Mutex // guards cc, created, broken, lost
	cc      jetstream.ConsumeContext
	created time.Time // creation time of the stream that the position refers to
	broken  bool      // the consumer failed to recreate itself
	lost    error     // a loss found by a resync whose restart failed
	stops   sync.WaitGroup

	// Guarded by t.hmu.
	gen  uint64 // the consumer whose messages reach the handler
	last uint64 // stream sequence of the last message handed to the handler
	gap  bool   // a jump of the sequence was seen since the last resync

	check chan struct{} // the consumer asks the watcher for a resync
}

func newJSMode(t *Transport) *jsMode {
	o := t.opts.JetStream
	cfg := jetstream.StreamConfig{
		Name:        streamName(t.subject),
		Description: "backplane invalidations of namespace " + t.ns,
		Subjects:    []string{t.subject},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		MaxAge:      o.MaxAge,
		MaxMsgs:     -1,
		MaxBytes:    -1,
	}
	if o.Storage == StorageMemory {
		cfg.Storage = jetstream.MemoryStorage
	}
	if o.MaxMsgs > 0 {
		cfg.MaxMsgs = o.MaxMsgs
	}
	if o.MaxBytes > 0 {
		cfg.MaxBytes = o.MaxBytes
	}
	return &jsMode{t: t, name: cfg.Name, cfg: cfg, check: make(chan struct{}, 1)}
}

// streamName maps a subject to a stream name: letters, digits and '-'
// stay, every other byte becomes "_XX" (its hex value), so that distinct
// subjects never share a stream.
func streamName(subject string) string {
	var b strings.Builder
	for i := 0; i < len(subject); i++ {
		c := subject[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "_%02X", c)
		}
	}
	return b.String()
}

// Stream returns the name of the JetStream stream of the namespace, or ""
// in core NATS mode.
func (t *Transport) Stream() string {
	if t.js == nil {
		return ""
	}
	return t.js.name
}

// client returns the JetStream context of nc.
func (j *jsMode) client(nc *nats.Conn) (jetstream.JetStream, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.js != nil && j.jsNC == nc {
		return j.js, nil
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(j.t.opts.FlushTimeout))
	if err != nil {
		return nil, fmt.Errorf("natstransport: jetstream: %w", err)
	}
	j.js, j.jsNC, j.ready = js, nc, false
	return js, nil
}

func (j *jsMode) isReady() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.ready
}

func (j *jsMode) setReady(ok bool) {
	j.mu.Lock()
	j.ready = ok
	j.mu.Unlock()
}

// ensureStream creates the stream, or finds it as another Transport
// created it, and returns its current state.
func (j *jsMode) ensureStream(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	s, err := js.CreateStream(ctx, j.cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// There with other settings: use it as it is.
		s, err = js.Stream(ctx, j.name)
	}
	if err != nil {
		return nil, fmt.Errorf("natstransport: stream %s: %w", j.name, err)
	}
	j.setReady(true)
	return s.CachedInfo(), nil
}

// streamInfo returns the stream's current state, creating the stream
// when it is gone.
func (j *jsMode) streamInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, j.name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return j.ensureStream(ctx, js)
	}
	if err != nil {
		return nil, fmt.Errorf("natstransport: stream %s: %w", j.name, err)
	}
	return s.CachedInfo(), nil
}

// subscribe starts reading at the stream's end. t.hmu is held (Subscribe
// hands it to the watcher), so nothing reaches the handler before
// EventConnected.
func (j *jsMode) subscribe(ctx context.Context, nc *nats.Conn) error {
	js, err := j.client(nc)
	if err != nil {
		return err
	}
	info, err := j.ensureStream(ctx, js)
	if err != nil {
		return err
	}
	j.gen++
	j.last, j.gap = info.State.LastSeq, false
	if j.t.opts.JetStream.Replay && info.State.Msgs > 0 {
		j.last = info.State.FirstSeq - 1
	}
	cc, err := j.consume(ctx, js, j.last+1, j.gen)
	if err != nil {
		return err
	}
	j.cmu.Lock()
	j.cc, j.created = cc, info.Created
	j.cmu.Unlock()
	return nil
}

// consume starts an ordered consumer at stream sequence start whose
// messages reach the handler while gen is current. It returns once the
// server has the consumer, so that every message stored from now on is
// delivered.
func (j *jsMode) consume(ctx context.Context, js jetstream.JetStream, start, gen uint64) (jetstream.ConsumeContext, error) {
	cons, err := js.OrderedConsumer(ctx, j.name, jetstream.OrderedConsumerConfig{
		FilterSubjects:    []string{j.t.subject},
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       start,
		InactiveThreshold: consumerInactive,
		// One attempt per reset: nats.go holds the consumer's lock
		// through its retries, which would block Stop; a failed reset
		// reaches onConsumeErr, and the watcher starts a new consumer.
		MaxResetAttempts: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("natstransport: consumer of stream %s: %w", j.name, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) { j.onMsg(gen, m) }, jetstream.ConsumeErrHandler(j.onConsumeErr))
	if err != nil {
		return nil, fmt.Errorf("natstransport: consumer of stream %s: %w", j.name, err)
	}
	return cc, nil
}

// onMsg hands a message to the handler once, in stream order: a sequence
// at or below the last one delivered is a redelivery and skipped; a
// sequence beyond the next one means messages in between are gone from
// the stream, reported as EventLoss before the message.
func (j *jsMode) onMsg(gen uint64, m jetstream.Msg) {
	meta, err := m.Metadata()
	t := j.t
	t.hmu.Lock()
	defer t.hmu.Unlock()
	if t.hclosed || gen != j.gen {
		return
	}
	if err != nil {
		t.opts.Logger.Warn("natstransport: message without stream metadata", "stream", j.name, "err", err)
		return
	}
	seq := meta.Sequence.Stream
	if seq <= j.last {
		return
	}
	if seq != j.last+1 {
		j.gap = true
		err := fmt.Errorf("%w: stream %s skipped from sequence %d to %d", ErrStreamLoss, j.name, j.last, seq)
		t.callEvent(core.Event{Kind: core.EventLoss, Err: err, Time: time.Now()})
	}
	j.last = seq
	defer t.recoverHandler()
	t.h.HandleMessage(m.Data())
}

// onConsumeErr receives the consumer's errors. The ordered consumer
// recreates itself after most of them; the watcher checks that the stream
// it resumes on is still the one the position refers to. Errors of a
// connection going down are left to the check on reconnect.
func (j *jsMode) onConsumeErr(_ jetstream.ConsumeContext, err error) {
	j.t.opts.Logger.Debug("natstransport: consumer", "stream", j.name, "err", err)
	if j.t.closed.Load() || errors.Is(err, jetstream.ErrConnectionClosed) ||
		errors.Is(err, jetstream.ErrServerShutdown) || errors.Is(err, nats.ErrDisconnected) {
		return
	}
	// The ordered consumer recreates itself after these; any other error
	// is one it does not recover from (a failed recreation among them).
	if !errors.Is(err, jetstream.ErrNoHeartbeat) && !errors.Is(err, jetstream.ErrConsumerDeleted) &&
		!errors.Is(err, nats.ErrNoResponders) {
		j.cmu.Lock()
		j.broken = true
		j.cmu.Unlock()
	}
	select {
	case j.check <- struct{}{}:
	default:
	}
}

// resync proves that delivery can go on from the position without a gap,
// or restarts the consumer at the stream's end. It returns nil when the
// position was proven, the loss otherwise; ok is false when it could not
// tell (the stream was unreachable): the caller tries again later.
func (j *jsMode) resync(nc *nats.Conn) (loss error, ok bool) {
	t := j.t
	ctx, cancel := context.WithTimeout(t.life, min(resyncTimeout, t.opts.FlushTimeout))
	defer cancel()
	js, err := j.client(nc)
	if err != nil {
		return nil, false
	}
	t.hmu.Lock()
	last := j.last
	t.hmu.Unlock()
	j.cmu.Lock()
	created, running, lost := j.created, j.cc != nil && !j.broken, j.lost
	j.cmu.Unlock()
	info, err := j.streamInfo(ctx, js)
	if err != nil {
		if t.life.Err() == nil {
			t.opts.Logger.Warn("natstransport: stream unavailable", "stream", j.name, "err", err)
		}
		return nil, false
	}
	loss = unproven(info, created, last)
	t.hmu.Lock()
	if loss == nil && j.gap {
		loss = fmt.Errorf("%w: stream %s skipped sequences", ErrStreamLoss, j.name)
	}
	j.gap = false
	t.hmu.Unlock()
	if loss == nil {
		// Found before, and not reported yet.
		loss = lost
	}
	if loss == nil && running {
		return nil, true
	}
	// A consumer at the position (which the stream still holds), or
	// after a loss at the stream's end.
	from := last
	if loss != nil {
		from = info.State.LastSeq
	}
	err = j.restart(ctx, js, info.Created, from)
	j.cmu.Lock()
	if err != nil {
		j.lost = loss // the next resync reports it
	} else {
		j.lost = nil
	}
	j.cmu.Unlock()
	if err != nil {
		t.opts.Logger.Warn("natstransport: consumer not restarted", "stream", j.name, "err", err)
		return nil, false
	}
	return loss, true
}

// unproven returns why delivery from the position last in the stream
// created at created may miss messages, or nil when nothing is missing.
func unproven(info *jetstream.StreamInfo, created time.Time, last uint64) error {
	st := info.State
	switch {
	case !info.Created.Equal(created):
		return fmt.Errorf("%w: stream %s was recreated (created %s, the position is of the stream created %s)",
			ErrStreamLoss, info.Config.Name, info.Created.Format(time.RFC3339Nano), created.Format(time.RFC3339Nano))
	case st.LastSeq < last:
		return fmt.Errorf("%w: stream %s ends at sequence %d, before the position %d (purged or recreated)",
			ErrStreamLoss, info.Config.Name, st.LastSeq, last)
	case st.FirstSeq > last+1:
		return fmt.Errorf("%w: stream %s starts at sequence %d: retention removed %d to %d before they were delivered",
			ErrStreamLoss, info.Config.Name, st.FirstSeq, last+1, st.FirstSeq-1)
	}
	return nil
}

// restart replaces the consumer with one that delivers what follows
// stream sequence from, of the stream created at created.
func (j *jsMode) restart(ctx context.Context, js jetstream.JetStream, created time.Time, from uint64) error {
	t := j.t
	t.hmu.Lock()
	j.gen++
	gen := j.gen
	j.last, j.gap = from, false
	t.hmu.Unlock()
	j.cmu.Lock()
	j.stop(j.cc)
	j.cc = nil
	j.cmu.Unlock()
	cc, err := j.consume(ctx, js, from+1, gen)
	if err != nil {
		return err
	}
	j.cmu.Lock()
	if t.closed.Load() {
		j.cmu.Unlock()
		cc.Stop()
		return core.ErrClosed
	}
	j.cc, j.created, j.broken = cc, created, false
	j.cmu.Unlock()
	return nil
}

// stop stops a consumer without waiting: nats.go's Stop waits for a
// recreation attempt in progress. Its messages no longer reach the
// handler (gen moved on, or the Transport is closed). close waits for
// the stops.
func (j *jsMode) stop(cc jetstream.ConsumeContext) {
	if cc == nil {
		return
	}
	j.stops.Go(cc.Stop)
}

// needsRestart reports whether the consumer is to be started again: a
// restart failed, or the consumer failed to recreate itself.
func (j *jsMode) needsRestart() bool {
	j.cmu.Lock()
	defer j.cmu.Unlock()
	return j.cc == nil || j.broken
}

// close stops the consumer. nats.go's publisher (a reply subscription
// and a goroutine following the connection) ends with the connection: its
// CleanupPublisher, called right after the first asynchronous publish,
// can leave that goroutine blocked for good.
func (j *jsMode) close() {
	j.cmu.Lock()
	j.stop(j.cc)
	j.cc = nil
	j.cmu.Unlock()
	j.stops.Wait()
}

// send publishes the payloads asynchronously, in order, and returns a
// confirm that waits for the stream's acknowledgements of all of them.
func (j *jsMode) send(ctx context.Context, nc *nats.Conn, payloads [][]byte) (func(context.Context) error, error) {
	t := j.t
	js, err := j.client(nc)
	if err != nil {
		return nil, err
	}
	if !j.isReady() {
		sctx, cancel := t.withTimeout(ctx)
		_, err := j.ensureStream(sctx, js)
		cancel()
		if err != nil {
			return nil, t.publishErr(nc, err)
		}
	}
	futs := make([]jetstream.PubAckFuture, 0, len(payloads))
	for _, p := range payloads {
		f, err := js.PublishAsync(t.subject, p)
		if err != nil {
			return nil, t.publishErr(nc, err)
		}
		futs = append(futs, f)
	}
	w := &acks{done: make(chan struct{})}
	go j.waitAcks(nc, futs, w)
	return w.confirm, nil
}

// acks is the outcome of one send: err is set before done is closed.
type acks struct {
	done chan struct{}
	err  error
}

func (w *acks) confirm(ctx context.Context) error {
	select {
	case <-w.done:
		return w.err
	default:
	}
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("natstransport: publish: %w", ctx.Err())
	}
}

// waitAcks waits for every acknowledgement of a send; each ends within
// Options.FlushTimeout (nats.go times it out), or when the Transport
// closes.
func (j *jsMode) waitAcks(nc *nats.Conn, futs []jetstream.PubAckFuture, w *acks) {
	defer close(w.done)
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				// The stream is gone (a server that lost it): the next
				// send creates it again.
				j.setReady(false)
			}
			if errors.Is(err, nats.ErrDisconnected) {
				err = fmt.Errorf("%w: %w", err, ErrNotConnected)
			}
			w.err = j.t.publishErr(nc, fmt.Errorf("stream %s did not store the message: %w", j.name, err))
			return
		case <-j.t.done:
			w.err = core.ErrClosed
			return
		}
	}
}
