package bigcachestore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/allegro/bigcache/v3"
	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newTestStore(t *testing.T, cfg bigcache.Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestGetSetDelete(t *testing.T) {
	s := newTestStore(t, DefaultConfig())

	if _, ok := s.Get("a"); ok {
		t.Fatal("Get on empty store hit")
	}
	if err := s.Set("a", []byte("1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("b", []byte("2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("empty", nil, 0); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 3 {
		t.Fatalf("Len = %d, want 3", got)
	}
	if v, ok := s.Get("a"); !ok || string(v) != "1" {
		t.Fatalf("Get(a) = %q, %v", v, ok)
	}
	if v, ok := s.Get("empty"); !ok || len(v) != 0 {
		t.Fatalf("Get(empty) = %q, %v", v, ok)
	}
	if err := s.Set("a", []byte("11"), 0); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Get("a"); string(v) != "11" {
		t.Fatalf("Get(a) after overwrite = %q", v)
	}
	if err := s.Delete("a", "missing", "b"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Delete(); err != nil {
		t.Fatalf("Delete(): %v", err)
	}
	for _, k := range []string{"a", "b"} {
		if _, ok := s.Get(k); ok {
			t.Fatalf("Get(%s) hit after Delete", k)
		}
	}
	if got := s.Len(); got != 1 {
		t.Fatalf("Len = %d, want 1", got)
	}
	if err := s.Clear(); err != nil {
		t.Fatal(err)
	}
	if got := s.Len(); got != 0 {
		t.Fatalf("Len after Clear = %d", got)
	}
	if _, ok := s.Get("empty"); ok {
		t.Fatal("Get hit after Clear")
	}
}

func TestCopies(t *testing.T) {
	s := newTestStore(t, DefaultConfig())
	in := []byte("hello")
	if err := s.Set("k", in, 0); err != nil {
		t.Fatal(err)
	}
	copy(in, "XXXXX")
	out, _ := s.Get("k")
	if string(out) != "hello" {
		t.Fatalf("Set did not copy: %q", out)
	}
	copy(out, "YYYYY")
	again, _ := s.Get("k")
	if string(again) != "hello" {
		t.Fatalf("Get did not copy: %q", again)
	}
}

func TestClosed(t *testing.T) {
	s, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := s.Close(); err != nil {
			t.Fatalf("Close #%d: %v", i+1, err)
		}
	}
	if _, ok := s.Get("k"); ok {
		t.Fatal("Get hit after Close")
	}
	if n := s.Len(); n != 0 {
		t.Fatalf("Len after Close = %d", n)
	}
	if s.Unwrap() != nil {
		t.Fatal("Unwrap after Close is not nil")
	}
	for name, err := range map[string]error{
		"Set":    s.Set("k", []byte("v"), 0),
		"Delete": s.Delete("k"),
		"Clear":  s.Clear(),
	} {
		if !errors.Is(err, core.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		edit func(*bigcache.Config)
	}{
		{"shards not power of two", func(c *bigcache.Config) { c.Shards = 3 }},
		{"zero shards", func(c *bigcache.Config) { c.Shards = 0 }},
		{"negative size", func(c *bigcache.Config) { c.HardMaxCacheSize = -1 }},
		{"shard too small", func(c *bigcache.Config) { c.HardMaxCacheSize = 1; c.Shards = 1024 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Fatalf("error %v does not wrap ErrInvalidOption", err)
			}
		})
	}
}

func TestCaps(t *testing.T) {
	s := newTestStore(t, DefaultConfig())
	c := s.Caps()
	if c.TTL || !c.Eviction {
		t.Fatalf("Caps = %+v, want TTL false, Eviction true", c)
	}
	// 256 MiB / 256 shards = 1 MiB per shard, half of it per entry.
	if c.MaxValueLen < 500<<10 || c.MaxValueLen >= 512<<10 {
		t.Fatalf("MaxValueLen = %d, want about 511 KiB", c.MaxValueLen)
	}

	cfg := DefaultConfig()
	cfg.HardMaxCacheSize = 0
	u := newTestStore(t, cfg)
	if c := u.Caps(); c.Eviction || c.MaxValueLen != 0 {
		t.Fatalf("unbounded Caps = %+v, want no eviction and no limit", c)
	}
	big := bytes.Repeat([]byte{'x'}, 4<<20)
	if err := u.Set("big", big, 0); err != nil {
		t.Fatalf("unbounded Set of 4 MiB: %v", err)
	}
}

// TestMaxValueLen checks the limit against bigcache's ring buffer in many
// states: a value of MaxValueLen with a key of ReservedKeyLen bytes is
// accepted whatever the shard's current capacity, and one byte more is
// rejected without touching the cache.
func TestMaxValueLen(t *testing.T) {
	for _, fill := range []int{0, 1, 3, 7, 20, 50, 100, 300} {
		for _, entry := range []int{1, 500, 5000} {
			t.Run(fmt.Sprintf("fill=%d/entry=%d", fill, entry), func(t *testing.T) {
				cfg := DefaultConfig()
				cfg.Shards = 1
				cfg.HardMaxCacheSize = 1
				cfg.MaxEntriesInWindow = 10
				cfg.MaxEntrySize = entry
				cfg.CleanWindow = 0
				s := newTestStore(t, cfg)
				max := s.Caps().MaxValueLen
				for i := 0; i < fill; i++ {
					v := bytes.Repeat([]byte{byte(i)}, 1000*(i%17+1))
					if err := s.Set(fmt.Sprint("fill", i), v, 0); err != nil {
						t.Fatalf("fill Set: %v", err)
					}
				}
				before := s.Len()
				key := strings.Repeat("k", ReservedKeyLen)
				if err := s.Set(key, make([]byte, max+1), 0); !errors.Is(err, core.ErrValueTooLarge) {
					t.Fatalf("Set of MaxValueLen+1 = %v, want ErrValueTooLarge", err)
				}
				if s.Len() != before {
					t.Fatalf("rejected Set changed Len from %d to %d", before, s.Len())
				}
				want := bytes.Repeat([]byte{'v'}, max)
				if err := s.Set(key, want, 0); err != nil {
					t.Fatalf("Set of MaxValueLen (%d): %v", max, err)
				}
				if got, ok := s.Get(key); !ok || !bytes.Equal(got, want) {
					t.Fatalf("Get after max Set: ok=%v len=%d", ok, len(got))
				}
			})
		}
	}
}

func TestEntryTooLargeForLongKey(t *testing.T) {
	s := newTestStore(t, DefaultConfig())
	max := s.Caps().MaxValueLen
	long := strings.Repeat("k", 8*ReservedKeyLen)
	if err := s.Set(long, make([]byte, max), 0); !errors.Is(err, core.ErrValueTooLarge) {
		t.Fatalf("Set with long key = %v, want ErrValueTooLarge", err)
	}
	if err := s.Set(long, []byte("small"), 0); err != nil {
		t.Fatalf("Set with long key and small value: %v", err)
	}
	if err := s.Set(strings.Repeat("k", MaxKeyLen+1), nil, 0); !errors.Is(err, core.ErrKeyTooLong) {
		t.Fatalf("Set with key over MaxKeyLen = %v, want ErrKeyTooLong", err)
	}
}

// TestBigcacheErrorMapping checks that bigcache's own "entry is bigger than
// max shard size" maps to ErrValueTooLarge, by writing around the size check
// through a store whose limits are disabled.
func TestBigcacheErrorMapping(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shards = 1
	cfg.HardMaxCacheSize = 1
	s := newTestStore(t, cfg)
	s.maxEntry = 0
	err := s.Set("k", make([]byte, 2<<20), 0)
	if !errors.Is(err, core.ErrValueTooLarge) {
		t.Fatalf("Set = %v, want ErrValueTooLarge", err)
	}
}

func TestEviction(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Shards = 1
	cfg.HardMaxCacheSize = 1
	s := newTestStore(t, cfg)
	v := make([]byte, 10<<10)
	for i := 0; i < 300; i++ { // 3 MiB into 1 MiB
		if err := s.Set(fmt.Sprint("k", i), v, 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := s.Get("k0"); ok {
		t.Fatal("oldest entry survived")
	}
	if _, ok := s.Get("k299"); !ok {
		t.Fatal("newest entry missing")
	}
	if n := s.Len(); n >= 300 || n == 0 {
		t.Fatalf("Len = %d", n)
	}
}

// TestCollision uses a hasher that maps every key to one hash: colliding
// keys evict each other but never read each other's value.
func TestCollision(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Hasher = constHasher{}
	s := newTestStore(t, cfg)
	if err := s.Set("a", []byte("A"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("b", []byte("B"), 0); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Get("a"); ok {
		t.Fatalf("Get(a) = %q after colliding Set(b)", v)
	}
	if v, ok := s.Get("b"); !ok || string(v) != "B" {
		t.Fatalf("Get(b) = %q, %v", v, ok)
	}
	if err := s.Delete("a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("b"); ok {
		t.Fatal("Delete(a) did not remove colliding b (the documented behaviour changed)")
	}
}

type constHasher struct{}

func (constHasher) Sum64(string) uint64 { return 42 }

func TestCloseStopsCleanup(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CleanWindow = 10 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// goleak in TestMain fails the package if the cleanup goroutine survived.
}

func TestConcurrent(t *testing.T) {
	s, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprint("k", (w*7+i)%50)
				switch i % 5 {
				case 0:
					_ = s.Delete(k)
				case 1:
					_ = s.Set(k, []byte(k), 0)
				case 2:
					if i%100 == 2 {
						_ = s.Clear()
					}
				default:
					if v, ok := s.Get(k); ok && string(v) != k {
						t.Errorf("Get(%s) = %q", k, v)
					}
				}
				_ = s.Len()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.Close()
	}()
	wg.Wait()
	_ = s.Close()
	if _, ok := s.Get("k1"); ok {
		t.Fatal("Get hit after Close")
	}
}
