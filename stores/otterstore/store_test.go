package otterstore

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func newTestStore(t *testing.T, cfg Config) *Store {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// eventually polls cond until it holds or d passes.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
}

// Get, Set, Delete, Clear, Len and the copies in and out are the LocalStore
// contract: conformance.RunStore checks them (conformance_test.go).

func TestClosed(t *testing.T) {
	cfg := DefaultConfig()
	cfg.ClockResolution = 10 * time.Millisecond
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Set("k", []byte("v"), time.Minute); err != nil {
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
	if w := s.WeightedSize(); w != 0 {
		t.Fatalf("WeightedSize after Close = %d", w)
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
	// goleak in TestMain fails the package if the clean-up or the clock
	// goroutine survived Close.
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
	}{
		{"negative bytes", func(c *Config) { c.MaxBytes = -1 }, "MaxBytes"},
		{"negative entries", func(c *Config) { c.MaxBytes, c.MaxEntries = 0, -1 }, "MaxEntries"},
		{"both bounds", func(c *Config) { c.MaxEntries = 100 }, "MaxEntries"},
		{"negative value len", func(c *Config) { c.MaxValueLen = -1 }, "MaxValueLen"},
		{"value len over bytes", func(c *Config) { c.MaxBytes, c.MaxValueLen = 1<<20, 1<<20 }, "MaxValueLen"},
		{"bytes too small", func(c *Config) { c.MaxBytes, c.MaxValueLen = 1000, 0 }, "MaxBytes"},
		{"negative capacity", func(c *Config) { c.InitialCapacity = -1 }, "InitialCapacity"},
		{"negative resolution", func(c *Config) { c.ClockResolution = -time.Second }, "ClockResolution"},
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
			if !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("error %v does not name %s", err, tt.field)
			}
		})
	}
	if err := (Config{}).Validate(); err != nil {
		t.Fatalf("zero Config: %v", err)
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig: %v", err)
	}
}

func TestCaps(t *testing.T) {
	s := newTestStore(t, DefaultConfig())
	want := core.StoreCaps{TTL: true, TTLGranularity: time.Second, Eviction: true, MaxValueLen: 1 << 20}
	if c := s.Caps(); c != want {
		t.Fatalf("Caps = %+v, want %+v", c, want)
	}
	tests := []struct {
		name string
		cfg  Config
		want core.StoreCaps
	}{
		{"zero", Config{}, core.StoreCaps{}},
		{"entries, precise clock", Config{MaxEntries: 10, TTL: true}, core.StoreCaps{TTL: true, TTLGranularity: time.Millisecond, Eviction: true}},
		{"bytes, derived limit", Config{MaxBytes: 1 << 20}, core.StoreCaps{Eviction: true, MaxValueLen: 1<<20 - EntryOverhead - ReservedKeyLen}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c := newTestStore(t, tt.cfg).Caps(); c != tt.want {
				t.Fatalf("Caps = %+v, want %+v", c, tt.want)
			}
		})
	}
}

func TestValueTooLarge(t *testing.T) {
	s := newTestStore(t, DefaultConfig())
	max := s.Caps().MaxValueLen
	if err := s.Set("k", make([]byte, max), 0); err != nil {
		t.Fatalf("Set of MaxValueLen: %v", err)
	}
	if err := s.Set("k", make([]byte, max+1), 0); !errors.Is(err, core.ErrValueTooLarge) {
		t.Fatalf("Set of MaxValueLen+1 = %v, want ErrValueTooLarge", err)
	}
	if v, ok := s.Get("k"); !ok || len(v) != max {
		t.Fatalf("a rejected Set changed the entry: %d bytes, %v", len(v), ok)
	}

	// Without MaxValueLen the entry's weight is the bound.
	b := newTestStore(t, Config{MaxBytes: 64 << 10})
	max = b.Caps().MaxValueLen
	key := strings.Repeat("k", ReservedKeyLen)
	if err := b.Set(key, make([]byte, max), 0); err != nil {
		t.Fatalf("Set of MaxValueLen with a ReservedKeyLen key: %v", err)
	}
	if err := b.Set(key+"x", make([]byte, max), 0); !errors.Is(err, core.ErrValueTooLarge) {
		t.Fatalf("Set of an entry over MaxBytes = %v, want ErrValueTooLarge", err)
	}

	// Unbounded: no limit.
	u := newTestStore(t, Config{})
	big := bytes.Repeat([]byte{'x'}, 4<<20)
	if err := u.Set("big", big, 0); err != nil {
		t.Fatalf("unbounded Set of 4 MiB: %v", err)
	}
}

