package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// The README's snippet runs against a real Redis: it reads through the
// cache, writes the database and invalidates.
func TestRun(t *testing.T) {
	url := testenv.RedisURL(t)
	db := newDB()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, url, db); err != nil {
		t.Fatal(err)
	}
	if db.loads != 1 || db.products["product:42"].Price != 12 {
		t.Fatalf("loads %d, product %+v", db.loads, db.products["product:42"])
	}
}

// With the broker down, or not the broker the URL says, run fails with
// the cause within the caller's deadline, and does not panic.
func TestRunBrokerDown(t *testing.T) {
	tests := []struct {
		name, url string
		want      string
	}{
		{"refused", "redis://127.0.0.1:1/0", "connection refused"},
		{"rediss to a plain server", "rediss://" + strings.TrimPrefix(testenv.RedisURL(t), "redis://"), "rediss:// needs one; use redis:// for a plain server"},
		{"bad URL", "redis://127.0.0.1:6379/0?shards=2", "shards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			err := run(ctx, tt.url, newDB())
			if err == nil {
				t.Fatal("no error")
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("run took %v with a 300ms deadline", took)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			if errors.Is(err, core.ErrClosed) {
				t.Errorf("error %v", err)
			}
		})
	}
}
