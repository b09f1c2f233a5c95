package pgtransport_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/shipped"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/pgtransport"
)

func TestChannelName(t *testing.T) {
	if got := pgtransport.ChannelName("backplane:", "orders"); got != "backplane:orders" {
		t.Errorf("short namespace: %q", got)
	}
	exact := strings.Repeat("n", pgtransport.MaxChannelLen-len("backplane:"))
	if got := pgtransport.ChannelName("backplane:", exact); got != "backplane:"+exact {
		t.Errorf("63-byte channel changed: %q", got)
	}
	long := strings.Repeat("ä", 100) // 200 bytes
	a := pgtransport.ChannelName("backplane:", long+"a")
	b := pgtransport.ChannelName("backplane:", long+"b")
	for _, c := range []string{a, b} {
		if len(c) > pgtransport.MaxChannelLen || !utf8.ValidString(c) || !strings.HasPrefix(c, "backplane:ää") {
			t.Errorf("long namespace: %q (%d bytes); want a valid, readable name of at most %d bytes", c, len(c), pgtransport.MaxChannelLen)
		}
	}
	if a == b {
		t.Errorf("two long namespaces share the channel %q", a)
	}
	if a != pgtransport.ChannelName("backplane:", long+"a") {
		t.Error("ChannelName is not deterministic")
	}
	for _, ns := range []string{"a\x00b", "bad\xffutf8"} {
		c := pgtransport.ChannelName("backplane:", ns)
		if !utf8.ValidString(c) || strings.ContainsRune(c, 0) || c == pgtransport.ChannelName("backplane:", "ab") {
			t.Errorf("namespace %q: channel %q", ns, c)
		}
	}
	if pgtransport.ChannelName("backplane:", "Orders") == pgtransport.ChannelName("backplane:", "orders") {
		t.Error("case is folded")
	}
}

func TestOptions(t *testing.T) {
	if pgtransport.MaxPayload != 5997 || base64.StdEncoding.EncodedLen(pgtransport.MaxPayload) >= pgtransport.NotifyPayloadLimit ||
		base64.StdEncoding.EncodedLen(pgtransport.MaxPayload+1) < pgtransport.NotifyPayloadLimit {
		t.Errorf("MaxPayload %d is not the largest payload whose base64 stays below %d", pgtransport.MaxPayload, pgtransport.NotifyPayloadLimit)
	}
	url := "postgres://127.0.0.1:1/postgres"
	for _, o := range []pgtransport.Option{
		pgtransport.WithMaxPayload(pgtransport.MaxPayload + 1),
		pgtransport.WithConcurrentPublish(-1),
		pgtransport.WithReconnectBackoff(time.Second, time.Millisecond),
		pgtransport.WithPendingMessages(-1),
	} {
		if _, err := pgtransport.Open(url, "ns", o); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open with an invalid option: %v; want ErrInvalidOption", err)
		}
	}
	if _, err := pgtransport.Open(url, ""); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("empty namespace: %v", err)
	}
	if _, err := pgtransport.New(nil, "ns"); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("nil pool: %v", err)
	}
	tr, err := pgtransport.Open(url, "ns", pgtransport.WithMaxPayload(100), pgtransport.WithConcurrentPublish(3))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if l := tr.Limits(); l.MaxPayload != 100 || l.ConcurrentPublish != 3 || l.Durable {
		t.Errorf("Limits %+v", l)
	}
}

