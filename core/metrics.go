// metrics.go: Stats counters and the optional OpenTelemetry instruments.

package core

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// Stats are an instance's counters since New.
type Stats struct {
	Hits            uint64 // Get and GetOrLoad served from the store
	Misses          uint64 // Get and GetOrLoad not served from the store
	Loads           uint64 // loader calls
	LoadsNotKept    uint64 // loads returned but not cached (raced an invalidation, or degraded link)
	KeysPublished   uint64 // keys sent in invalidate messages (after de-duplication)
	Published       uint64 // messages published (invalidate, clear, heartbeat)
	PublishErrors   uint64 // failed publish rounds
	Received        uint64 // messages received from other instances
	IgnoredOwn      uint64 // own messages received back and ignored
	DecodeErrors    uint64 // payloads that did not decode, dropped
	Rejected        uint64 // messages dropped as unsigned or forged (Options.Keyring), or under this instance's ID without being one it sent
	Replayed        uint64 // signed messages dropped as copies of ones already applied (replays, duplicates)
	PeersRefused    uint64 // messages of peers beyond Options.MaxPeers, applied unchecked
	KeysEvicted     uint64 // keys evicted on behalf of other instances
	TagsInvalidated uint64 // tags invalidated on behalf of other instances
	Gaps            uint64 // sequence gaps and lost tails detected
	Flushes         uint64 // local store wipes: safety flushes (any cause) and Clears, local or remote
	Suspensions     uint64 // times the store was kept but not served until delivery caught up (Limits.Durable)
	PeersLost       uint64 // peers that went quiet without leaving, over a Durable transport (no flush)
	AcksSent        uint64 // acknowledgement messages published (answers and hellos; InvalidateAcked)
	AcksReceived    uint64 // acknowledgement messages received from peers
	AckFailures     uint64 // acknowledged calls that some live peer did not confirm
}

type counters struct {
	hits, misses, loads, loadsNotKept, keysPublished, published, publishErrors,
	received, ignoredOwn, decodeErrors, rejected, replayed, peersRefused, keysEvicted, tagsInvalidated, gaps, flushes, suspensions, peersLost, acksSent, acksReceived, ackFailures atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Loads: c.loads.Load(),
		LoadsNotKept: c.loadsNotKept.Load(), KeysPublished: c.keysPublished.Load(),
		Published: c.published.Load(), PublishErrors: c.publishErrors.Load(),
		Received: c.received.Load(), IgnoredOwn: c.ignoredOwn.Load(),
		DecodeErrors: c.decodeErrors.Load(), Rejected: c.rejected.Load(), Replayed: c.replayed.Load(),
		PeersRefused: c.peersRefused.Load(), KeysEvicted: c.keysEvicted.Load(), TagsInvalidated: c.tagsInvalidated.Load(),
		Gaps: c.gaps.Load(), Flushes: c.flushes.Load(), Suspensions: c.suspensions.Load(), PeersLost: c.peersLost.Load(),
		AcksSent: c.acksSent.Load(), AcksReceived: c.acksReceived.Load(), AckFailures: c.ackFailures.Load(),
	}
}

// instruments are the OpenTelemetry instruments; no-op unless a
// MeterProvider is given.
type instruments struct {
	// enabled: a MeterProvider was given. Without one nothing is recorded,
	// so the hot paths pay for a branch only.
	enabled bool
	opAttrs [opMax + 1]metric.AddOption // the "op" attribute of each op

	hits, misses, published, received, ignoredOwn, decodeErrors, rejected, flushes, publishErrors metric.Int64Counter
	publishDuration, propagationLag, canaryLag                                                    metric.Float64Histogram
}

const meterName = "github.com/backplane-go/backplane/core"

func newInstruments(mp metric.MeterProvider) *instruments {
	in := &instruments{enabled: mp != nil}
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter(meterName)
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		if err != nil {
			c, _ = noop.NewMeterProvider().Meter(meterName).Int64Counter(name)
		}
		return c
	}
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithDescription(desc), metric.WithUnit("s"))
		if err != nil {
			h, _ = noop.NewMeterProvider().Meter(meterName).Float64Histogram(name)
		}
		return h
	}
	for op := range in.opAttrs {
		in.opAttrs[op] = metric.WithAttributeSet(attribute.NewSet(attribute.String("op", Op(op).String())))
	}
	in.hits = counter("backplane.cache.hits", "Reads served from the local store.")
	in.misses = counter("backplane.cache.misses", "Reads not served from the local store.")
	in.published = counter("backplane.messages.published", "Messages published, by op.")
	in.received = counter("backplane.messages.received", "Messages received from other instances, by op.")
	in.ignoredOwn = counter("backplane.messages.ignored_own", "Own messages received back and ignored.")
	in.decodeErrors = counter("backplane.messages.decode_errors", "Payloads that did not decode and were dropped.")
	in.rejected = counter("backplane.messages.rejected", "Messages dropped as unsigned or forged.")
	in.flushes = counter("backplane.flushes", "Local store flushes for safety, by cause.")
	in.publishErrors = counter("backplane.publish.errors", "Failed publish rounds.")
	in.publishDuration = hist("backplane.publish.duration", "Time of one publish round trip.")
	in.canaryLag = hist("backplane.canary.lag", "Time from a peer's canary publish to its arrival (clocks of two hosts).")
	in.propagationLag = hist("backplane.propagation.lag", "Time from a peer's publish to the local eviction (clocks of two hosts).")
	return in
}

var bg = context.Background()

func (in *instruments) opCount(c metric.Int64Counter, op Op, n int64) {
	if !in.enabled {
		return
	}
	if int(op) < len(in.opAttrs) {
		c.Add(bg, n, in.opAttrs[op])
		return
	}
	c.Add(bg, n, metric.WithAttributes(attribute.String("op", op.String())))
}

// add adds n to c when metrics are enabled.
func (in *instruments) add(c metric.Int64Counter, n int64) {
	if in.enabled {
		c.Add(bg, n)
	}
}

// record records d in seconds in h when metrics are enabled.
func (in *instruments) record(h metric.Float64Histogram, d time.Duration) {
	if in.enabled {
		h.Record(bg, d.Seconds())
	}
}

func (in *instruments) flush(cause string) {
	if in.enabled {
		in.flushes.Add(bg, 1, metric.WithAttributes(attribute.String("cause", cause)))
	}
}
