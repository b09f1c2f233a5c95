package fxmodule_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports/memtransport"
	"github.com/backplane-go/backplane/transports/natstransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

func TestOpenBackplaneErrors(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		url  string
		is   error
		want []string
	}{
		{"unknown scheme", "kafka://broker:9092", fxmodule.ErrUnknownScheme, []string{`"kafka"`, "mem, nats, postgres, postgresql, redis, rediss, sb, servicebus, tls"}},
		{"no scheme", "127.0.0.1:6379", core.ErrInvalidOption, []string{"no scheme", "redis"}},
		{"malformed", "redis://[::1", core.ErrInvalidOption, []string{"malformed"}},
		{"mem unknown param", "mem://?size=1", fxmodule.ErrUnknownParameter, []string{`"size"`, "mem://", "max_payload", "namespace", "queue_size"}},
		{"mem path", "mem://hub/x", core.ErrInvalidOption, []string{"hub name"}},
		{"mem bad int", "mem://?max_payload=big", core.ErrInvalidOption, []string{"max_payload", "big"}},
		{"mem negative", "mem://?queue_size=-1", core.ErrInvalidOption, []string{"queue_size"}},
		{"redis unknown param", "redis://h:6379?shards=2", fxmodule.ErrUnknownParameter, []string{`"shards"`, "redis://", "sharded", "dial_timeout", "tls_ca"}},
		{"redis bad bool", "redis://h:6379?sharded=maybe", core.ErrInvalidOption, []string{"sharded", "maybe"}},
		{"redis bad duration", "redis://h:6379?health_check_interval=often", core.ErrInvalidOption, []string{"health_check_interval", "often"}},
		{"redis negative concurrency", "redis://h:6379?concurrent_publish=-1", core.ErrInvalidOption, []string{"concurrent_publish", "negative"}},
		{"redis tls without rediss", "redis://h:6379?tls_server_name=h", core.ErrInvalidOption, []string{"rediss://"}},
		{"redis missing ca", "rediss://h:6379?tls_ca=/nonexistent/ca.pem", core.ErrInvalidOption, []string{"tls_ca", "/nonexistent/ca.pem"}},
		{"redis cert without key", "rediss://h:6379?tls_cert=/x.pem", core.ErrInvalidOption, []string{"tls_key"}},
		{"redis bad go-redis value", "redis://h:6379?dial_timeout=soon", core.ErrInvalidOption, []string{"dial_timeout"}},
		{"nats unknown param", "nats://h:4222?servers=x", fxmodule.ErrUnknownParameter, []string{`"servers"`, "nats://", "addr", "connect_timeout"}},
		{"tls unknown param", "tls://h:4222?ca=x", fxmodule.ErrUnknownParameter, []string{`"ca"`, "tls://", "tls_ca"}},
		{"nats negative concurrency", "nats://h:4222?concurrent_publish=-1", core.ErrInvalidOption, []string{"concurrent_publish", "negative"}},
		{"nats bad duration", "nats://h:4222?connect_timeout=x", core.ErrInvalidOption, []string{"connect_timeout"}},
		{"nats bad subject prefix", "nats://h:4222?subject_prefix=a.*", core.ErrInvalidOption, []string{"SubjectPrefix"}},
		{"nats bad addr", "nats://h:4222?addr=http://x:1", core.ErrInvalidOption, []string{"scheme"}},
		{"empty namespace", "mem://?namespace=", core.ErrInvalidOption, []string{"empty namespace"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bp, err := fxmodule.OpenBackplane(ctx, tt.url, "ns")
			if err == nil {
				_ = bp.Close()
				t.Fatal("no error")
			}
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestOpenBackplaneRedactsPassword(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cret@h:6379?bogus=1",
		"nats://user:s3cret@h:4222?bogus=1",
		"kafka://user:s3cret@h:1",
		"redis://user:s3cret@[::1",
		"user:s3cret@h:6379",
		"nats://s3cret@h:4222?bogus=1",
		"nats://h:4222?token=s3cret&bogus=1",
		"nats://h:4222?token=s3cret&connect_timeout=x",
	} {
		_, err := fxmodule.OpenBackplane(context.Background(), u, "ns")
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("OpenBackplane(%s) = %v: want an error without the password", strings.ReplaceAll(u, "s3cret", "…"), err)
		}
	}
}

func TestRedactedTransportURL(t *testing.T) {
	for in, want := range map[string]string{
		"redis://user:pw@h:6379/0":         "redis://user:xxxxx@h:6379/0",
		"nats://tok@h:4222":                "nats://xxxxx@h:4222",
		"nats://h:4222?token=tok&name=svc": "nats://h:4222?name=svc&token=xxxxx",
		"mem://hub":                        "mem://hub",
	} {
		c := fxmodule.Config{TransportURL: in}
		if got := c.RedactedTransportURL(); got != want {
			t.Errorf("RedactedTransportURL(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestOpenBackplaneRedis(t *testing.T) {
	ctx := context.Background()
	bp, err := fxmodule.OpenBackplane(ctx, "redis://127.0.0.1:6379/0?namespace=other&sharded=true&channel_prefix=app:&max_payload=4096&client_name=svc&dial_timeout=1s", "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	rt := bp.(*redistransport.Transport)
	if rt.Channel() != "app:{other}" || !rt.Sharded() || rt.Limits().MaxPayload != 4096 {
		t.Fatalf("channel %q sharded %v limits %+v", rt.Channel(), rt.Sharded(), rt.Limits())
	}

	cl, err := fxmodule.OpenBackplane(ctx, "redis://127.0.0.1:7000?addr=127.0.0.1:7001&sharded=false", "ns")
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if ct := cl.(*redistransport.Transport); ct.Sharded() {
		t.Error("sharded=false on a cluster URL still sharded")
	}
}

func TestOpenBackplaneNATS(t *testing.T) {
	bp, err := fxmodule.OpenBackplane(context.Background(),
		"nats://u:p@127.0.0.1:4222?addr=127.0.0.1:4223&addr=nats://127.0.0.1:4224&subject_prefix=app&name=svc&max_payload=2048&pending_msgs=10&pending_bytes=10000&connect_timeout=1s&reconnect_wait=1s&ping_interval=5s&flush_timeout=2s&concurrent_publish=3", "orders")
	if err != nil {
		t.Fatal(err)
	}
	defer bp.Close()
	nt := bp.(*natstransport.Transport)
	if l := nt.Limits(); nt.Subject() != "app.orders" || l.MaxPayload != 2048 || l.ConcurrentPublish != 3 {
		t.Fatalf("subject %q limits %+v", nt.Subject(), nt.Limits())
	}
}

// The durable modes are chosen in the URL, through fxmodule as directly.
func TestOpenBackplaneDurableModes(t *testing.T) {
	ctx := context.Background()
	for _, u := range []string{
		"redis://127.0.0.1:6379/0?mode=stream&maxlen=1000&retention=1m",
		"nats://127.0.0.1:4222?jetstream=true&storage=memory&retention=1m",
	} {
		bp, err := fxmodule.OpenBackplane(ctx, u, "durable")
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if !bp.Limits().Durable {
			t.Errorf("%s: Limits %+v; want Durable", u, bp.Limits())
		}
		_ = bp.Close()
	}
	for _, u := range []string{"redis://127.0.0.1:6379/0?maxlen=1000", "nats://127.0.0.1:4222?storage=file"} {
		if bp, err := fxmodule.OpenBackplane(ctx, u, "durable"); err == nil {
			_ = bp.Close()
			t.Errorf("%s: a durable parameter without the mode was accepted", u)
		}
	}
}

func TestMemHubs(t *testing.T) {
	ctx := context.Background()
	open := func(u string) core.Backplane {
		t.Helper()
		bp, err := fxmodule.OpenBackplane(ctx, u, "memhubs")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = bp.Close() })
		return bp
	}
	a, b, other := open("mem://hubs-a"), open("mem://hubs-a?max_payload=4096"), open("mem://hubs-b")
	got := make(chan string, 10)
	for name, bp := range map[string]core.Backplane{"b": b, "other": other} {
		if err := bp.Subscribe(ctx, core.HandlerFuncs{Message: func(p []byte) { got <- name + ":" + string(p) }}); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Publish(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m != "b:x" {
		t.Fatalf("got %q, want b:x (same hub name)", m)
	}
	if fxmodule.MemHub("hubs-a") != fxmodule.MemHub("hubs-a") || fxmodule.MemHub("") != fxmodule.MemHub("default") {
		t.Error("MemHub does not return one hub per name")
	}
	// The hub keeps the options of its first use.
	if n := b.Limits().MaxPayload; n != memtransport.DefaultMaxPayload {
		t.Errorf("max_payload on an existing hub: %d", n)
	}
	if n := open("mem://hubs-c?max_payload=4096").Limits().MaxPayload; n != 4096 {
		t.Errorf("max_payload on a new hub: %d", n)
	}
	select {
	case m := <-got:
		t.Fatalf("another hub received %q", m)
	default:
	}
}

func TestRegisterTransport(t *testing.T) {
	var req fxmodule.TransportRequest
	fxmodule.RegisterTransport("Custom", func(_ context.Context, r fxmodule.TransportRequest) (core.Backplane, error) {
		if err := fxmodule.CheckParams(r.URL, "region"); err != nil {
			return nil, err
		}
		req = r
		return memtransport.NewHub().New(r.Namespace), nil
	})
	bp, err := fxmodule.OpenBackplane(context.Background(), "CUSTOM://host?region=eu&namespace=n2", "n1")
	if err != nil {
		t.Fatal(err)
	}
	_ = bp.Close()
	if req.Namespace != "n2" || req.URL.Query().Get("region") != "eu" || req.URL.Query().Has("namespace") || req.Logger == nil {
		t.Fatalf("request %+v", req)
	}
	_, err = fxmodule.OpenBackplane(context.Background(), "custom://host?zone=1", "n1")
	if !errors.Is(err, fxmodule.ErrUnknownParameter) || !strings.Contains(err.Error(), "namespace, region") {
		t.Fatalf("unknown parameter: %v", err)
	}
	found := false
	for _, s := range fxmodule.Schemes() {
		found = found || s == "custom"
	}
	if !found {
		t.Errorf("Schemes() = %v", fxmodule.Schemes())
	}
}

func TestOpenStore(t *testing.T) {
	ctx := context.Background()
	s, err := fxmodule.OpenStore(ctx, fxmodule.DefaultConfig().Store)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	_, err = fxmodule.OpenStore(ctx, fxmodule.StoreConfig{Name: "ristretto"})
	if !errors.Is(err, fxmodule.ErrUnknownStore) || !strings.Contains(err.Error(), "bigcache") {
		t.Fatalf("unknown store: %v", err)
	}
	cfg := fxmodule.DefaultConfig().Store
	cfg.Params = map[string]string{"x": "1"}
	if _, err := fxmodule.OpenStore(ctx, cfg); !errors.Is(err, fxmodule.ErrUnknownParameter) {
		t.Fatalf("bigcache with params: %v", err)
	}
	cfg = fxmodule.DefaultConfig().Store
	cfg.BigCache.Shards = 3
	if _, err := fxmodule.OpenStore(ctx, cfg); err == nil || !strings.Contains(err.Error(), "shards") {
		t.Fatalf("bad shards: %v", err)
	}
	cfg = fxmodule.DefaultConfig().Store
	cfg.Name = "otter"
	s, err = fxmodule.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatalf("otter: %v", err)
	}
	if _, ok := s.(*otterstore.Store); !ok {
		t.Fatalf("otter: OpenStore returned %T", s)
	}
	_ = s.Close()
	cfg.Params = map[string]string{"x": "1"}
	if _, err := fxmodule.OpenStore(ctx, cfg); !errors.Is(err, fxmodule.ErrUnknownParameter) {
		t.Fatalf("otter with params: %v", err)
	}
	cfg = fxmodule.DefaultConfig().Store
	cfg.Name = "OTTER"
	cfg.Otter.MaxSizeMB, cfg.Otter.MaxEntries = 0, -5
	if _, err := fxmodule.OpenStore(ctx, cfg); !errors.Is(err, core.ErrInvalidOption) || !strings.Contains(err.Error(), "store.otter.max_entries") {
		t.Fatalf("bad otter max_entries: %v", err)
	}
	s, err = fxmodule.OpenStore(ctx, fxmodule.StoreConfig{Name: "TestStore", Params: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if ms := s.(*mapStore); ms.params["k"] != "v" {
		t.Fatalf("params not passed: %v", ms.params)
	}
}
