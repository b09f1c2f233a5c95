package core_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// canaryFilter drops outgoing messages that carry the canary, while
// everything else (heartbeats included) goes through: invalidations are
// broken although the link looks fine.
type canaryFilter struct {
	core.Backplane
	drop atomic.Bool
}

func (f *canaryFilter) Publish(ctx context.Context, payloads ...[]byte) error {
	if !f.drop.Load() {
		return f.Backplane.Publish(ctx, payloads...)
	}
	var keep [][]byte
	for _, p := range payloads {
		env, err := core.DecodeEnvelope(p)
		if err == nil && len(env.Keys) == 1 && env.Keys[0] == core.CanaryKey {
			continue
		}
		keep = append(keep, p)
	}
	return f.Backplane.Publish(ctx, keep...)
}

func TestCanaryProbe(t *testing.T) {
	hub := memtransport.NewHub()
	opts := []core.Option{core.WithHeartbeat(10*time.Millisecond, time.Second), core.WithCanary(20*time.Millisecond, 200*time.Millisecond), core.WithLogger(discard)}
	filter := &canaryFilter{Backplane: hub.New(ns)}
	a, err := core.Open(context.Background(), newStore(t), filter, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, _ := open(t, hub, opts...)

	inSync := func(c *core.Cache) bool {
		h := c.Health()
		return h.Healthy() && len(h.PeerStatus) == 1 && h.PeerStatus[0].InSync && !h.PeerStatus[0].LastCanary.IsZero()
	}
	eventually(t, "both in sync", func() bool { return inSync(a) && inSync(b) })
	if id := b.Health().PeerStatus[0].ID; id != a.ID().String() {
		t.Fatalf("b's peer is %s, want a %s", id, a.ID())
	}

	filter.drop.Store(true)
	eventually(t, "b reports a out of sync", func() bool {
		h := b.Health()
		return h.SyncBroken && !h.Healthy() && len(h.PeerStatus) == 1 && !h.PeerStatus[0].InSync
	})
	eventually(t, "a reports its own canary missing", func() bool { return a.Health().SyncBroken })
	if !a.Health().Connected || a.Health().Silent {
		t.Fatalf("the link itself looked broken: %+v", a.Health())
	}

	filter.drop.Store(false)
	eventually(t, "back in sync", func() bool { return inSync(a) && inSync(b) })
}

func TestCanaryOptionsValidation(t *testing.T) {
	hub := memtransport.NewHub()
	for name, opt := range map[string]core.Option{
		"negative":          core.WithCanary(-time.Second, 0),
		"timeout too short": core.WithCanary(time.Second, time.Second),
	} {
		if _, err := core.New(newStore(t), hub.New(ns), opt); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
