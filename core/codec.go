// codec.go: Typed[T], a typed view of a Cache with a value codec (JSON by
// default).

package core

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Codec encodes the values of the typed helpers.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default Codec, encoding/json.
type JSONCodec struct{}

// Marshal calls json.Marshal.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal calls json.Unmarshal.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Typed is a view of a Cache that stores values of type T, encoded with the
// Cache's Codec. It is cheap; make one per value type.
type Typed[T any] struct {
	c *Cache
}

// NewTyped returns a typed view of c.
func NewTyped[T any](c *Cache) Typed[T] { return Typed[T]{c: c} }

// Get returns the value under key. A value that does not decode is deleted
// and reported as an error.
func (t Typed[T]) Get(key string) (v T, ok bool, err error) {
	b, ok := t.c.Get(key)
	if !ok {
		return v, false, nil
	}
	if err := t.c.opts.Codec.Unmarshal(b, &v); err != nil {
		_ = t.c.Delete(key)
		return v, false, fmt.Errorf("backplane: decode cached value of %q: %w", key, err)
	}
	return v, true, nil
}

// Set caches v under key on this instance (see Cache.Set).
func (t Typed[T]) Set(key string, v T) error { return t.SetWithTTL(key, v, t.c.opts.TTL) }

// SetWithTTL caches v under key with its own TTL (see Cache.SetWithTTL).
func (t Typed[T]) SetWithTTL(key string, v T, ttl time.Duration) error {
	b, err := t.c.opts.Codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("backplane: encode value of %q: %w", key, err)
	}
	return t.c.SetWithTTL(key, b, ttl)
}

// SetWithTags caches v under key carrying tags (see Cache.SetWithTags).
func (t Typed[T]) SetWithTags(key string, v T, tags ...string) error {
	b, err := t.c.opts.Codec.Marshal(v)
	if err != nil {
		return fmt.Errorf("backplane: encode value of %q: %w", key, err)
	}
	return t.c.SetWithTags(key, b, tags...)
}

// GetOrLoad returns the cached value or loads, caches and returns it (see
// Cache.GetOrLoad).
func (t Typed[T]) GetOrLoad(ctx context.Context, key string, loader func(ctx context.Context) (T, error)) (T, error) {
	return t.getOrLoad(ctx, key, nil, loader)
}

// GetOrLoadWithTags is GetOrLoad for an entry that carries tags (see
// Cache.GetOrLoadWithTags).
func (t Typed[T]) GetOrLoadWithTags(ctx context.Context, key string, tags []string, loader func(ctx context.Context) (T, error)) (T, error) {
	if err := t.c.checkTags(tags); err != nil {
		var zero T
		return zero, err
	}
	return t.getOrLoad(ctx, key, tags, loader)
}

func (t Typed[T]) getOrLoad(ctx context.Context, key string, tags []string, loader func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if loader == nil {
		return zero, ErrNilLoader
	}
	var loaded T
	var have bool
	b, err := t.c.getOrLoad(ctx, key, tags, func(ctx context.Context) ([]byte, error) {
		v, err := loader(ctx)
		if err != nil {
			return nil, err
		}
		loaded, have = v, true
		b, err := t.c.opts.Codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("backplane: encode value of %q: %w", key, err)
		}
		return b, nil
	})
	if err != nil {
		return zero, err
	}
	if have {
		return loaded, nil
	}
	var v T
	if err := t.c.opts.Codec.Unmarshal(b, &v); err != nil {
		_ = t.c.Delete(key)
		return zero, fmt.Errorf("backplane: decode cached value of %q: %w", key, err)
	}
	return v, nil
}
