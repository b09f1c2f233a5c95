// publisher.go: Invalidate and Clear. Calls queue; whoever takes the
// publish token collects what is queued into a round (group commit), so
// that calls arriving while rounds are in flight go out together. Rounds
// in flight are bounded (publisher.slots); rounds.go numbers, encodes and
// sends a round.

package core

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// senderRounds is how many rounds may be in flight over a Sender that
// declares no Limits.ConcurrentPublish of its own.
const senderRounds = 1

// publisher is the publish side's state.
//
// token is held while a round is collected, numbered and handed to the
// transport; it guards seq and the order of the rounds on the wire. A slot
// is held by each round in flight, from before it is collected until the
// broker has it: a caller that holds the token and waits for a slot makes
// the calls that arrive meanwhile queue and go out together, so that under
// load rounds grow rather than multiply. maxPayload and slots are set by
// New and Start, before any round.
type publisher struct {
	sender     Sender        // the Backplane as a Sender, or nil
	reqs       chan *pubReq  // calls waiting for a round
	token      chan struct{} // capacity 1
	slots      chan struct{} // capacity: the rounds that may be in flight
	kick       chan struct{} // wakes publishLoop for calls whose callers left
	seq        uint64        // the last sequence number used; guarded by token
	maxPayload int           // for the envelope, without the signature trailer
	trailer    int
	// the context rounds share (see roundContext); guarded by token
	roundCtx      context.Context
	roundCancel   context.CancelFunc
	roundDeadline time.Time
	pending       atomic.Int64 // Invalidate and Clear calls not answered (Health)
	queued        atomic.Int64 // calls handed to the publisher and not answered (tests)
	probing       atomic.Bool  // a heartbeat is wanted at once (probe)
	ackDue        atomic.Bool  // acknowledgements are due (acks.go)
	helloDue      atomic.Bool  // a new peer should learn that this instance acknowledges
	askDue        atomic.Bool  // acknowledged calls wait: ask the peers again
	// unsent are the numbered messages of failed rounds, oldest first,
	// sent again ahead of the next round (rounds.go); guarded by
	// unsentMu, taken and kept by the round that holds the only slot or,
	// with several, in whatever order the rounds fail.
	unsentMu sync.Mutex
	unsent   []unsent
}

// takeUnsent returns the messages of failed rounds and forgets them.
func (p *publisher) takeUnsent() []unsent {
	p.unsentMu.Lock()
	defer p.unsentMu.Unlock()
	us := p.unsent
	p.unsent = nil
	return us
}

// maxUnsentBytes bounds the payloads of failed rounds kept to be sent
// again.
const maxUnsentBytes = 4 << 20

// keepUnsent keeps us to be sent again, at most limit messages and
// maxUnsentBytes: beyond them the oldest are given up, and peers will
// count them as lost.
func (p *publisher) keepUnsent(us []unsent, limit int) {
	p.unsentMu.Lock()
	defer p.unsentMu.Unlock()
	p.unsent = append(us, p.unsent...)
	if over := len(p.unsent) - max(limit, 1); over > 0 {
		p.unsent = p.unsent[over:]
	}
	size := 0
	for i := len(p.unsent) - 1; i >= 0; i-- {
		if size += len(p.unsent[i].payload); size > maxUnsentBytes {
			p.unsent = p.unsent[i+1:]
			break
		}
	}
}

func (p *publisher) init(bp Backplane, queue, maxPayload, trailer int) {
	p.sender, _ = bp.(Sender)
	p.reqs = make(chan *pubReq, queue)
	p.token = make(chan struct{}, 1)
	p.kick = make(chan struct{}, 1)
	p.maxPayload, p.trailer = maxPayload, trailer
}

// limits applies the transport's limits as reported once it is
// subscribed: the smaller payload limit of the two, and the rounds in
// flight.
func (p *publisher) limits(lim Limits) error {
	if l := lim.MaxPayload - p.trailer; l > 0 && l < p.maxPayload {
		if l < minPayload {
			return fmt.Errorf("%w: transport payload limit %d is below the minimum %d", ErrInvalidOption, l+p.trailer, minPayload+p.trailer)
		}
		p.maxPayload = l
	}
	rounds := lim.ConcurrentPublish
	if p.sender != nil && rounds == 0 {
		rounds = senderRounds
	}
	p.slots = make(chan struct{}, max(rounds, 1))
	return nil
}

// reorders reports whether this instance's messages may overtake one
// another: rounds overlap on a transport that does not keep their order.
func (p *publisher) reorders() bool { return p.sender == nil && cap(p.slots) > 1 }

// probe asks the publisher for a heartbeat now (recovery.go: an own
// message that comes back proves that delivery caught up).
func (p *publisher) probe() {
	p.probing.Store(true)
	p.kickPublisher()
}

func (p *publisher) kickPublisher() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// smallBatch is the number of keys up to which a round is de-duplicated
// without a map.
const smallBatch = 16

// pubReq is one Invalidate or Clear call.
type pubReq struct {
	op    Op
	keys  []string
	done  chan error
	taken bool      // collected into a round; guarded by the token
	one   [1]string // keys of a call with one key
	// ack: the call asks for acknowledgements (acks.go); ackSeq is the
	// number of the envelope that carries the request, set by its round.
	ack    bool
	ackSeq uint64
}

// Invalidate evicts keys on this instance, then publishes them so that
// every other instance evicts them too. It returns once the message is on
// the broker, or with the error. Concurrent calls are coalesced into few
// messages: on an idle instance the caller publishes itself, otherwise its
// keys go out with the next round. If ctx ends first, Invalidate returns
// ctx's error; the keys may still be published (a round that carries other
// callers' keys too finishes, bounded by Options.PublishTimeout). A round
// that fails is sent again ahead of the next one (the latest QueueSize
// messages and 4 MiB at most), so that peers do not take its numbers for a loss and
// flush: a failed call's keys may still reach them.
func (c *Cache) Invalidate(ctx context.Context, keys ...string) error {
	_, err := c.invalidate(ctx, keys, false)
	return err
}

