// Package propbench measures propagation: how long an invalidation takes
// from the call on one instance to the eviction on another, and how many
// keys per second a fleet absorbs. It runs the full engine and, in the same
// run, the raw client of the transport, so results are ratios on the same
// broker, not absolute numbers from different days.
package propbench
