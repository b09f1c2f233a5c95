package redistransport_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/faultproxy"
	"github.com/backplane-go/backplane/internal/testenv"
	"github.com/backplane-go/backplane/transports/redistransport"
)

// openStream opens a stream-mode transport on url, closed when t ends.
func openStream(t testing.TB, url, ns string, opts ...redistransport.Option) *redistransport.Transport {
	t.Helper()
	opts = append(append([]redistransport.Option{redistransport.WithClientName(uniq("st"))}, fastRecovery...), opts...)
	tr, err := redistransport.Open(url, ns, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tr
}

// dropStream deletes the stream key on the server of url when t ends, so
// that tests leave nothing behind on a shared server.
func dropStream(t testing.TB, url, key string) {
	t.Cleanup(func() {
		opt, err := redis.ParseURL(url)
		if err != nil {
			return
		}
		c := redis.NewClient(opt)
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		c.Del(ctx, key)
	})
}

func publish(t testing.TB, tr core.Backplane, payloads ...string) {
	t.Helper()
	ps := make([][]byte, len(payloads))
	for i, p := range payloads {
		ps[i] = []byte(p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := tr.Publish(ctx, ps...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func TestStreamURL(t *testing.T) {
	tr, err := redistransport.Open("redis://127.0.0.1:1/0?mode=stream&retention=10m&maxlen=5000&dial_timeout=1s", "ns")
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer tr.Close()
	if l := tr.Limits(); !l.Durable || l.ConcurrentPublish != 1 {
		t.Fatalf("Limits = %+v; want Durable, ConcurrentPublish 1", l)
	}
	if tr.Channel() != "backplane:{ns}" {
		t.Fatalf("Channel = %q", tr.Channel())
	}
	pubsub, err := redistransport.Open("redis://127.0.0.1:1/0?mode=pubsub", "ns")
	if err != nil {
		t.Fatalf("Open pubsub: %v", err)
	}
	defer pubsub.Close()
	if pubsub.Limits().Durable {
		t.Fatal("pub/sub mode is Durable")
	}
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": "127.0.0.1:1"}})
	defer ring.Close()
	if _, err := redistransport.New(ring, "ns", redistransport.WithStream(redistransport.StreamOptions{})); !errors.Is(err, core.ErrInvalidOption) {
		t.Errorf("New(Ring) in the stream mode = %v; want ErrInvalidOption", err)
	}
	for _, bad := range []string{
		"redis://127.0.0.1:1?mode=log",
		"redis://127.0.0.1:1?maxlen=10",
		"redis://127.0.0.1:1?mode=stream&maxlen=x",
		"redis://127.0.0.1:1?mode=stream&retention=ten",
		"redis://127.0.0.1:1?mode=stream&retention=-1s&maxlen=-1",
	} {
		if _, err := redistransport.Open(bad, "ns"); !errors.Is(err, core.ErrInvalidOption) {
			t.Errorf("Open(%q) = %v; want ErrInvalidOption", bad, err)
		}
	}
}

func TestStreamPublishSubscribeInOrder(t *testing.T) {
	url := testenv.RedisURL(t)
	ns := uniq("stream")
	pub := openStream(t, url, ns, redistransport.WithStream(redistransport.StreamOptions{}))
	sub := openStream(t, url+"?mode=stream", ns)
	dropStream(t, url, sub.Channel())
	r := subscribe(t, sub)
	var want []string
	for i := range 50 {
		batch := []string{fmt.Sprint("m", 2*i), fmt.Sprint("m", 2*i+1), ""}
		publish(t, pub, batch...)
		want = append(want, batch...)
	}
	waitFor(t, "every entry", func() bool { return len(r.messages()) >= len(want) })
	got := r.messages()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %d messages %.80q...; want %d in order", len(got), got, len(want))
	}
	if k := r.kinds(); len(k) != 1 || k[0] != core.EventConnected {
		t.Fatalf("events %v; want connected only", k)
	}
}

// cutSubscriber returns a subscriber that reaches srv through a proxy
// (cut by refusing and resetting its connections) and a publisher
// connected directly.
func cutSubscriber(t *testing.T, srv *testenv.RedisServer, opts ...redistransport.Option) (pub, sub *redistransport.Transport, r *recorder, p *faultproxy.Proxy) {
	t.Helper()
	p, err := faultproxy.New(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ns := uniq("stream")
	opts = append([]redistransport.Option{redistransport.WithStream(redistransport.StreamOptions{})}, opts...)
	pub = openStream(t, srv.URL(), ns, opts...)
	sub = openStream(t, "redis://"+p.Addr(), ns, opts...)
	return pub, sub, subscribe(t, sub), p
}

func reconnected(t *testing.T, r *recorder) core.Event {
	t.Helper()
	expectRecovery(t, r, 0)
	ev, _ := r.eventAfter(core.EventReconnected, 0)
	return ev
}

func TestStreamResumesAfterCut(t *testing.T) {
	srv := testenv.StartRedis(t)
	pub, _, r, p := cutSubscriber(t, srv)
	publish(t, pub, "before")
	waitFor(t, "before", func() bool { return r.has("before") })
	p.SetRefuse(true)
	p.Reset()
	waitFor(t, "EventDisconnected", func() bool { _, i := r.eventAfter(core.EventDisconnected, 0); return i >= 0 })
	for i := range 20 {
		publish(t, pub, fmt.Sprint("during", i))
	}
	p.SetRefuse(false)
	if ev := reconnected(t, r); !ev.Resumed {
		t.Fatalf("EventReconnected %+v; want Resumed", ev)
	}
	publish(t, pub, "after")
	waitFor(t, "after", func() bool { return r.has("after") })
	want := []string{"before"}
	for i := range 20 {
		want = append(want, fmt.Sprint("during", i))
	}
	want = append(want, "after")
	if got := r.messages(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %q; want %q", got, want)
	}
}

func TestStreamTrimmedPastIsALoss(t *testing.T) {
	srv := testenv.StartRedis(t)
	pub, _, r, p := cutSubscriber(t, srv, redistransport.WithStream(redistransport.StreamOptions{MaxLen: 5, Retention: -1}))
	publish(t, pub, "before")
	waitFor(t, "before", func() bool { return r.has("before") })
	p.SetRefuse(true)
	p.Reset()
	waitFor(t, "EventDisconnected", func() bool { _, i := r.eventAfter(core.EventDisconnected, 0); return i >= 0 })
	batch := make([]string, 1000)
	for i := range batch {
		batch[i] = fmt.Sprint("during", i)
	}
	publish(t, pub, batch...)
	p.SetRefuse(false)
	ev := reconnected(t, r)
	if ev.Resumed || !errors.Is(ev.Err, redistransport.ErrStreamLoss) {
		t.Fatalf("EventReconnected %+v; want a loss (Resumed false, ErrStreamLoss)", ev)
	}
	publish(t, pub, "after")
	waitFor(t, "after", func() bool { return r.has("after") })
}

func TestStreamTrimmedWhileConnectedIsALoss(t *testing.T) {
	srv := testenv.StartRedis(t)
	pub, _, r, p := cutSubscriber(t, srv, redistransport.WithStream(redistransport.StreamOptions{MaxLen: 5, Retention: -1}))
	publish(t, pub, "before")
	waitFor(t, "before", func() bool { return r.has("before") })
	// Hold what the server sends to the subscriber (not long enough for it
	// to give up on the connection) while the stream is trimmed past it.
	p.SetStall(faultproxy.Down, true)
	batch := make([]string, 1000)
	for i := range batch {
		batch[i] = fmt.Sprint("during", i)
	}
	publish(t, pub, batch...)
	p.SetStall(faultproxy.Down, false)
	waitFor(t, fmt.Sprintf("a loss reported (events %v)", r.kinds()), func() bool {
		for _, ev := range r.eventList() {
			if ev.Kind == core.EventLoss || ev.Kind == core.EventReconnected && !ev.Resumed {
				return errors.Is(ev.Err, redistransport.ErrStreamLoss)
			}
		}
		return false
	})
}

func TestStreamRestart(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		resumed bool
	}{
		{"no-persistence", nil, false},
		{"appendfsync-always", []string{"--appendonly", "yes", "--appendfsync", "always"}, true},
		{"appendfsync-everysec", []string{"--appendonly", "yes", "--appendfsync", "everysec"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := testenv.StartRedis(t, testenv.WithRedisArgs(c.args...))
			ns := uniq("stream")
			pub := openStream(t, srv.URL()+"?mode=stream", ns)
			sub := openStream(t, srv.URL()+"?mode=stream", ns)
			r := subscribe(t, sub)
			publish(t, pub, "before")
			waitFor(t, "before", func() bool { return r.has("before") })
			srv.Restart()
			ev := reconnected(t, r)
			if ev.Resumed != c.resumed {
				t.Fatalf("EventReconnected %+v; want Resumed %v", ev, c.resumed)
			}
			if !c.resumed && !errors.Is(ev.Err, redistransport.ErrStreamLoss) {
				t.Fatalf("the loss's cause %v does not wrap ErrStreamLoss", ev.Err)
			}
			publish(t, pub, "after")
			waitFor(t, "after", func() bool { return r.has("after") })
			if got := r.messages(); fmt.Sprint(got) != "[before after]" {
				t.Fatalf("received %q; want before, after", got)
			}
		})
	}
}

func TestStreamCloseUnblocksRead(t *testing.T) {
	url := testenv.RedisURL(t)
	tr, err := redistransport.Open(url+"?mode=stream", uniq("stream"), redistransport.WithHealthCheck(time.Minute, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	subscribe(t, tr)
	time.Sleep(50 * time.Millisecond) // let the read loop block
	start := time.Now()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v with an XREAD BLOCK pending", d)
	}
}

func TestStreamPromotedReplicaIsALoss(t *testing.T) {
	primary := testenv.StartRedis(t)
	replica := testenv.StartRedis(t, testenv.WithRedisArgs(
		"--replicaof", "127.0.0.1", fmt.Sprint(primary.Port()), "--appendonly", "yes", "--appendfsync", "always"))
	waitFor(t, "the replica in sync", func() bool {
		info, err := replica.Do("INFO", "replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	p, err := faultproxy.New(replica.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ns := uniq("stream")
	pub := openStream(t, primary.URL()+"?mode=stream", ns)
	sub := openStream(t, "redis://"+p.Addr()+"?mode=stream", ns)
	publish(t, pub, "before") // the stream exists on the replica before the subscriber reads it
	waitFor(t, "the stream on the replica", func() bool { n, _ := replica.Do("XLEN", sub.Channel()); return n == "1" })
	r := subscribe(t, sub)
	publish(t, pub, "read")
	waitFor(t, "read", func() bool { return r.has("read") })
	p.SetRefuse(true)
	p.Reset()
	waitFor(t, "EventDisconnected", func() bool { _, i := r.eventAfter(core.EventDisconnected, 0); return i >= 0 })
	// A failover: the replica becomes a primary (with every entry, as it
	// happens, but nothing proves that).
	if _, err := replica.Do("REPLICAOF", "NO", "ONE"); err != nil {
		t.Fatal(err)
	}
	p.SetRefuse(false)
	ev := reconnected(t, r)
	if ev.Resumed || !errors.Is(ev.Err, redistransport.ErrStreamLoss) {
		t.Fatalf("EventReconnected %+v after a promotion; want a loss", ev)
	}
}

// A replaying subscriber reads the entries the stream still holds, oldest
// first, then what comes next, and counts nothing trimmed before it
// subscribed as lost.
func TestStreamReplay(t *testing.T) {
	url := testenv.RedisURL(t)
	ns := uniq("replay")
	pub := openStream(t, url+"?mode=stream", ns)
	dropStream(t, url, pub.Channel())
	for i := range 10 {
		publish(t, pub, fmt.Sprint("m", i))
	}
	if err := sharedClient(t, uniq("trim")).XTrimMaxLen(context.Background(), pub.Channel(), 4).Err(); err != nil {
		t.Fatalf("XTRIM: %v", err)
	}
	sub := openStream(t, url+"?mode=stream&replay=true", ns,
		redistransport.WithStream(redistransport.StreamOptions{CheckInterval: 20 * time.Millisecond}))
	r := subscribe(t, sub)
	publish(t, pub, "m10")
	want := []string{"m6", "m7", "m8", "m9", "m10"}
	waitFor(t, "the retained entries and the next one", func() bool { return len(r.messages()) >= len(want) })
	time.Sleep(200 * time.Millisecond) // ten position checks: a false loss would be reported by now
	if got := r.messages(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %q, want %q", got, want)
	}
	if k := r.kinds(); len(k) != 1 || k[0] != core.EventConnected {
		t.Fatalf("events %v; want connected only", k)
	}
	if _, err := redistransport.Open(url+"?replay=true", ns); err == nil || !strings.Contains(err.Error(), "replay") {
		t.Errorf("replay without mode=stream: %v, want an error naming replay", err)
	}
}
