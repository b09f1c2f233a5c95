package core

import "time"

// WithClock replaces the engine's clock in tests.
func WithClock(now func() time.Time) Option { return withClock(now) }
