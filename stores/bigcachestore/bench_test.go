package bigcachestore

import (
	"context"
	"strconv"
	"testing"

	"github.com/allegro/bigcache/v3"
)

const benchKeys = 1 << 14

func benchKeyNames() []string {
	keys := make([]string, benchKeys)
	for i := range keys {
		keys[i] = "user:" + strconv.Itoa(i)
	}
	return keys
}

// BenchmarkGet compares a hit through Store with a hit on bigcache itself,
// both with DefaultConfig, parallel on all Ps.
func BenchmarkGet(b *testing.B) {
	keys := benchKeyNames()
	value := make([]byte, 256)
	b.Run("raw", func(b *testing.B) {
		c, err := bigcache.New(context.Background(), DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for _, k := range keys {
			_ = c.Set(k, value)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := c.Get(keys[i%benchKeys]); err != nil {
					b.Error(err)
				}
				i++
			}
		})
	})
	b.Run("store", func(b *testing.B) {
		s, err := New(DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		for _, k := range keys {
			_ = s.Set(k, value, 0)
		}
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, ok := s.Get(keys[i%benchKeys]); !ok {
					b.Error("miss")
				}
				i++
			}
		})
	})
}

// BenchmarkSet compares Store.Set with bigcache's Set.
func BenchmarkSet(b *testing.B) {
	keys := benchKeyNames()
	value := make([]byte, 256)
	b.Run("raw", func(b *testing.B) {
		c, err := bigcache.New(context.Background(), DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if err := c.Set(keys[i%benchKeys], value); err != nil {
					b.Error(err)
				}
				i++
			}
		})
	})
	b.Run("store", func(b *testing.B) {
		s, err := New(DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if err := s.Set(keys[i%benchKeys], value, 0); err != nil {
					b.Error(err)
				}
				i++
			}
		})
	})
}
