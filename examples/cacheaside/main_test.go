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
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/transports/memtransport"
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

// The tag snippet of README evicts the listing everywhere: a second
// instance that cached it reloads it.
func TestListShoes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hub := memtransport.NewHub()
	defer hub.Close()
	open := func() *core.Cache {
		store, err := bigcachestore.New(bigcachestore.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		c, err := core.Open(ctx, store, hub.New("catalog"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := open(), open()
	db := newDB()
	lists := core.NewTyped[[]Product](b)
	load := func(ctx context.Context) ([]Product, error) { return db.ListCategory(ctx, "shoes") }
	if _, err := lists.GetOrLoadWithTags(ctx, "list:shoes:page:1", []string{"category:shoes"}, load); err != nil {
		t.Fatal(err)
	}
	if err := listShoes(ctx, a, db); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok, _ := lists.Get("list:shoes:page:1"); !ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("b still serves the listing")
		}
		time.Sleep(time.Millisecond)
	}
	shoes, err := lists.GetOrLoadWithTags(ctx, "list:shoes:page:1", []string{"category:shoes"}, load)
	if err != nil || shoes[0].Price != 80 {
		t.Fatalf("b reads %+v, %v", shoes, err)
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
			err := run(ctx, tt.url, newDB())
			if err == nil {
				t.Fatal("no error")
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