// invalidate is Invalidate; with ack, the keys go out with a request for
// acknowledgements (acks.go). It returns the call's request, nil for no
// keys.
func (c *Cache) invalidate(ctx context.Context, keys []string, ack bool) (*pubReq, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if len(keys) > c.opts.MaxKeysPerCall {
		return nil, fmt.Errorf("%w: %d keys in one call (max %d)", ErrTooManyKeys, len(keys), c.opts.MaxKeysPerCall)
	}
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
	}
	if err := c.life.ready(); err != nil {
		return nil, err
	}
	c.evictLocal(keys)
	// The round may be encoded after a cancelled caller returned: it owns a
	// copy of the keys, never the caller's slice.
	r := &pubReq{op: OpInvalidate, ack: ack}
	switch {
	case ack:
		r.keys = append(slices.Clone(keys), ackReqKey)
	case len(keys) == 1:
		r.one[0] = keys[0]
		r.keys = r.one[:]
	default:
		r.keys = slices.Clone(keys)
	}
	return r, c.enqueue(ctx, r)
}

// Clear evicts every entry on this instance, then tells every other
// instance to do the same. It returns once the message is on the broker.
func (c *Cache) Clear(ctx context.Context) error {
	if err := c.life.ready(); err != nil {
		return err
	}
	c.flush(causeClear)
	return c.enqueue(ctx, &pubReq{op: OpClear})
}

// enqueue queues r and returns once the round that carries it is answered,
// or ctx ends. While r waits, its caller takes the token whenever it is
// free and publishes what is queued itself: on an idle instance, a round of
// r alone, without waking another goroutine.
func (c *Cache) enqueue(ctx context.Context, r *pubReq) error {
	if err := c.life.accept(); err != nil {
		return err
	}
	p := &c.pub
	p.pending.Add(1)
	r.done = make(chan error, 1)
	select {
	case p.reqs <- r: // the round that takes r answers it and ends its count
	case <-ctx.Done():
		p.pending.Add(-1)
		c.life.calls.Done()
		return ctx.Err()
	}
	p.queued.Add(1)
	token := p.token
	for {
		select {
		case err := <-r.done:
			return err
		case token <- struct{}{}:
			if r.taken {
				// A round under way carries r: wait for it.
				<-p.token
				token = nil
				continue
			}
			c.leadRound(ctx, r)
		case <-ctx.Done():
			// r may still be queued: the publisher sends it.
			p.kickPublisher()
			return ctx.Err()
		}
	}
}

// leadRound waits for a slot, collects what is queued and publishes it as
// one round. A round that carries only r (of the caller whose ctx it is) is
// bounded by ctx too. Called with the token held, which the round
// releases; ctx and r are nil for the publisher's rounds.
func (c *Cache) leadRound(ctx context.Context, r *pubReq) {
	p := &c.pub
	var gone <-chan struct{}
	if ctx != nil {
		gone = ctx.Done()
	}
	select {
	case p.slots <- struct{}{}:
	case <-gone:
		<-p.token
		return
	}
	batch := c.collect()
	if len(batch) == 0 {
		<-p.slots
		<-p.token
		return
	}
	var own context.Context
	if r != nil && len(batch) == 1 && batch[0] == r {
		own = ctx
	}
	envs := c.encodeBatch(batch)
	markAcks(batch, envs)
	_ = c.round(own, batch, envs) // its callers have the error
}

// publishLoop publishes heartbeats, the goodbye, and the calls whose
// callers left before their round.
func (c *Cache) publishLoop() {
	var tick <-chan time.Time
	if c.opts.HeartbeatInterval > 0 {
		t := time.NewTicker(c.opts.HeartbeatInterval)
		defer t.Stop()
		tick = t.C
	}
	p := &c.pub
	if c.opts.HeartbeatInterval > 0 {
		c.publishAcks(true) // the hello: peers learn that this instance acknowledges
	}
	for {
		var op Op
		hello := false
		select {
		case <-c.pub.kick:
			if p.probing.Swap(false) {
				op = OpHeartbeat
			}
		case <-tick:
			op = OpHeartbeat
			hello = p.helloDue.Swap(false)
		case <-c.life.stop:
			op = OpLeave
		}
		if p.ackDue.Swap(false) || hello {
			c.publishAcks(hello)
		}
		if p.askDue.Swap(false) {
			c.publishAsk()
		}
		for len(p.reqs) > 0 {
			p.token <- struct{}{}
			c.leadRound(nil, nil)
		}
		if op == OpLeave && c.opts.HeartbeatInterval <= 0 {
			return
		}
		if op != 0 {
			// A heartbeat announces the last number used; the goodbye
			// (every accepted call is answered by now) tells peers not
			// to take this instance's silence for a loss.
			p.token <- struct{}{}
			p.slots <- struct{}{}
			_ = c.round(nil, nil, []Envelope{{Op: op, Source: c.id, Seq: p.seq}})
		}
		if op == OpLeave {
			return
		}
	}
}

// collect takes what is queued, up to MaxBatchKeys keys. Called with the
// token held.
func (c *Cache) collect() []*pubReq {
	var batch []*pubReq
	n := 0
	for n < c.opts.MaxBatchKeys {
		select {
		case r := <-c.pub.reqs:
			r.taken = true
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
		r.done <- err
		c.pub.queued.Add(-1)
		c.pub.pending.Add(-1)
		c.life.calls.Done()
	}
}
