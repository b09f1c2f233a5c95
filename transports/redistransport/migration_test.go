package redistransport_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// A fleet moves from pub/sub to the stream mode and back by rolling
// deploys through transports.Dual, under load, with no stale read.
func TestRollingSwitchPubSubStream(t *testing.T) {
	if testing.Short() {
		t.Skip("a rolling switch under load takes about half a minute")
	}
	url := testenv.RedisURL(t)
	open := func(t *testing.T, rawURL, ns string) *redistransport.Transport {
		tr, err := redistransport.Open(rawURL, ns, fastRecovery...)
		if err != nil {
			t.Fatalf("Open %s: %v", rawURL, err)
		}
		return tr
	}
	streamURL := url + "?mode=stream&maxlen=10000"
	pubsub := func(t *testing.T, ns string) core.Backplane { return open(t, url, ns) }
	stream := func(t *testing.T, ns string) core.Backplane {
		tr := open(t, streamURL, ns)
		dropStream(t, url, tr.Channel())
		return tr
	}
	dual := func(a, b conformance.Stage) conformance.Stage {
		return func(t *testing.T, ns string) core.Backplane { return transports.Dual(a(t, ns), b(t, ns)) }
	}
	store := func(t *testing.T) core.LocalStore { return shipped.Stores()[0].New(t) }
	conformance.RunMigration(t, store, pubsub, dual(stream, pubsub), stream, dual(pubsub, stream), pubsub)
}

// openCache starts an engine over bp, closed when t ends.
func openCache(t *testing.T, bp core.Backplane) *core.Cache {
	t.Helper()
	c, err := core.Open(context.Background(), shipped.Stores()[0].New(t), bp,
		core.WithLogger(slog.New(slog.DiscardHandler)), core.WithHeartbeat(100*time.Millisecond, 500*time.Millisecond))
	if err != nil {
		t.Fatalf("core.Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Instances of one namespace on pub/sub and on the stream mode, without a
// transition, do not hear each other: both say so in Health. Through
// transports.Dual they do, and nobody reports a split.
func TestSplitFleetShowsInHealth(t *testing.T) {
	url := testenv.RedisURL(t)
	quiet := redistransport.WithLogger(slog.New(slog.DiscardHandler))
	open := func(rawURL, ns string) *redistransport.Transport {
		tr, err := redistransport.Open(rawURL, ns, append(fastRecovery, quiet)...)
		if err != nil {
			t.Fatalf("Open %s: %v", rawURL, err)
		}
		return tr
	}
	streamURL := url + "?mode=stream"
	split := func(c *core.Cache) bool { h := c.Health(); return h.Split != "" && !h.Healthy() }

	t.Run("split", func(t *testing.T) {
		ns := uniq("split")
		st := open(streamURL, ns)
		dropStream(t, url, st.Channel())
		ps, ss := openCache(t, open(url, ns)), openCache(t, st)
		waitFor(t, "both to report the split", func() bool { return split(ps) && split(ss) })
		if h := ps.Health(); !strings.Contains(h.Split, "stream mode") {
			t.Errorf("pub/sub instance's Split = %q, want it to name the stream mode", h.Split)
		}
	})
	t.Run("earlier release", func(t *testing.T) {
		// A plain subscriber of the channel stands for a pub/sub
		// instance that sets no marker.
		ns := uniq("split-old")
		st := open(streamURL, ns)
		dropStream(t, url, st.Channel())
		sub := sharedClient(t, uniq("old")).Subscribe(context.Background(), st.Channel())
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(context.Background()); err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		ss := openCache(t, st)
		waitFor(t, "the stream instance to report the split", func() bool { return split(ss) })
	})
	t.Run("transition", func(t *testing.T) {
		ns := uniq("bridged")
		st := open(streamURL, ns)
		dropStream(t, url, st.Channel())
		bridged := openCache(t, transports.Dual(st, open(url, ns)))
		noSplit := func(step string, cs ...*core.Cache) {
			t.Helper()
			for _, c := range cs {
				waitFor(t, "a peer heard", func() bool { return c.Health().Peers == 1 })
			}
			// Absence takes waiting: several mode checks (every 200 ms,
			// markers expiring after 600 ms) run meanwhile.
			time.Sleep(time.Second)
			for i, c := range cs {
				if h := c.Health(); h.Split != "" {
					t.Errorf("%s: instance %d reports a split: %q", step, i, h.Split)
				}
			}
		}
		// Step 1: pub/sub instances beside bridged ones.
		ps := openCache(t, open(url, ns))
		noSplit("pub/sub beside the transition", bridged, ps)
		// Step 2: stream instances beside bridged ones.
		_ = ps.Close()
		st2 := openCache(t, open(streamURL, ns))
		noSplit("stream beside the transition", bridged, st2)
		// A pure pub/sub and a pure stream instance do not hear each
		// other, transition or not: they say so.
		ps2 := openCache(t, open(url, ns))
		waitFor(t, "the pure instances to report their split", func() bool { return split(ps2) && split(st2) })
	})
}
