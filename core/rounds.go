package core

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// encodeBatch de-duplicates the batch's keys and splits them into
// envelopes that fit the payload limit. A clear in the batch subsumes every
// key of it.
func (c *Cache) encodeBatch(batch []*pubReq, seq *uint64) []Envelope {
	now := c.now()
	for _, r := range batch {
		if r.op == OpClear {
			*seq++
			return []Envelope{{Op: OpClear, Source: c.id, Seq: *seq, Sent: now}}
		}
	}
	if len(batch) == 1 && len(batch[0].keys) == 1 {
		// The common round of one call with one key: nothing to split
		// or de-duplicate.
		*seq++
		return []Envelope{{Op: OpInvalidate, Source: c.id, Seq: *seq, Sent: now, Keys: batch[0].keys}}
	}
	total := 0
	for _, r := range batch {
		total += len(r.keys)
	}
	var envs []Envelope
	var cur []string
	// Few keys are de-duplicated by scanning the keys accepted so far;
	// many through a map.
	var seen map[string]struct{}
	if total > smallBatch {
		seen = make(map[string]struct{}, total)
	}
	dup := func(k string) bool {
		if seen == nil {
			return slices.Contains(cur, k) || slices.ContainsFunc(envs, func(e Envelope) bool { return slices.Contains(e.Keys, k) })
		}
		if _, ok := seen[k]; ok {
			return true
		}
		seen[k] = struct{}{}
		return false
	}
	size := headerLen + 3
	emit := func() {
		*seq++
		envs = append(envs, Envelope{Op: OpInvalidate, Source: c.id, Seq: *seq, Sent: now, Keys: cur})
		cur, size = nil, headerLen+3
	}
	for _, r := range batch {
		for _, k := range r.keys {
			if dup(k) {
				continue
			}
			kl := keyEncodedLen(k)
			if len(cur) > 0 && (size+kl > c.maxPayload || len(cur) == MaxKeysPerMessage) {
				emit()
			}
			cur = append(cur, k)
			size += kl
		}
	}
	if len(cur) > 0 {
		emit()
	}
	return envs
}

// publish encodes and sends envs in one Publish call, bounded by
// PublishTimeout, Close, and ctx when not nil.
func (c *Cache) publish(ctx context.Context, envs []Envelope, op Op) error {
	if len(envs) == 0 {
		return nil
	}
	payloads, keys, err := c.encode(envs)
	if err != nil {
		return err
	}
	pctx, release := c.roundCtxFor(ctx)
	start := time.Now()
	err = c.bp.Publish(pctx, payloads...)
	release()
	return c.published(op, envs[0].Op, len(payloads), keys, start, err)
}

// encode encodes envs (signed with a Keyring) and counts their keys.
func (c *Cache) encode(envs []Envelope) (payloads [][]byte, keys int, err error) {
	payloads = make([][]byte, len(envs))
	for i := range envs {
		if envs[i].Sent.IsZero() {
			envs[i].Sent = c.now()
		}
		var p []byte
		if kr := c.opts.Keyring; kr != nil {
			p, err = kr.AppendSigned(make([]byte, 0, envs[i].EncodedLen()+kr.trailerLen()), &envs[i])
		} else {
			p, err = envs[i].MarshalBinary()
		}
		if err != nil { // keys were validated on entry: this is a bug
			return nil, 0, fmt.Errorf("backplane: encode: %w", err)
		}
		payloads[i] = p
		keys += len(envs[i].Keys)
	}
	return payloads, keys, nil
}

// published counts the outcome of a publish that started at start and
// returns the error to give its callers.
func (c *Cache) published(op, first Op, messages, keys int, start time.Time, err error) error {
	c.inst.record(c.inst.publishDuration, time.Since(start))
	if err != nil {
		c.ctr.publishErrors.Add(1)
		c.inst.add(c.inst.publishErrors, 1)
		if op != OpHeartbeat {
			c.log.Warn("backplane: publish failed", "op", op, "messages", messages, "err", err)
		}
		return fmt.Errorf("backplane: publish: %w", err)
	}
	c.ctr.published.Add(uint64(messages))
	c.ctr.keysPublished.Add(uint64(keys))
	c.inst.opCount(c.inst.published, first, int64(messages))
	return nil
}

