// lifecycle.go: Start, Close and Shutdown, and the lifecycle part that
// knows whether the Cache may be used and which goroutines run.

package core

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// lifecycle is the Cache's state between New and Close. started and closed
// are guarded by mu; the rest is set by Start before the goroutines start
// and read by them.
type lifecycle struct {
	mu      sync.RWMutex // guards started/closed against the calls that check them
	started bool
	closed  bool
	// calls counts the Invalidate and Clear calls between being accepted
	// and being answered: Close drains them.
	calls sync.WaitGroup
	// stop is closed when the goroutines are to end; runCtx is cancelled
	// once they have (or when Close gives up draining): it bounds every
	// Publish.
	stop   chan struct{}
	runCtx context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the goroutines started by Start
	// closeErr is the first Shutdown's result.
	closeErr error
	closeOne sync.Once
}

func (l *lifecycle) init() { l.stop = make(chan struct{}) }

// ready reports whether the cache may be used: ErrClosed or ErrNotStarted.
func (l *lifecycle) ready() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	switch {
	case l.closed:
		return ErrClosed
	case !l.started:
		return ErrNotStarted
	}
	return nil
}

func (l *lifecycle) isClosed() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.closed
}

// accept counts a call that Close must drain, unless the Cache is closed.
func (l *lifecycle) accept() error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return ErrClosed
	}
	l.calls.Add(1)
	return nil
}

// Start subscribes to the backplane and returns once delivery is active,
// then starts publishing and heartbeats. ctx bounds the subscription setup.
//
// The goroutines it starts: the publisher's (publishLoop: heartbeats, the
// goodbye, calls nobody else publishes), the clock's (coarseClock.run),
// with heartbeats the monitor's (monitorLoop: silence, lost peers), and
// with the canary the canary's (canaryLoop).
func (c *Cache) Start(ctx context.Context) error {
	c.life.mu.Lock()
	defer c.life.mu.Unlock()
	if c.life.closed {
		return ErrClosed
	}
	if c.life.started {
		return errors.New("backplane: already started")
	}
	if err := c.bp.Subscribe(ctx, handler{c}); err != nil {
		return fmt.Errorf("backplane: subscribe: %w", err)
	}
	// Some transports learn their limits only once connected.
	if err := c.pub.limits(c.bp.Limits()); err != nil {
		return err
	}
	now := c.now()
	c.recv.mu.Lock()
	lim := c.bp.Limits()
	c.link.durable = lim.Durable
	c.link.up = true
	c.link.lastRecv, c.link.baseline, c.link.ownFresh = now, now, now
	if c.pub.reorders() || lim.Reorders {
		c.recv.reorderWindow = c.opts.ReorderWindow
	}
	if c.opts.CanaryInterval > 0 {
		c.link.canarySince = now
	}
	c.recv.mu.Unlock()
	c.life.runCtx, c.life.cancel = context.WithCancel(context.Background())
	c.life.started = true
	c.life.wg.Go(c.publishLoop)
	c.life.wg.Go(func() { c.clock.run(c.life.stop) })
	if c.opts.HeartbeatInterval > 0 {
		c.life.wg.Go(c.monitorLoop)
	}
	if c.opts.CanaryInterval > 0 {
		c.life.wg.Go(c.canaryLoop)
	}
	return nil
}

// Close drains pending publishes (bounded by Options.CloseTimeout), then
// unsubscribes and closes the backplane and the store. It is idempotent;
// every call returns the first call's result.
func (c *Cache) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.CloseTimeout)
	defer cancel()
	return c.Shutdown(ctx)
}

// Shutdown is Close bounded by ctx instead of Options.CloseTimeout: calls of
// Invalidate and Clear already accepted are published unless ctx ends
// first, in which case they return an error.
func (c *Cache) Shutdown(ctx context.Context) error {
	c.life.closeOne.Do(func() { c.life.closeErr = c.shutdown(ctx) })
	return c.life.closeErr
}

func (c *Cache) shutdown(ctx context.Context) error {
	c.life.mu.Lock()
	c.life.closed = true
	started := c.life.started
	c.life.mu.Unlock()
	var errs []error
	if started {
		drained := make(chan struct{})
		go func() { c.life.calls.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("backplane: close: pending publishes not drained: %w", ctx.Err()))
			c.life.cancel()       // fail the publishes in progress
			c.pub.kickPublisher() // and publish (failing) what is still queued
			<-drained             // callers return promptly once their publish fails
		}
		close(c.life.stop)
		c.life.wg.Wait()
		c.life.cancel()
		c.recv.stopTimer()
	}
	if err := c.bp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close transport: %w", err))
	}
	if err := c.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close store: %w", err))
	}
	return errors.Join(errs...)
}
