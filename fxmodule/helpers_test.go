package fxmodule_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"

	// The transports the tests use register their schemes.
	_ "github.com/backplane-go/backplane/transports/natstransport"
	_ "github.com/backplane-go/backplane/transports/redistransport"
	_ "github.com/backplane-go/backplane/transports/servicebustransport"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func init() {
	// A third-party store, registered the way an application would.
	fxmodule.RegisterStore("teststore", func(_ context.Context, cfg fxmodule.StoreConfig) (core.LocalStore, error) {
		return &mapStore{m: map[string][]byte{}, params: cfg.Params}, nil
	})
}

// mapStore is a minimal LocalStore.
type mapStore struct {
	mu     sync.Mutex
	m      map[string][]byte
	params map[string]string
	closed bool
}

func (s *mapStore) Get(k string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[k]
	return append([]byte(nil), v...), ok
}

func (s *mapStore) Set(k string, v []byte, _ time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return core.ErrClosed
	}
	s.m[k] = append([]byte(nil), v...)
	return nil
}

func (s *mapStore) Delete(keys ...string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.m, k)
	}
	return nil
}

func (s *mapStore) Clear() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.m)
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
	return nil
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
