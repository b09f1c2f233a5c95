package core_test

import (
	"context"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func keyring(t *testing.T, keys ...core.SigningKey) *core.Keyring {
	t.Helper()
	k, err := core.NewKeyring(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

var (
	keyOld = core.SigningKey{ID: "2026-01", Secret: []byte("old-secret-0123456789")}
	keyNew = core.SigningKey{ID: "2026-06", Secret: []byte("new-secret-0123456789")}
)

// A rogue publisher on the channel cannot evict anything: unsigned and
// forged messages are dropped and counted.
func TestRoguePublisherCannotEvict(t *testing.T) {
	hub := memtransport.NewHub()
	kr := keyring(t, keyOld)
	a, _ := open(t, hub, quiet, core.WithKeyring(kr))
	b, _ := open(t, hub, quiet, core.WithKeyring(kr))
	_ = b.Set("k", []byte("v"))

	rogue := hub.New(ns)
	defer rogue.Close()
	forger := keyring(t, core.SigningKey{ID: keyOld.ID, Secret: []byte("guessed-secret-000000")})
	unsigned, _ := (&core.Envelope{Op: core.OpInvalidate, Seq: 1, Source: core.NewSourceID(), Keys: []string{"k"}}).MarshalBinary()
	forged, _ := forger.AppendSigned(nil, &core.Envelope{Op: core.OpClear, Seq: 1, Source: core.NewSourceID()})
	hb, _ := forger.AppendSigned(nil, &core.Envelope{Op: core.OpHeartbeat, Seq: 1 << 40, Source: core.NewSourceID()})
	if err := rogue.Publish(context.Background(), unsigned, forged, hb); err != nil {
		t.Fatal(err)
	}
	eventually(t, "rogue messages rejected", func() bool { return b.Stats().Rejected == 3 })
	mustGet(t, b, "k", "v")
	if s := b.Stats(); s.Received != 0 || s.Flushes != 0 {
		t.Fatalf("rogue messages had an effect: %+v", s)
	}
	// The legitimate peer still gets through.
	if err := a.Invalidate(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "signed invalidation evicts", func() bool { _, ok := b.Get("k"); return !ok })
}

// Rotation: [old] -> [new, old] on some instances -> [new] everywhere,
// with invalidations flowing at every step.
func TestKeyRotation(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet, core.WithKeyring(keyring(t, keyOld)))
	b, _ := open(t, hub, quiet, core.WithKeyring(keyring(t, keyNew, keyOld)))
	ctx := context.Background()
	_ = b.Set("x", []byte("v"))
	_ = a.Set("y", []byte("v"))
	_ = a.Invalidate(ctx, "x") // old-signed, b accepts old
	eventually(t, "b accepts the old key", func() bool { _, ok := b.Get("x"); return !ok })
	_ = b.Invalidate(ctx, "y") // new-signed, a does not know new yet
	eventually(t, "a rejects the new key", func() bool { return a.Stats().Rejected == 1 })
	mustGet(t, a, "y", "v")
}

func TestAcceptUnsignedDuringRollout(t *testing.T) {
	hub := memtransport.NewHub()
	plain, _ := open(t, hub, quiet)
	signed, _ := open(t, hub, quiet, core.WithKeyring(keyring(t, keyOld)), func(o *core.Options) { o.AcceptUnsigned = true })
	_ = signed.Set("k", []byte("v"))
	_ = plain.Set("s", []byte("v"))
	_ = plain.Invalidate(context.Background(), "k")
	eventually(t, "unsigned accepted", func() bool { _, ok := signed.Get("k"); return !ok })
	// An instance without a keyring accepts signed messages too.
	_ = signed.Invalidate(context.Background(), "s")
	eventually(t, "signed accepted by a plain instance", func() bool { _, ok := plain.Get("s"); return !ok })
}

// A captured signed message replayed outside the replay window is rejected.
func TestReplayWindow(t *testing.T) {
	hub := memtransport.NewHub()
	kr := keyring(t, keyOld)
	b, _ := open(t, hub, quiet, core.WithKeyring(kr), func(o *core.Options) { o.ReplayWindow = time.Minute })
	_ = b.Set("k", []byte("v"))
	rogue := hub.New(ns)
	defer rogue.Close()
	old, _ := kr.AppendSigned(nil, &core.Envelope{Op: core.OpClear, Seq: 1, Source: core.NewSourceID(), Sent: time.Now().Add(-2 * time.Minute)})
	future, _ := kr.AppendSigned(nil, &core.Envelope{Op: core.OpClear, Seq: 1, Source: core.NewSourceID(), Sent: time.Now().Add(2 * time.Minute)})
	if err := rogue.Publish(context.Background(), old, future); err != nil {
		t.Fatal(err)
	}
	eventually(t, "replays rejected", func() bool { return b.Stats().Rejected == 2 })
	mustGet(t, b, "k", "v")
	fresh, _ := kr.AppendSigned(nil, &core.Envelope{Op: core.OpClear, Seq: 1, Source: core.NewSourceID(), Sent: time.Now()})
	_ = rogue.Publish(context.Background(), fresh)
	eventually(t, "a fresh signed clear applies", func() bool { _, ok := b.Get("k"); return !ok })
	if _, err := core.New(newStore(t), hub.New(ns), core.WithKeyring(kr), func(o *core.Options) { o.ReplayWindow = 0 }); err == nil {
		t.Fatal("zero replay window with a keyring accepted")
	}
}