// sendRound publishes a round that may overlap the next one (mayOverlap)
// and answers it like publishBatch. Over a Sender it sends holding the
// publish token; over a transport that publishes on several connections it
// only encodes. Before it releases the token, it starts rounds of the calls
// that queued meanwhile (startQueued); then it waits for the confirmation,
// or publishes. Later rounds may go out meanwhile.
func (c *Cache) sendRound(ctx context.Context, batch []*pubReq) error {
	r := c.startRound(ctx, batch)
	c.startQueued()
	<-c.pubToken
	if len(c.reqs) > 0 {
		c.kickPublisher()
	}
	return c.finishRound(&r)
}

// round is a publish round under way.
type round struct {
	batch    []*pubReq
	envs     []Envelope
	payloads [][]byte
	keys     int
	ctx      context.Context             // the round's (roundContext)
	wait     context.Context             // what its confirmation or Publish waits with
	caller   context.Context             // the caller's that can end, or nil
	release  func()                      // frees wait, or nil
	stop     func() bool                 // stops abandoning wait when caller ends, or nil
	confirm  func(context.Context) error // over a Sender
	start    time.Time
	err      error
}

// startRound encodes a round that may overlap the next one and, over a
// Sender, sends it; finishRound ends it. A caller's ctx that can end (given
// for a round that carries only that caller's keys) bounds the round: a
// round whose caller left before it was sent is not sent, and the caller's
// leaving ends the wait for the round's confirmation (see waitContext) or
// its Publish (linkCaller). Called with the publish token held.
func (c *Cache) startRound(ctx context.Context, batch []*pubReq) round {
	r := round{batch: batch}
	r.envs = c.encodeBatch(batch, &c.seq)
	r.payloads, r.keys, r.err = c.encode(r.envs)
	r.start = time.Now()
	if r.err == nil {
		r.ctx = c.roundContext()
		if ctx != nil && ctx.Done() != nil {
			r.caller = ctx
			r.err = ctx.Err()
		}
		switch {
		case r.err != nil:
		case c.sender == nil:
			r.wait, r.release = linkCaller(r.ctx, r.caller)
		default:
			r.wait = c.waitContext()
			if r.caller != nil {
				r.stop = context.AfterFunc(r.caller, c.waitAbandon)
			}
			r.confirm, r.err = c.sender.Send(r.ctx, r.payloads...)
		}
	}
	c.rounds.Add(1)
	return r
}

// finishRound waits for the confirmation of a round started by startRound
// (or publishes it, if the transport is not a Sender), answers its callers
// and returns its error. Called without the publish token.
func (c *Cache) finishRound(r *round) error {
	err := r.err
	if err == nil {
		if r.confirm != nil {
			err = c.confirmRound(r)
		} else {
			err = c.bp.Publish(r.wait, r.payloads...)
		}
	}
	if r.stop != nil {
		r.stop()
	}
	if r.release != nil {
		r.release()
	}
	c.rounds.Add(-1)
	if len(r.envs) > 0 {
		err = c.published(OpInvalidate, r.envs[0].Op, len(r.payloads), r.keys, r.start, err)
	}
	c.answer(r.batch, err)
	return err
}

// confirmRound waits for the confirmation of a round over a Sender. When
// another caller abandoned the wait (its ctx ended), the round waits again,
// on a context of its own: confirm may be called again.
func (c *Cache) confirmRound(r *round) error {
	err := r.confirm(r.wait)
	if err != nil && context.Cause(r.wait) == errAbandoned && (r.caller == nil || r.caller.Err() == nil) {
		ctx, release := linkCaller(r.ctx, r.caller)
		err = r.confirm(ctx)
		release()
	}
	return err
}

// overlap starts a round of batch and finishes it on a goroutine of its
// own. Called with the publish token held, which it keeps.
func (c *Cache) overlap(batch []*pubReq) {
	r := c.startRound(nil, batch)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_ = c.finishRound(&r) // its callers have the error
	}()
}

