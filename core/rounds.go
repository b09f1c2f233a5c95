// rounds.go: one publish round. Its calls' keys are de-duplicated and
// split into numbered envelopes (encodeBatch), encoded and signed (encode),
// handed to the transport and waited for (round), and counted (published).

package core

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// encodeBatch de-duplicates the batch's keys, and its tags, and splits them
// into envelopes that fit the payload limit: keys first, then tags. A clear
// in the batch subsumes every key and tag of it. Called with the token
// held.
func (c *Cache) encodeBatch(batch []*pubReq) []Envelope {
	seq := &c.pub.seq
	now := c.now()
	for _, r := range batch {
		if r.op == OpClear {
			*seq++
			envs := []Envelope{{Op: OpClear, Source: c.id, Seq: *seq, Sent: now}}
			if slices.ContainsFunc(batch, func(r *pubReq) bool { return r.ack }) {
				// The clear subsumes every key but a request for
				// acknowledgements, which follows it.
				*seq++
				envs = append(envs, Envelope{Op: OpInvalidate, Source: c.id, Seq: *seq, Sent: now, Keys: []string{ackReqKey}})
			}
			return envs
		}
	}
	if len(batch) == 1 && len(batch[0].keys) == 1 {
		// The common round of one call with one key: nothing to split
		// or de-duplicate.
		*seq++
		return []Envelope{{Op: batch[0].op, Source: c.id, Seq: *seq, Sent: now, Keys: batch[0].keys}}
	}
	envs := c.encodeOp(nil, batch, OpInvalidate, now)
	return c.encodeOp(envs, batch, OpInvalidateTags, now)
}

// encodeOp appends to envs the envelopes of op that carry the keys (or
// tags) of batch's calls of op.
func (c *Cache) encodeOp(envs []Envelope, batch []*pubReq, op Op, now time.Time) []Envelope {
	seq := &c.pub.seq
	first := len(envs)
	total := 0
	for _, r := range batch {
		if r.op == op {
			total += len(r.keys)
		}
	}
	if total == 0 {
		return envs
	}
	var cur []string
	// Few keys are de-duplicated by scanning the keys accepted so far;
	// many through a map.
	var seen map[string]struct{}
	if total > smallBatch {
		seen = make(map[string]struct{}, total)
	}
	dup := func(k string) bool {
		if seen == nil {
			return slices.Contains(cur, k) || slices.ContainsFunc(envs[first:], func(e Envelope) bool { return slices.Contains(e.Keys, k) })
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
		envs = append(envs, Envelope{Op: op, Source: c.id, Seq: *seq, Sent: now, Keys: cur})
		cur, size = nil, headerLen+3
	}
	for _, r := range batch {
		if r.op != op {
			continue
		}
		for _, k := range r.keys {
			if dup(k) {
				continue
			}
			kl := keyEncodedLen(k)
			if len(cur) > 0 && (size+kl > c.pub.maxPayload || len(cur) == MaxKeysPerMessage) {
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

// round publishes envs, the envelopes of batch's calls (or a heartbeat or
// the goodbye, without calls), and answers the calls. Called with the token
// and a slot held: it releases the token once the round is numbered and,
// over a Sender, handed to the connection, so that the next round may
// start; then it waits for the broker and releases the slot. The round is
// bounded by Options.PublishTimeout, Close, and own when not nil.
func (c *Cache) round(own context.Context, batch []*pubReq, envs []Envelope) error {
	p := &c.pub
	op := envs[0].Op
	payloads, keys, err := c.encode(envs)
	ctx, release := c.roundContext(own)
	defer release()
	var again []unsent
	if err == nil {
		c.echo.record(envs)
		// What failed before goes out first, in its order, ahead of
		// the numbers that follow it.
		again = p.takeUnsent()
		if len(again) > 0 {
			payloads = append(unsentPayloads(again), payloads...)
			c.echo.record(unsentEnvelopes(again))
		}
	}
	start := time.Now()
	var confirm func(context.Context) error
	if err == nil && p.sender != nil {
		confirm, err = p.sender.Send(ctx, payloads...)
	}
	<-p.token
	if err == nil {
		if confirm != nil {
			err = confirm(ctx)
		} else {
			err = c.bp.Publish(ctx, payloads...)
		}
	}
	if err != nil && len(payloads) > 0 {
		p.keepUnsent(append(again, unsentOf(envs, payloads[len(again):])...), c.opts.QueueSize)
	}
	<-p.slots
	err = c.published(op, len(payloads), keys, start, err)
	c.answer(batch, err)
	return err
}

// unsent is a numbered message of a round that failed: it goes out again
// ahead of the next round, so that no peer takes its number for a loss.
// Had the broker taken it after all, the copy only evicts again.
type unsent struct {
	payload []byte
	op      Op
	seq     uint64
	sent    time.Time
}

// unsentOf returns the messages of envs that carry a number (not the
// heartbeats and the goodbye, which only announce one).
func unsentOf(envs []Envelope, payloads [][]byte) []unsent {
	var us []unsent
	for i := range envs {
		if envs[i].Op != OpHeartbeat && envs[i].Op != OpLeave && i < len(payloads) {
			us = append(us, unsent{payload: payloads[i], op: envs[i].Op, seq: envs[i].Seq, sent: envs[i].Sent})
		}
	}
	return us
}

func unsentPayloads(us []unsent) [][]byte {
	ps := make([][]byte, len(us))
	for i, u := range us {
		ps[i] = u.payload
	}
	return ps
}

func unsentEnvelopes(us []unsent) []Envelope {
	es := make([]Envelope, len(us))
	for i, u := range us {
		es[i] = Envelope{Op: u.op, Seq: u.seq, Sent: u.sent}
	}
	return es
}

// roundContext returns the context a round waits with, and what releases
// it: done at Close or when its deadline passes. Rounds share one context
// while its deadline is at least PublishTimeout away, so that a round
// needs no timer of its own; a round gets PublishTimeout to a quarter
// more. A round of one caller whose ctx can end (own) gets a child of it,
// cancelled when that ctx ends. Called with the token held.
func (c *Cache) roundContext(own context.Context) (context.Context, func()) {
	p := &c.pub
	if now := time.Now(); p.roundCtx == nil || p.roundCtx.Err() != nil || p.roundDeadline.Sub(now) < c.opts.PublishTimeout {
		// The context replaced is not cancelled: rounds in flight may
		// still wait with it; its deadline ends it.
		p.roundDeadline = now.Add(c.opts.PublishTimeout + c.opts.PublishTimeout/4)
		p.roundCtx, p.roundCancel = context.WithDeadline(c.life.runCtx, p.roundDeadline)
	}
	if own == nil || own.Done() == nil {
		return p.roundCtx, func() {}
	}
	ctx, cancel := context.WithCancel(p.roundCtx)
	stop := context.AfterFunc(own, cancel)
	return ctx, func() { stop(); cancel() }
}

// encode encodes envs (signed with a Keyring) and counts their keys (not
// their tags).
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
		if envs[i].Op == OpInvalidate {
			keys += len(envs[i].Keys)
		}
	}
	return payloads, keys, nil
}

// published counts the outcome of a publish that started at start and
// returns the error to give its callers.
func (c *Cache) published(op Op, messages, keys int, start time.Time, err error) error {
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
	c.inst.opCount(c.inst.published, op, int64(messages))
	return nil
}
