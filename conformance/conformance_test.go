package conformance_test

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/conformance"
	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// mapStore is a small, correct LocalStore used to show that RunStore
// passes on a store that keeps the contract. Its broken modes (the alias
// fields) exist for the self-tests in broken_test.go.
type mapStore struct {
	cfg mapStoreConfig

	mu     sync.Mutex
	m      map[string]mapEntry
	fifo   []string // insertion order, for eviction
	closed bool
}

type mapStoreConfig struct {
	maxEntries  int // > 0: evict the oldest entries beyond it
	maxValueLen int // > 0: reject longer values
	ttl         bool

	aliasOnSet     bool // broken: keep the caller's slice
	aliasOnGet     bool // broken: return the stored slice
	neverExpire    bool // broken: declare TTL, ignore it
	plainSizeError bool // broken: reject oversize values with an unwrapped error
}

type mapEntry struct {
	v       []byte
	expires time.Time
}

func newMapStore(cfg mapStoreConfig) *mapStore {
	return &mapStore{cfg: cfg, m: make(map[string]mapEntry)}
}

func (s *mapStore) caps() core.StoreCaps {
	return core.StoreCaps{TTL: s.cfg.ttl, Eviction: s.cfg.maxEntries > 0, MaxValueLen: s.cfg.maxValueLen}
}

func (s *mapStore) Get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	e, ok := s.m[key]
	if !ok {
		return nil, false
	}
	if !e.expires.IsZero() && time.Now().After(e.expires) {
		delete(s.m, key)
		return nil, false
	}
	if s.cfg.aliasOnGet {
		return e.v, true
	}
	return bytes.Clone(e.v), true
}

func (s *mapStore) Set(key string, value []byte, ttl time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("mapstore: set: %w", core.ErrClosed)
	}
	if s.cfg.maxValueLen > 0 && len(value) > s.cfg.maxValueLen {
		if s.cfg.plainSizeError {
			return errors.New("mapstore: value too large")
		}
		return fmt.Errorf("mapstore: %d bytes: %w", len(value), core.ErrValueTooLarge)
	}
	e := mapEntry{v: value}
	if !s.cfg.aliasOnSet {
		e.v = bytes.Clone(value)
	}
	if s.cfg.ttl && ttl > 0 && !s.cfg.neverExpire {
		e.expires = time.Now().Add(ttl)
	}
	if _, ok := s.m[key]; !ok && s.cfg.maxEntries > 0 {
		s.fifo = append(s.fifo, key)
	}
	s.m[key] = e
	for s.cfg.maxEntries > 0 && len(s.m) > s.cfg.maxEntries && len(s.fifo) > 0 {
		delete(s.m, s.fifo[0])
		s.fifo = s.fifo[1:]
	}
	return nil
}

func (s *mapStore) Delete(keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("mapstore: delete: %w", core.ErrClosed)
	}
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *mapStore) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("mapstore: clear: %w", core.ErrClosed)
	}
	clear(s.m)
	s.fifo = nil
	return nil
}

func (s *mapStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *mapStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.m = nil
	return nil
}

// TestRunStoreMapStore shows that RunStore passes on correct stores, with
// and without the optional capabilities.
func TestRunStoreMapStore(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  mapStoreConfig
	}{
		{"plain", mapStoreConfig{}},
		{"all-capabilities", mapStoreConfig{maxEntries: 1000, maxValueLen: 4096, ttl: true}},
	} {
		t.Run(c.name, func(t *testing.T) {
			conformance.RunStore(t, func(testing.TB) core.LocalStore {
				return newMapStore(c.cfg)
			}, newMapStore(c.cfg).caps())
		})
	}
}

// memHarness is the harness of the in-memory transport: it can cut a
// connection and restart its broker. wrap, when set, wraps every
// transport (the broken adapters of broken_test.go).
func memHarness(t testing.TB, bound time.Duration, wrap func(ns string, tr *memtransport.Transport) core.Backplane) conformance.BackplaneHarness {
	// The suite makes handlers panic on purpose; keep the hub's reports of
	// them out of the test output.
	hub := memtransport.NewHub(memtransport.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { _ = hub.Close() })
	if wrap == nil {
		wrap = func(_ string, tr *memtransport.Transport) core.Backplane { return tr }
	}
	return conformance.BackplaneHarness{
		New: func(_ testing.TB, ns string) core.Backplane {
			return wrap(ns, hub.New(ns))
		},
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			tr := unwrap(bp)
			if tr == nil {
				t.Fatalf("Disconnect: %T is not a memtransport transport", bp)
			}
			tr.Disconnect(errors.New("conformance: connection cut"))
			tr.Reconnect()
		},
		Stall: func(t testing.TB, bp core.Backplane) func() {
			tr := unwrap(bp)
			if tr == nil {
				t.Fatalf("Stall: %T is not a memtransport transport", bp)
			}
			tr.Stall()
			return tr.Resume
		},
		RestartBroker: func(testing.TB) { hub.Restart() },
		Bound:         bound,
	}
}

// unwrap returns the memtransport transport inside bp.
func unwrap(bp core.Backplane) *memtransport.Transport {
	switch v := bp.(type) {
	case *memtransport.Transport:
		return v
	case interface {
		inner() *memtransport.Transport
	}:
		return v.inner()
	}
	return nil
}

// TestRunBackplaneMemtransportDurable runs RunBackplane on a durable hub,
// whose cut transports reconnect after a while, as a client would.
func TestRunBackplaneMemtransportDurable(t *testing.T) {
	hub := memtransport.NewHub(memtransport.WithDurable(memtransport.DefaultQueueSize), memtransport.WithLogger(slog.New(slog.DiscardHandler)))
	t.Cleanup(func() { _ = hub.Close() })
	conformance.RunBackplane(t, conformance.BackplaneHarness{
		New:     func(_ testing.TB, ns string) core.Backplane { return hub.New(ns) },
		Ordered: true,
		Disconnect: func(t testing.TB, bp core.Backplane) {
			tr := bp.(*memtransport.Transport)
			tr.Disconnect(errors.New("conformance: connection cut"))
			time.AfterFunc(20*time.Millisecond, tr.Reconnect)
		},
		RestartBroker: func(testing.TB) { hub.Restart() },
	})
}

// TestRunBackplaneMemtransport shows that RunBackplane passes on a correct
// transport, including the fault cases.
func TestRunBackplaneMemtransport(t *testing.T) {
	conformance.RunBackplane(t, memHarness(t, 0, nil))
}
