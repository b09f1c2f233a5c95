package core

import "time"

// WithClock replaces the engine's clock in tests.
func WithClock(now func() time.Time) Option { return withClock(now) }

// Queued reports the Invalidate and Clear calls handed to the publisher and
// not yet answered.
func (c *Cache) Queued() int { return int(c.pub.queued.Load()) }

// ClockAsleep reports whether the read path's clock sleeps for lack of
// reads.
func (c *Cache) ClockAsleep() bool { return c.clock.asleep.Load() }

// ReorderChecks reports how often the instance looked for overtaken
// messages whose reorder window had passed.
func (c *Cache) ReorderChecks() int64 { return c.recv.reorderChecks.Load() }

// DecodeEnvelopeV1 is the decoder of the release before tags (see
// decoder_v1_test.go).
var DecodeEnvelopeV1 = decodeEnvelopeV1