// startQueued sends rounds of the calls queued while rounds may overlap
// (each confirmed on a goroutine of its own), and leaves the rest queued.
// The token holder calls it before it releases the token: it is running, so
// the queued calls go out without waiting until the publisher's goroutine
// is scheduled. Only over a Sender: without one, a round goes out from a
// goroutine of its own anyway, and the calls that queue while the publisher
// wakes make fewer, larger rounds. Called with the publish token held,
// which it keeps.
func (c *Cache) startQueued() {
	if c.sender == nil {
		return
	}
	for len(c.reqs) > 0 && c.mayOverlap() {
		batch := c.collect()
		if len(batch) == 0 {
			return
		}
		c.overlap(batch)
	}
}

// roundContext returns the context of a publish round: done at Close or
// when the round's deadline passes. Rounds share one context while its
// deadline is at least PublishTimeout away, which saves a timer per round:
// a round gets PublishTimeout to a quarter more. Called with the publish
// token held.
func (c *Cache) roundContext() context.Context {
	now := time.Now()
	if c.roundCtx == nil || c.roundCtx.Err() != nil || c.roundDeadline.Sub(now) < c.opts.PublishTimeout {
		// The context replaced is not cancelled: a round waiting for its
		// confirmation may still use it; its deadline ends it.
		c.roundDeadline = now.Add(c.opts.PublishTimeout + c.opts.PublishTimeout/4)
		c.roundCtx, c.roundCancel = context.WithDeadline(c.runCtx, c.roundDeadline)
		c.waitCtx = nil // a child of the context replaced
	}
	return c.roundCtx
}

// errAbandoned is the cause of the end of a shared confirmation context
// (waitContext) that a caller abandoned.
var errAbandoned = errors.New("backplane: a caller abandoned its round")

// waitContext returns the context that the confirmations of rounds over a
// Sender wait with: a child of the round context (roundContext), which a
// caller whose ctx ends abandons (c.waitAbandon). That ends the wait of
// every round on it; those whose callers are still there wait again
// (confirmRound). Cancellations are rare: sharing saves each round a context
// and a registration with the round context. Called with the publish token
// held, after roundContext.
func (c *Cache) waitContext() context.Context {
	if c.waitCtx == nil || c.waitCtx.Err() != nil {
		ctx, abandon := context.WithCancelCause(c.roundCtx)
		c.waitCtx = ctx
		c.waitAbandon = func() { abandon(errAbandoned) }
	}
	return c.waitCtx
}

// roundCtxFor returns the context of a round and a function to call when
// the round is done with it. A caller's ctx that can end, given for a round
// that carries only that caller's keys, ends the round too. Called with the
// publish token held.
func (c *Cache) roundCtxFor(ctx context.Context) (context.Context, func()) {
	pctx := c.roundContext()
	if ctx == nil || ctx.Done() == nil {
		return pctx, func() {}
	}
	if c.maxRounds <= 1 {
		// Rounds run one at a time, so cancelling the shared context ends
		// this round only; the next round makes a new one.
		stop := context.AfterFunc(ctx, c.roundCancel)
		return pctx, func() {
			if !stop() {
				// The cancellation is under way and may land after
				// this round: retire the context. (Called before the
				// token is released.)
				c.roundCtx = nil
			}
		}
	}
	// Rounds overlap: this round's cancellation must not reach another's.
	return linkCaller(pctx, ctx)
}

// linkCaller returns a context of its own for a round that overlaps
// others: done when the round's context pctx is, or when the caller's ctx
// (if not nil) ends. release frees it.
func linkCaller(pctx, ctx context.Context) (_ context.Context, release func()) {
	if ctx == nil || ctx.Done() == nil {
		return pctx, func() {}
	}
	rctx, cancel := context.WithCancel(pctx)
	stop := context.AfterFunc(ctx, cancel)
	rctx.Done() // made now rather than by the transport's wait
	return rctx, func() { stop(); cancel() }
}