func TestOpenURL(t *testing.T) {
	ctx := context.Background()
	_, err := transports.Open(ctx, "postgres://127.0.0.1:1/db?bogus=1", "ns")
	if !errors.Is(err, transports.ErrUnknownParameter) || !strings.Contains(err.Error(), "ping_interval") {
		t.Errorf("unknown parameter: %v; want ErrUnknownParameter listing the valid ones", err)
	}
	_, err = transports.Open(ctx, "postgres://u:secret@127.0.0.1:1/db?ping_interval=soon", "ns")
	if !errors.Is(err, core.ErrInvalidOption) || strings.Contains(err.Error(), "secret") {
		t.Errorf("bad duration: %v; want ErrInvalidOption without the password", err)
	}
	for _, scheme := range []string{"postgres", "postgresql"} {
		bp, err := transports.Open(ctx, scheme+"://127.0.0.1:1/db?channel_prefix=app:&max_payload=1000&ping_interval=1s"+
			"&ping_timeout=2s&reconnect_backoff=1ms&max_reconnect_backoff=1s&concurrent_publish=2&pending_msgs=10"+
			"&sslmode=disable&application_name=x&pool_max_conns=2&connect_timeout=3", "ns")
		if err != nil {
			t.Fatalf("%s: %v", scheme, err)
		}
		tr := bp.(*pgtransport.Transport)
		if tr.Channel() != "app:ns" || tr.Limits().MaxPayload != 1000 || tr.Limits().ConcurrentPublish != 2 ||
			tr.Pool().Config().MaxConns != 2 || appName(tr) != "x" {
			t.Errorf("%s: channel %q, limits %+v, max conns %d", scheme, tr.Channel(), tr.Limits(), tr.Pool().Config().MaxConns)
		}
		if _, ok := tr.Pool().Config().ConnConfig.RuntimeParams["channel_prefix"]; ok {
			t.Errorf("%s: the transport's own parameter reached the server's settings", scheme)
		}
		_ = bp.Close()
	}
}

// TestGivenPool: a pool in the request's clients is used and never closed.
func TestGivenPool(t *testing.T) {
	url := testenv.PostgresURL(t)
	pool := newPool(t, url)
	ns := uniq("given")
	bp, err := transports.Open(context.Background(), "postgres://unused.invalid:1/x?ping_interval=1s", ns, transports.WithClient(pool))
	if err != nil {
		t.Fatal(err)
	}
	rec := subscribe(t, bp)
	publishUntil(t, bp, "via-pool", rec)
	if err := bp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pool.Ping(context.Background()); err != nil {
		t.Fatalf("the pool does not work after the transport's Close: %v", err)
	}
}

// TestLongAndCasedNamespaces: a namespace past the identifier limit works,
// and namespaces differing in case only are isolated.
func TestLongAndCasedNamespaces(t *testing.T) {
	url := testenv.PostgresURL(t)
	pool := newPool(t, url)
	base := uniq("ns")
	long := base + strings.Repeat("-long", 30)
	for _, pair := range [][2]string{{long + "A", long + "B"}, {"Up" + base, "up" + base}} {
		a, b := newTransport(t, pool, pair[0]), newTransport(t, pool, pair[1])
		if len(a.Channel()) > pgtransport.MaxChannelLen || a.Channel() == b.Channel() {
			t.Fatalf("channels %q and %q", a.Channel(), b.Channel())
		}
		ra, rb := subscribe(t, a), subscribe(t, b)
		publish(t, a, "to-a")
		publish(t, b, "to-b")
		waitFor(t, "delivery on "+a.Channel(), func() bool { return ra.has("to-a") && rb.has("to-b") })
		// A listener gets notifications in commit order: a fence on each
		// channel, published after both, comes after anything that leaked.
		publishUntil(t, a, "fence-a", ra)
		publishUntil(t, b, "fence-b", rb)
		if ra.has("to-b") || rb.has("to-a") {
			t.Errorf("%q and %q are not isolated", pair[0], pair[1])
		}
	}
}

