package core

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// smallBatch is the number of keys up to which a round is de-duplicated
// without a map.
const smallBatch = 16

type pubReq struct {
	op   Op
	keys []string
	done chan error
	one  [1]string // keys of a call with one key
}

// Invalidate evicts keys on this instance, then publishes them so that
// every other instance evicts them too. It returns once the message is on
// the broker, or with the error. Concurrent calls are coalesced into few
// messages: on an idle instance the caller publishes itself, otherwise its
// keys go out with the next round. If ctx ends first, Invalidate returns
// ctx's error; the keys may still be published (a round that carries other
// callers' keys too finishes, bounded by Options.PublishTimeout).
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	if len(keys) == 0 {
		return nil
	}
	if len(keys) > c.opts.MaxKeysPerCall {
		return fmt.Errorf("%w: %d keys in one call (max %d)", ErrTooManyKeys, len(keys), c.opts.MaxKeysPerCall)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return err
		}
	}
	if err := c.ready(); err != nil {
		return err
	}
	c.evictLocal(keys)
	// The round may be encoded after a cancelled caller returned: it owns a
	// copy of the keys, never the caller's slice.
	r := &pubReq{op: OpInvalidate}
	if len(keys) == 1 {
		r.one[0] = keys[0]
		r.keys = r.one[:]
	} else {
		r.keys = slices.Clone(keys)
	}
	return c.enqueue(ctx, r)
}

// Clear evicts every entry on this instance, then tells every other
// instance to do the same. It returns once the message is on the broker.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.ready(); err != nil {
		return err
	}
	c.flush("")
	return c.enqueue(ctx, &pubReq{op: OpClear})
}

