package core_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// A tag invalidation evicts, on every instance, the entries that carry the
// tag, and no other; its message carries the tag, not the keys.
func TestTagsInvalidateEveryInstance(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	ctx := context.Background()
	for _, c := range []*core.Cache{a, b} {
		if _, err := c.GetOrLoadWithTags(ctx, "list:shoes", []string{"product:7", "category:shoes"}, load("l1")); err != nil {
			t.Fatal(err)
		}
		if err := c.SetWithTags("list:hats", []byte("l2"), "product:8"); err != nil {
			t.Fatal(err)
		}
		_ = c.Set("product:7", []byte("p"))
	}
	if err := a.InvalidateTags(ctx, "product:7"); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Get("list:shoes"); ok {
		t.Fatal("the invalidating instance still serves the tagged entry")
	}
	eventually(t, "b to stop serving the tagged entry", func() bool { _, ok := b.Get("list:shoes"); return !ok })
	for _, c := range []*core.Cache{a, b} {
		mustGet(t, c, "list:hats", "l2")
		mustGet(t, c, "product:7", "p") // a key named like the tag is not the tag
	}
	if st := a.Stats(); st.KeysPublished != 0 || st.Published != 1 {
		t.Fatalf("published %d keys in %d messages; want the tag alone", st.KeysPublished, st.Published)
	}
	if st := b.Stats(); st.TagsInvalidated != 1 || st.KeysEvicted != 0 {
		t.Fatalf("b: %d tags invalidated, %d keys evicted; want 1 and 0", st.TagsInvalidated, st.KeysEvicted)
	}
}

// A load whose entry carries a tag invalidated while the load is in flight
// is returned but not cached, and a later call does not join it.
func TestTagInvalidationDuringLoadIsNotCached(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	ctx := context.Background()
	started, release := make(chan struct{}), make(chan struct{})
	got := make(chan []byte, 1)
	go func() {
		v, _ := b.GetOrLoadWithTags(ctx, "list", []string{"t"}, func(context.Context) ([]byte, error) {
			close(started)
			<-release
			return []byte("old"), nil
		})
		got <- v
	}()
	<-started
	if err := a.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b to apply the tag invalidation", func() bool { return b.Stats().TagsInvalidated == 1 })
	v, err := b.GetOrLoadWithTags(ctx, "list", []string{"t"}, load("new"))
	if err != nil || string(v) != "new" {
		t.Fatalf("a call after the invalidation got %q, %v; want a load of its own", v, err)
	}
	close(release)
	if v := <-got; string(v) != "old" {
		t.Fatalf("the load in flight returned %q", v)
	}
	mustGet(t, b, "list", "new")
}

func TestTagLimits(t *testing.T) {
	hub := memtransport.NewHub()
	c, _ := open(t, hub, quiet, func(o *core.Options) { o.MaxTagsPerEntry = 2 })
	ctx := context.Background()
	if err := c.SetWithTags("k", nil, "a", "b", "c"); !errors.Is(err, core.ErrTooManyTags) {
		t.Fatalf("three tags with a limit of two: %v", err)
	}
	if _, err := c.GetOrLoadWithTags(ctx, "k", []string{""}, load("v")); !errors.Is(err, core.ErrEmptyKey) || !strings.Contains(err.Error(), "tag") {
		t.Fatalf("an empty tag: %v", err)
	}
	if err := c.InvalidateTags(ctx, strings.Repeat("x", core.MaxKeyLen+1)); !errors.Is(err, core.ErrKeyTooLong) {
		t.Fatalf("a tag over MaxKeyLen: %v", err)
	}
	if _, err := core.New(newStore(t), hub.New(ns), func(o *core.Options) { o.MaxTagsPerEntry = 256 }); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "MaxTagsPerEntry") {
		t.Fatalf("MaxTagsPerEntry 256: %v", err)
	}
}

func TestTypedTags(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	b, _ := open(t, hub, quiet)
	ctx := context.Background()
	lists := core.NewTyped[[]int](b)
	if _, err := lists.GetOrLoadWithTags(ctx, "ids", []string{"t"}, func(context.Context) ([]int, error) { return []int{1, 2}, nil }); err != nil {
		t.Fatal(err)
	}
	if err := lists.SetWithTags("more", []int{3}, "t"); err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both typed entries evicted", func() bool {
		_, ok1, _ := lists.Get("ids")
		_, ok2, _ := lists.Get("more")
		return !ok1 && !ok2
	})
}

// Tags work with signing, like keys.
func TestSignedTags(t *testing.T) {
	hub := memtransport.NewHub()
	kr := keyring(t, keyOld)
	a, _ := open(t, hub, quiet, core.WithKeyring(kr))
	b, _ := open(t, hub, quiet, core.WithKeyring(kr))
	if err := b.SetWithTags("k", []byte("v"), "t"); err != nil {
		t.Fatal(err)
	}
	if err := a.InvalidateTags(context.Background(), "t"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the signed tag invalidation applied", func() bool { _, ok := b.Get("k"); return !ok })
}

// olderRelease is the transport of an instance of the release before tags,
// as far as tags concern it: what that release's decoder rejects is
// dropped before the engine sees it, as that release drops it.
type olderRelease struct{ *memtransport.Transport }

func (o olderRelease) Subscribe(ctx context.Context, h core.Handler) error {
	return o.Transport.Subscribe(ctx, core.HandlerFuncs{
		Message: func(p []byte) {
			if _, err := core.DecodeEnvelopeV1(p); err == nil {
				h.HandleMessage(p)
			}
		},
		Event: h.HandleEvent,
	})
}

// During a rolling deploy an instance of the release before tags cannot
// read a tag invalidation. It must not keep serving what the tag covers:
// it notices the message missing at the source's next message and
// flushes.
func TestOlderReleaseFlushesOnTagMessage(t *testing.T) {
	hub := memtransport.NewHub()
	a, _ := open(t, hub, quiet)
	old, err := core.Open(context.Background(), newStore(t), olderRelease{hub.New(ns)}, quiet, core.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ctx := context.Background()
	if err := a.Invalidate(ctx, "warm-up"); err != nil { // old now knows a
		t.Fatal(err)
	}
	eventually(t, "the older instance hears a", func() bool { return old.Health().Peers == 1 })
	_ = old.Set("list", []byte("v")) // the older release caches it untagged
	tagMsg, err := (&core.Envelope{Op: core.OpInvalidateTags, Source: a.ID(), Seq: 2, Keys: []string{"t"}}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := core.DecodeEnvelopeV1(tagMsg); err == nil {
		t.Fatal("the older release's decoder reads a tag invalidation")
	}
	if err := a.InvalidateTags(ctx, "t"); err != nil {
		t.Fatal(err)
	}
	if err := a.Invalidate(ctx, "next"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the older instance flushes", func() bool { return old.Stats().Gaps == 1 })
	if _, ok := old.Get("list"); ok {
		t.Fatal("the older instance still serves an entry after a tag invalidation it could not read")
	}
}
