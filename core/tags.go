// tags.go: tags. An entry may carry tags when it is filled; InvalidateTags
// makes every instance stop serving every entry that carries one of them,
// without naming or finding their keys. Each tag hashes to one of
// tagSlots generation counters; an entry records, for each of its tags,
// the slot and its generation at fill time, and the read path checks them.
// A tag invalidation moves the slots' generations, here and on every peer.

package core

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"slices"
	"sync/atomic"
)

// tagSlots is the number of tag generation counters (128 KiB). Tags that
// hash to the same slot are invalidated together: an invalidation of one
// tag evicts the entries of about one tag in 16,384 others as well, never
// fewer than it should.
const tagSlots = 1 << 14

// tagRefLen is the size of one tag's record in an entry's header: its
// slot (2 bytes) and the slot's generation at fill time (8 bytes).
const tagRefLen = 10

// tagRef is one tag of an entry as its header records it.
type tagRef struct {
	slot uint16
	gen  uint64
}

// tagGens are the tag slots' generations; they only grow.
type tagGens struct {
	seed maphash.Seed
	gens [tagSlots]atomic.Uint64
}

func (t *tagGens) slotOf(tag string) uint16 {
	return uint16(maphash.String(t.seed, tag) % tagSlots)
}

// refs returns the current generations of tags' slots.
func (t *tagGens) refs(tags []string) []tagRef {
	if len(tags) == 0 {
		return nil
	}
	refs := make([]tagRef, len(tags))
	for i, tag := range tags {
		s := t.slotOf(tag)
		refs[i] = tagRef{slot: s, gen: t.gens[s].Load()}
	}
	return refs
}

// current reports whether refs still hold: no tag of theirs was
// invalidated since.
func (t *tagGens) current(refs []tagRef) bool {
	for _, r := range refs {
		if t.gens[r.slot].Load() != r.gen {
			return false
		}
	}
	return true
}

// validTags reports whether the tag records in hdr (n of them) are
// current.
func (t *tagGens) validTags(hdr []byte, n int) bool {
	for i := range n {
		b := hdr[i*tagRefLen:]
		if t.gens[binary.BigEndian.Uint16(b)].Load() != binary.BigEndian.Uint64(b[2:]) {
			return false
		}
	}
	return true
}

// invalidateTags moves the generations of tags' slots, and makes the next
// GetOrLoad of a key whose load in flight carries one of them start a new
// load.
func (c *Cache) invalidateTags(tags []string) {
	f := &c.fills
	slots := make([]uint16, len(tags))
	for i, tag := range tags {
		slots[i] = f.tags.slotOf(tag)
		f.tags.gens[slots[i]].Add(1)
	}
	if f.nflights.Load() == 0 {
		return
	}
	f.flightsMu.Lock()
	for key, fl := range f.flights {
		if slices.ContainsFunc(fl.slots, func(s uint16) bool { return slices.Contains(slots, s) }) {
			f.drop(key, fl)
		}
	}
	f.flightsMu.Unlock()
}

// checkTags validates the tags of one entry.
func (c *Cache) checkTags(tags []string) error {
	if len(tags) > c.opts.MaxTagsPerEntry {
		return fmt.Errorf("%w: %d tags on one entry (max %d)", ErrTooManyTags, len(tags), c.opts.MaxTagsPerEntry)
	}
	for _, tag := range tags {
		if err := checkKey(tag); err != nil {
			return fmt.Errorf("backplane: tag: %w", err)
		}
	}
	return nil
}

// SetWithTags caches value under key on this instance only, with
// Options.TTL, carrying tags: InvalidateTags of any of them evicts it (see
// Set).
func (c *Cache) SetWithTags(key string, value []byte, tags ...string) error {
	if err := c.checkTags(tags); err != nil {
		return err
	}
	return c.set(key, value, c.opts.TTL, tags)
}

// GetOrLoadWithTags is GetOrLoad for an entry that carries tags: an
// InvalidateTags of any of them, here or on another instance, evicts it,
// and a load that overlaps one is returned but not cached.
func (c *Cache) GetOrLoadWithTags(ctx context.Context, key string, tags []string, loader func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := c.checkTags(tags); err != nil {
		return nil, err
	}
	return c.getOrLoad(ctx, key, tags, loader)
}

// InvalidateTags makes every instance stop serving every entry that
// carries any of tags: this one at once, the others when the message
// arrives. It returns once the message is on the broker, like Invalidate,
// with which it is coalesced; the message carries the tags, never the keys
// they cover. Instances of a release before tags cannot read the message
// and flush when they notice it missing (see OpInvalidateTags).
func (c *Cache) InvalidateTags(ctx context.Context, tags ...string) error {
	if len(tags) == 0 {
		return nil
	}
	if len(tags) > c.opts.MaxKeysPerCall {
		return fmt.Errorf("%w: %d tags in one call (max %d)", ErrTooManyKeys, len(tags), c.opts.MaxKeysPerCall)
	}
	for _, tag := range tags {
		if err := checkKey(tag); err != nil {
			return fmt.Errorf("backplane: tag: %w", err)
		}
	}
	if err := c.life.ready(); err != nil {
		return err
	}
	c.invalidateTags(tags)
	return c.enqueue(ctx, &pubReq{op: OpInvalidateTags, keys: slices.Clone(tags)})
}