// enqueue publishes r, as a round of its own or with others, and returns
// once that round is answered or ctx ends.
func (c *Cache) enqueue(ctx context.Context, r *pubReq) error {
	c.lifeMu.RLock()
	if c.closed {
		c.lifeMu.RUnlock()
		return ErrClosed
	}
	c.inflight.Add(1)
	c.lifeMu.RUnlock()
	// Counted as pending before the request is handed on, so the
	// publisher's decrement never comes first; a failed send takes it back.
	c.pendingCalls.Add(1)
	// Group commit with a leader: when nobody is publishing, the caller
	// publishes itself, saving the wake-up of another goroutine on an idle
	// instance; otherwise the current publisher takes the request in its
	// next round.
	if c.tryToken() {
		if len(c.reqs) == 0 {
			// Nothing waits: a round of r alone, without queueing it.
			c.queued.Add(1)
			batch := [1]*pubReq{r}
			if c.mayOverlap() {
				return c.sendRound(ctx, batch[:]) // releases the token
			}
			err := c.publishBatch(ctx, batch[:])
			<-c.pubToken
			if len(c.reqs) > 0 {
				c.kickPublisher()
			}
			return err
		}
		<-c.pubToken // others wait: r queues behind them
		// Whoever queued them may have found the token taken (by this
		// caller) and be waiting: make sure someone publishes them.
		c.kickPublisher()
	}
	r.done = make(chan error, 1)
	select {
	case c.reqs <- r: // the publisher now owns the inflight count
	case <-ctx.Done():
		c.pendingCalls.Add(-1)
		c.inflight.Done()
		return ctx.Err()
	}
	c.queued.Add(1)
	if c.tryToken() {
		c.leadRounds(ctx, r) // releases the token
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// leadRounds publishes rounds until r is answered or has gone out, and
// releases the publish token. A round that carries only r is bounded by
// the caller's ctx too. A round that may overlap the next one is the last
// this caller leads: it releases the token before its round trip, and
// whatever is still queued goes to the publisher.
func (c *Cache) leadRounds(ctx context.Context, r *pubReq) {
	for len(r.done) == 0 {
		batch := c.collect()
		if len(batch) == 0 {
			break // r was in a round that finished before this one
		}
		var own context.Context
		if len(batch) == 1 && batch[0] == r {
			own = ctx
		}
		if c.mayOverlap() {
			c.sendRound(own, batch) // releases the token
			return
		}
		c.publishBatch(own, batch)
	}
	<-c.pubToken
	if len(c.reqs) > 0 {
		c.kickPublisher()
	}
}

// mayOverlap reports whether the next round may go out while the rounds in
// flight wait for the broker (over a Sender, or over a transport that
// publishes on several connections): up to maxRounds-1 rounds whose callers
// released the token, plus the token holder's. Beyond that the token holder
// keeps the token for its round trip, and the calls that arrive meanwhile
// queue and go out together: under load, rounds grow rather than multiply.
// Called with the publish token held.
func (c *Cache) mayOverlap() bool {
	return int(c.rounds.Load()) < c.maxRounds-1
}

// senderRounds is how many rounds may be in flight over a Sender that
// declares no Limits.ConcurrentPublish of its own.
const senderRounds = 4

// tryToken takes the publish token if it is free.
func (c *Cache) tryToken() bool {
	select {
	case c.pubToken <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Cache) kickPublisher() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// publishLoop publishes heartbeats, the goodbye, and the rounds that no
// caller leads.
func (c *Cache) publishLoop() {
	defer c.wg.Done()
	var tick <-chan time.Time
	if c.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(c.opts.HeartbeatInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var heartbeat, leave bool
		select {
		case <-c.kick:
		case <-tick:
			heartbeat = true
		case <-c.stop:
			leave = true
		}
		c.pubToken <- struct{}{}
		for {
			batch := c.collect()
			if len(batch) == 0 {
				break
			}
			switch {
			case !c.mayOverlap():
				c.publishBatch(nil, batch)
			case c.sender != nil:
				// The round's confirmation is waited for without the
				// publisher, which stays free for what queues meanwhile.
				c.overlap(batch)
			default:
				// Without a Sender the whole round goes on without the
				// publisher, which takes the token back once the round
				// has its sequence numbers: what queues meanwhile makes
				// the next round larger.
				c.wg.Add(1)
				go func() {
					defer c.wg.Done()
					_ = c.sendRound(nil, batch) // releases the token; its callers have the error
				}()
				c.pubToken <- struct{}{}
			}
		}
		switch {
		case leave:
			// Every accepted call is answered by now: say goodbye, so
			// that peers do not take this instance's silence for a loss.
			if c.opts.HeartbeatInterval > 0 {
				c.publish(nil, []Envelope{{Op: OpLeave, Source: c.id, Seq: c.seq}}, OpLeave)
			}
			<-c.pubToken
			return
		case heartbeat:
			c.publish(nil, []Envelope{{Op: OpHeartbeat, Source: c.id, Seq: c.seq}}, OpHeartbeat)
		}
		<-c.pubToken
		if len(c.reqs) > 0 {
			c.kickPublisher()
		}
	}
}

// collect takes what is queued, up to MaxBatchKeys keys.
func (c *Cache) collect() []*pubReq {
	var batch []*pubReq
	n := 0
	for n < c.opts.MaxBatchKeys {
		select {
		case r := <-c.reqs:
			batch = append(batch, r)
			n += len(r.keys)
		default:
			return batch
		}
	}
	return batch
}

// answer ends the calls of a round with its error.
func (c *Cache) answer(batch []*pubReq, err error) {
	for _, r := range batch {
		if r.done != nil {
			r.done <- err
		}
		c.queued.Add(-1)
		c.pendingCalls.Add(-1)
		c.inflight.Done()
	}
}

// publishBatch publishes one coalesced round, answers its queued callers
// and returns the round's error.
func (c *Cache) publishBatch(ctx context.Context, batch []*pubReq) error {
	envs := c.encodeBatch(batch, &c.seq)
	err := c.publish(ctx, envs, OpInvalidate)
	c.answer(batch, err)
	return err
}
