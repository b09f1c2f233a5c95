package core

import (
	"context"
	"errors"
	"fmt"
)

// Start subscribes to the backplane and returns once delivery is active,
// then starts publishing and heartbeats. ctx bounds the subscription setup.
func (c *Cache) Start(ctx context.Context) error {
	c.lifeMu.Lock()
	defer c.lifeMu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if c.started {
		return errors.New("backplane: already started")
	}
	if err := c.bp.Subscribe(ctx, handler{c}); err != nil {
		return fmt.Errorf("backplane: subscribe: %w", err)
	}
	// Some transports learn their limits only once connected: keep the
	// smaller payload limit of the two.
	lim := c.bp.Limits()
	c.maxRounds = lim.ConcurrentPublish
	if c.sender != nil && c.maxRounds == 0 {
		c.maxRounds = senderRounds
	}
	if l := lim.MaxPayload - c.trailer; l > 0 && l < c.maxPayload {
		if l < minPayload {
			return fmt.Errorf("%w: transport payload limit %d is below the minimum %d", ErrInvalidOption, l+c.trailer, minPayload+c.trailer)
		}
		c.maxPayload = l
	}
	now := c.now()
	c.recvMu.Lock()
	c.linkUp = true
	c.lastRecv, c.baseline, c.ownFresh = now, now, now
	if c.sender == nil && c.maxRounds > 1 {
		c.reorderWindow = c.opts.ReorderWindow
	}
	c.recvMu.Unlock()
	c.runCtx, c.cancel = context.WithCancel(context.Background())
	c.started = true
	c.wg.Add(2)
	go c.publishLoop()
	go c.clockLoop()
	if c.opts.HeartbeatInterval > 0 {
		c.wg.Add(1)
		go c.monitorLoop()
	}
	if c.opts.CanaryInterval > 0 {
		c.recvMu.Lock()
		c.canarySince = now
		c.recvMu.Unlock()
		c.wg.Add(1)
		go c.canaryLoop()
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
	c.closeOne.Do(func() { c.closeErr = c.shutdown(ctx) })
	return c.closeErr
}

func (c *Cache) shutdown(ctx context.Context) error {
	c.lifeMu.Lock()
	c.closed = true
	started := c.started
	c.lifeMu.Unlock()
	var errs []error
	if started {
		drained := make(chan struct{})
		go func() { c.inflight.Wait(); close(drained) }()
		select {
		case <-drained:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("backplane: close: pending publishes not drained: %w", ctx.Err()))
			c.cancel() // fail the publish in progress
			<-drained  // callers return promptly once their publish fails
		}
		close(c.stop)
		c.wg.Wait()
		c.cancel()
		c.recvMu.Lock()
		if c.reorderTimer != nil {
			c.reorderTimer.Stop()
		}
		c.recvMu.Unlock()
	}
	if err := c.bp.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close transport: %w", err))
	}
	if err := c.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("backplane: close store: %w", err))
	}
	return errors.Join(errs...)
}
