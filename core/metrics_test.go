package core_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// recorder is a minimal MeterProvider that sums counters and counts
// histogram records, keyed by name and the "op" or "cause" attribute.
type recorder struct {
	noop.MeterProvider
	m *recMeter
}

func newRecorder() recorder { return recorder{m: &recMeter{vals: map[string]float64{}}} }

func (r recorder) Meter(string, ...metric.MeterOption) metric.Meter { return r.m }

func (r recorder) get(key string) float64 {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	return r.m.vals[key]
}

type recMeter struct {
	noop.Meter
	mu   sync.Mutex
	vals map[string]float64
}

func (m *recMeter) record(name string, attrs []string, v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := name
	for _, a := range attrs {
		key += "{" + a + "}"
	}
	m.vals[key] += v
}

func (m *recMeter) Int64Counter(name string, _ ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	return recCounter{m: m, name: name}, nil
}

func (m *recMeter) Float64Histogram(name string, _ ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	return recHist{m: m, name: name}, nil
}

type recCounter struct {
	noop.Int64Counter
	m    *recMeter
	name string
}

func (c recCounter) Add(_ context.Context, n int64, opts ...metric.AddOption) {
	set := metric.NewAddConfig(opts).Attributes()
	var attrs []string
	for _, kv := range set.ToSlice() {
		attrs = append(attrs, kv.Value.AsString())
	}
	c.m.record(c.name, attrs, float64(n))
}

type recHist struct {
	noop.Float64Histogram
	m    *recMeter
	name string
}

func (h recHist) Record(_ context.Context, _ float64, _ ...metric.RecordOption) {
	h.m.record(h.name+".count", nil, 1)
}

func TestMetrics(t *testing.T) {
	hub := memtransport.NewHub()
	rec := newRecorder()
	a, _ := open(t, hub, quiet)
	b, tb := open(t, hub, quiet, core.WithMeterProvider(rec))
	ctx := context.Background()
	_, _ = b.GetOrLoad(ctx, "k", load("v")) // miss
	_, _ = b.GetOrLoad(ctx, "k", load("v")) // hit
	_ = b.Invalidate(ctx, "k")
	eventually(t, "own message back", func() bool { return b.Stats().IgnoredOwn == 1 })
	_ = a.Invalidate(ctx, "x")
	eventually(t, "peer message", func() bool { return b.Stats().Received == 1 })
	tb.Disconnect(errors.New("cut"))
	tb.Reconnect()
	eventually(t, "reconnect flush", func() bool { return b.Health().LastFlushCause == "reconnect" })
	want := map[string]float64{
		"backplane.cache.hits":                     1,
		"backplane.cache.misses":                   1,
		"backplane.messages.published{invalidate}": 1,
		"backplane.messages.received{invalidate}":  1,
		"backplane.messages.ignored_own":           1,
		"backplane.flushes{disconnect}":            1,
		"backplane.flushes{reconnect}":             1,
		"backplane.publish.duration.count":         1,
		"backplane.propagation.lag.count":          1,
	}
	for k, v := range want {
		if got := rec.get(k); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
	rogue := hub.New(ns)
	defer rogue.Close()
	_ = rogue.Publish(ctx, []byte("junk"))
	eventually(t, "decode error metric", func() bool { return rec.get("backplane.messages.decode_errors") == 1 })
}