// TestMaxBytes checks that a byte-bounded store stays near its bound and
// evicts by weight: many large values leave few entries, many small ones
// leave many.
func TestMaxBytes(t *testing.T) {
	const maxBytes = 1 << 20
	s := newTestStore(t, Config{MaxBytes: maxBytes})
	for i := range 1000 {
		if err := s.Set(fmt.Sprint("big", i), make([]byte, 10<<10), 0); err != nil {
			t.Fatal(err)
		}
	}
	if !eventually(5*time.Second, func() bool { return s.WeightedSize() <= maxBytes && s.Len() < 110 }) {
		t.Fatalf("after 10 MiB into 1 MiB: WeightedSize %d, Len %d", s.WeightedSize(), s.Len())
	}
	for i := range 20000 {
		if err := s.Set(fmt.Sprint("small", i), make([]byte, 10), 0); err != nil {
			t.Fatal(err)
		}
	}
	if !eventually(5*time.Second, func() bool { return s.WeightedSize() <= maxBytes }) {
		t.Fatalf("WeightedSize %d over %d", s.WeightedSize(), maxBytes)
	}
	if n := s.Len(); n < 3000 {
		t.Fatalf("Len = %d small entries in 1 MiB, want thousands", n)
	}
}

func TestMaxEntries(t *testing.T) {
	s := newTestStore(t, Config{MaxEntries: 100})
	for i := range 1000 {
		if err := s.Set(fmt.Sprint("k", i), make([]byte, 1000), 0); err != nil {
			t.Fatal(err)
		}
	}
	if !eventually(5*time.Second, func() bool { return s.Len() <= 100 }) {
		t.Fatalf("Len = %d, want at most 100", s.Len())
	}
	if s.WeightedSize() != 0 {
		t.Fatalf("WeightedSize = %d without MaxBytes", s.WeightedSize())
	}
}

func TestTTL(t *testing.T) {
	for _, res := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(fmt.Sprint("resolution=", res), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ClockResolution = res
			s := newTestStore(t, cfg)
			_ = s.Set("short", []byte("v"), 30*time.Millisecond)
			_ = s.Set("forever", []byte("v"), 0)
			_ = s.Set("long", []byte("v"), time.Hour)
			if !eventually(2*time.Second, func() bool { _, ok := s.Get("short"); return !ok }) {
				t.Fatal("entry with a 30ms ttl still there after 2s")
			}
			for _, k := range []string{"forever", "long"} {
				if _, ok := s.Get(k); !ok {
					t.Fatalf("%s expired", k)
				}
			}
			// An overwrite without a ttl makes the entry permanent.
			_ = s.Set("short", []byte("v"), 30*time.Millisecond)
			_ = s.Set("short", []byte("w"), 0)
			time.Sleep(60 * time.Millisecond)
			if v, ok := s.Get("short"); !ok || string(v) != "w" {
				t.Fatalf("overwritten entry = %q, %v", v, ok)
			}
		})
	}
}

func TestTTLIgnored(t *testing.T) {
	s := newTestStore(t, Config{MaxEntries: 10})
	_ = s.Set("k", []byte("v"), time.Millisecond)
	time.Sleep(20 * time.Millisecond)
	if _, ok := s.Get("k"); !ok {
		t.Fatal("entry expired although the store ignores ttl")
	}
}

func TestConcurrentClose(t *testing.T) {
	s, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Go(func() {
			for i := 0; i < 500; i++ {
				k := fmt.Sprint("k", (w*7+i)%50)
				switch i % 5 {
				case 0:
					_ = s.Delete(k)
				case 1:
					_ = s.Set(k, []byte(k), time.Duration(i%3)*time.Minute)
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
		})
	}
	wg.Go(func() { _ = s.Close() })
	wg.Wait()
	_ = s.Close()
	if _, ok := s.Get("k1"); ok {
		t.Fatal("Get hit after Close")
	}
}