// TestNotifyInTransaction: what an application NOTIFYs on the channel in
// a transaction of its own arrives once it commits, and not at all when it
// rolls back (the behaviour doc.go describes).
func TestNotifyInTransaction(t *testing.T) {
	url := testenv.PostgresURL(t)
	pool := newPool(t, url)
	tr := newTransport(t, pool, uniq("tx"))
	rec := subscribe(t, tr)
	ctx := context.Background()
	notify := func(payload string, commit bool) {
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", tr.Channel(), base64.StdEncoding.EncodeToString([]byte(payload))); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		if rec.has(payload) {
			t.Errorf("%q arrived before the transaction ended", payload)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	notify("rolled-back", false)
	notify("committed", true)
	waitFor(t, "the committed notification", func() bool { return rec.has("committed") })
	publishUntil(t, tr, "fence", rec)
	if rec.has("rolled-back") {
		t.Error("a rolled-back NOTIFY arrived")
	}
}

// TestPendingLimit: a handler slower than the notifications makes the
// transport drop past Options.PendingMessages and report EventLoss,
// instead of holding back the server's queue.
func TestPendingLimit(t *testing.T) {
	url := testenv.PostgresURL(t)
	pool := newPool(t, url)
	ns := uniq("pending")
	sub := newTransport(t, pool, ns, pgtransport.WithPendingMessages(4))
	release := make(chan struct{})
	var once sync.Once
	rec := &recorder{}
	h := core.HandlerFuncs{
		Message: func(p []byte) { <-release; rec.HandleMessage(p) },
		Event:   rec.HandleEvent,
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := sub.Subscribe(ctx, h); err != nil {
		t.Fatal(err)
	}
	defer once.Do(func() { close(release) })
	pub := newTransport(t, pool, ns)
	for i := range 50 {
		publish(t, pub, "burst-"+string(rune('a'+i%26)))
	}
	waitFor(t, "notifications dropped", func() bool { return sub.Dropped() > 0 })
	once.Do(func() { close(release) })
	waitFor(t, "EventLoss", func() bool { _, i := rec.eventAfter(core.EventLoss, 0); return i >= 0 })
	ev, _ := rec.eventAfter(core.EventLoss, 0)
	if !errors.Is(ev.Err, pgtransport.ErrPendingLimit) {
		t.Errorf("EventLoss cause %v; want ErrPendingLimit", ev.Err)
	}
	publishUntil(t, pub, "after", rec)
}

// TestSilentServer: a server that stops answering (replies held by a
// proxy, the connection open) is noticed by the ping, reported with
// ErrPing, and the listener reconnects once it answers again.
func TestSilentServer(t *testing.T) {
	target := testenv.PostgresURL(t)
	var proxies shipped.Proxies
	pu, p := proxies.Via(t, target)
	tr := openNamed(t, pu, uniq("silent"))
	t.Cleanup(func() { _ = tr.Close() })
	proxies.Add(tr, p)
	rec := subscribe(t, tr)
	resume := proxies.Stall(t, tr)
	waitFor(t, "EventDisconnected", func() bool { _, i := rec.eventAfter(core.EventDisconnected, 0); return i >= 0 })
	ev, i := rec.eventAfter(core.EventDisconnected, 0)
	if !errors.Is(ev.Err, pgtransport.ErrPing) {
		t.Errorf("disconnect cause %v; want ErrPing", ev.Err)
	}
	resume()
	waitFor(t, "EventReconnected", func() bool { _, j := rec.eventAfter(core.EventReconnected, i); return j >= 0 })
	publishUntil(t, tr, "back", rec)
}

// TestTerminatedPublisher: a pool connection terminated by the server
// fails at most the Publish that used it; later ones go through.
func TestTerminatedPublisher(t *testing.T) {
	srv := testenv.StartPostgres(t)
	name := uniq("pub")
	pool := newPool(t, named(t, srv.URL(), name))
	tr := newTransport(t, pool, uniq("ns"))
	rec := subscribe(t, tr)
	publish(t, tr, "before")
	srv.Terminate(t, name)
	publishUntil(t, tr, "after", rec)
	if !rec.has("before") {
		t.Error("the message published before the termination is missing")
	}
}

// TestQueryExecModes: one payload and several identical ones in one call
// arrive, whatever query mode the pool's configuration sets (the
// statement cache, or none, as behind a pooler in transaction mode).
func TestQueryExecModes(t *testing.T) {
	url := testenv.PostgresURL(t)
	for _, mode := range []string{"cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol"} {
		t.Run(mode, func(t *testing.T) {
			tr := openNamed(t, url+"&default_query_exec_mode="+mode, uniq("mode"))
			t.Cleanup(func() { _ = tr.Close() })
			rec := subscribe(t, tr)
			one, same := uniq("one"), uniq("same")
			publish(t, tr, one)
			publish(t, tr, same, same, same)
			publish(t, tr, same, same, same) // again, on a connection that has the statement
			waitFor(t, "every copy", func() bool { return rec.has(one) && rec.count(same) >= 6 })
		})
	}
}
