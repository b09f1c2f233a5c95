package fxmodule_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/stores/otterstore"
)

// yamlFor nests "a.b.c: v" into a YAML document.
func yamlFor(path, value string) string {
	parts := strings.Split(path, ".")
	var b strings.Builder
	for i, p := range parts {
		b.WriteString(strings.Repeat("  ", i) + p + ":")
		if i == len(parts)-1 {
			b.WriteString(" " + value)
		}
		b.WriteString("\n")
	}
	return b.String()
}

func TestConfigFieldsFromEnvAndYAML(t *testing.T) {
	tests := []struct {
		path  string // YAML path; the env variable derives from it
		value string
		check func(t *testing.T, c fxmodule.Config)
	}{
		{"namespace", "orders", func(t *testing.T, c fxmodule.Config) { eq(t, c.Namespace, "orders") }},
		{"transport_url", "redis://cache:6379/0", func(t *testing.T, c fxmodule.Config) { eq(t, c.TransportURL, "redis://cache:6379/0") }},
		{"transition_url", "nats://bus:4222", func(t *testing.T, c fxmodule.Config) { eq(t, c.TransitionURL, "nats://bus:4222") }},
		{"store.name", "teststore", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Name, "teststore") }},
		{"store.bigcache.shards", "64", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.BigCache.BigCache().Shards, 64) }},
		{"store.bigcache.max_size_mb", "32", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.BigCache.BigCache().HardMaxCacheSize, 32) }},
		{"store.bigcache.life_window", "20m", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.BigCache.BigCache().LifeWindow, 20*time.Minute) }},
		{"store.bigcache.clean_window", "30s", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.BigCache.BigCache().CleanWindow, 30*time.Second) }},
		{"store.bigcache.max_entries_in_window", "500", func(t *testing.T, c fxmodule.Config) {
			eq(t, c.Store.BigCache.BigCache().MaxEntriesInWindow, 500)
		}},
		{"store.bigcache.max_entry_size", "2048", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.BigCache.BigCache().MaxEntrySize, 2048) }},
		{"store.otter.max_size_mb", "64", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Otter.Otter().MaxBytes, 64<<20) }},
		{"store.otter.max_entries", "5000", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Otter.Otter().MaxEntries, 5000) }},
		{"store.otter.max_value_len", "4096", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Otter.Otter().MaxValueLen, 4096) }},
		{"store.otter.initial_capacity", "1000", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Otter.Otter().InitialCapacity, 1000) }},
		{"store.otter.expire", "false", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Otter.Otter().TTL, false) }},
		{"store.otter.clock_resolution", "100ms", func(t *testing.T, c fxmodule.Config) {
			eq(t, c.Store.Otter.Otter().ClockResolution, 100*time.Millisecond)
		}},
		{"store.params.region", "eu", func(t *testing.T, c fxmodule.Config) { eq(t, c.Store.Params["region"], "eu") }},
		{"ttl", "5m", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().TTL, 5*time.Minute) }},
		{"ttl_jitter", "0.25", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().TTLJitter, 0.25) }},
		{"on_disconnect", "keep", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().OnDisconnect, core.PolicyKeep) }},
		{"on_reconnect", "keep", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().OnReconnect, core.PolicyKeep) }},
		{"on_gap", "keep", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().OnGap, core.PolicyKeep) }},
		{"heartbeat_interval", "250ms", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().HeartbeatInterval, 250*time.Millisecond) }},
		{"heartbeat_timeout", "2s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().HeartbeatTimeout, 2*time.Second) }},
		{"max_keys_per_call", "100", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxKeysPerCall, 100) }},
		{"max_batch_keys", "200", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxBatchKeys, 200) }},
		{"max_payload", "65536", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxPayload, 65536) }},
		{"queue_size", "16", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().QueueSize, 16) }},
		{"publish_timeout", "750ms", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().PublishTimeout, 750*time.Millisecond) }},
		{"ack_timeout", "2s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().AckTimeout, 2*time.Second) }},
		{"reorder_window", "40ms", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().ReorderWindow, 40*time.Millisecond) }},
		{"max_peers", "64", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxPeers, 64) }},
		{"max_missing", "512", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxMissing, 512) }},
		{"max_tags_per_entry", "3", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().MaxTagsPerEntry, 3) }},
		{"canary_interval", "2s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().CanaryInterval, 2*time.Second) }},
		{"canary_timeout", "8s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().CanaryTimeout, 8*time.Second) }},
		{"replay_window", "30s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().ReplayWindow, 30*time.Second) }},
		{"accept_unsigned", "true", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().AcceptUnsigned, true) }},
		{"start_timeout", "3s", func(t *testing.T, c fxmodule.Config) { eq(t, c.StartTimeout, 3*time.Second) }},
		{"close_timeout", "9s", func(t *testing.T, c fxmodule.Config) { eq(t, c.CoreOptions().CloseTimeout, 9*time.Second) }},
	}

	var covered []string
	for _, tt := range tests {
		covered = append(covered, strings.TrimSuffix(tt.path, ".region"))
	}
	for _, p := range fxmodule.ConfigFieldPaths() {
		if !slices.Contains(covered, p) {
			t.Errorf("Config field %s has no case in this table", p)
		}
	}

	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			// The default must differ from the value, or the case proves nothing.
			def := fxmodule.DefaultConfig()
			def.Namespace = "default-ns"
			def.TransportURL = "mem://default-hub"
			before := def

			env := def
			name := "APP_" + strings.ToUpper(strings.ReplaceAll(tt.path, ".", "_"))
			if err := env.ApplyEnv("APP_", []string{name + "=" + tt.value, "UNRELATED=1"}); err != nil {
				t.Fatalf("ApplyEnv(%s): %v", name, err)
			}
			if reflect.DeepEqual(env, before) {
				t.Fatalf("%s=%s changed nothing", name, tt.value)
			}
			tt.check(t, env)
			if err := env.Validate(); err != nil {
				t.Fatalf("Validate after %s: %v", name, err)
			}

			y := def
			doc := yamlFor(tt.path, tt.value)
			if err := y.ApplyYAML(strings.NewReader(doc)); err != nil {
				t.Fatalf("ApplyYAML(%q): %v", doc, err)
			}
			tt.check(t, y)
			if !reflect.DeepEqual(env, y) {
				t.Fatalf("env and YAML differ:\nenv  %+v\nyaml %+v", env, y)
			}
		})
	}
}

func eq[T comparable](t *testing.T, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestDefaultConfig(t *testing.T) {
	c := fxmodule.DefaultConfig()
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "transport_url") {
		t.Fatalf("DefaultConfig without a transport: Validate = %v, want a transport_url error", err)
	}
	c.TransportURL = "mem://"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "namespace") {
		t.Fatalf("DefaultConfig without namespace: Validate = %v, want a namespace error", err)
	}
	c.Namespace = "ns"
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if got, want := c.CoreOptions(), core.DefaultOptions(); !reflect.DeepEqual(got, want) {
		t.Errorf("CoreOptions of DefaultConfig = %+v, want core.DefaultOptions %+v", got, want)
	}
	if fxmodule.DefaultConfig().TransportURL != "" || c.Store.Name != "bigcache" || c.StartTimeout != fxmodule.DefaultStartTimeout {
		t.Errorf("defaults: %+v", c)
	}
	// A namespace in the URL is enough.
	c = fxmodule.DefaultConfig()
	c.TransportURL = "mem://?namespace=fromurl"
	if err := c.Validate(); err != nil {
		t.Errorf("namespace in URL: %v", err)
	}
}

func TestValidateNamesFields(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*fxmodule.Config)
		want   string
	}{
		{"empty url", func(c *fxmodule.Config) { c.TransportURL = "" }, "transport_url"},
		{"url without scheme", func(c *fxmodule.Config) { c.TransportURL = "127.0.0.1:6379" }, "no scheme"},
		{"transition without scheme", func(c *fxmodule.Config) { c.TransitionURL = "127.0.0.1:6379" }, "transition_url"},
		{"transition same as transport", func(c *fxmodule.Config) { c.TransitionURL = c.TransportURL }, "transition_url"},
		{"empty store", func(c *fxmodule.Config) { c.Store.Name = "" }, "store.name"},
		{"policy", func(c *fxmodule.Config) { c.OnGap = "maybe" }, "on_gap"},
		{"start timeout", func(c *fxmodule.Config) { c.StartTimeout = 0 }, "start_timeout"},
		{"shards", func(c *fxmodule.Config) { c.Store.BigCache.Shards = 3 }, "store.bigcache.shards"},
		{"max size", func(c *fxmodule.Config) { c.Store.BigCache.MaxSizeMB = -1 }, "store.bigcache.max_size_mb"},
		{"life window", func(c *fxmodule.Config) { c.Store.BigCache.LifeWindow = 0 }, "store.bigcache.life_window"},
		{"clean window", func(c *fxmodule.Config) { c.Store.BigCache.CleanWindow = -1 }, "store.bigcache.clean_window"},
		{"entries", func(c *fxmodule.Config) { c.Store.BigCache.MaxEntriesInWindow = 0 }, "max_entries_in_window"},
		{"entry size", func(c *fxmodule.Config) { c.Store.BigCache.MaxEntrySize = 0 }, "max_entry_size"},
		{"otter size", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.MaxSizeMB = -1 }, "store.otter.max_size_mb"},
		{"otter entries", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.MaxEntries = -1 }, "store.otter.max_entries"},
		{"otter both bounds", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.MaxEntries = 10 }, "store.otter.max_entries"},
		{"otter value len", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.MaxValueLen = -1 }, "store.otter.max_value_len"},
		{"otter value over size", func(c *fxmodule.Config) {
			c.Store.Name = "otter"
			c.Store.Otter.MaxSizeMB, c.Store.Otter.MaxValueLen = 1, 1<<20
		}, "store.otter.max_value_len"},
		{"otter capacity", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.InitialCapacity = -1 }, "store.otter.initial_capacity"},
		{"otter clock", func(c *fxmodule.Config) { c.Store.Name = "otter"; c.Store.Otter.ClockResolution = -1 }, "store.otter.clock_resolution"},
		{"jitter", func(c *fxmodule.Config) { c.TTLJitter = 1 }, "TTLJitter"},
		{"ttl", func(c *fxmodule.Config) { c.TTL = -time.Second }, "TTL"},
		{"heartbeat", func(c *fxmodule.Config) { c.HeartbeatTimeout = c.HeartbeatInterval }, "HeartbeatTimeout"},
		{"queue", func(c *fxmodule.Config) { c.QueueSize = 0 }, "QueueSize"},
		{"keys per call", func(c *fxmodule.Config) { c.MaxKeysPerCall = 0 }, "MaxKeysPerCall"},
		{"batch keys", func(c *fxmodule.Config) { c.MaxBatchKeys = 0 }, "MaxBatchKeys"},
		{"peers", func(c *fxmodule.Config) { c.MaxPeers = 0 }, "MaxPeers"},
		{"payload", func(c *fxmodule.Config) { c.MaxPayload = -1 }, "MaxPayload"},
		{"publish timeout", func(c *fxmodule.Config) { c.PublishTimeout = 0 }, "PublishTimeout"},
		{"close timeout", func(c *fxmodule.Config) { c.CloseTimeout = 0 }, "CloseTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := fxmodule.DefaultConfig()
			c.Namespace, c.TransportURL = "ns", "mem://"
			tt.modify(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.want)
			}
			if !errors.Is(err, core.ErrInvalidOption) {
				t.Errorf("Validate error does not wrap core.ErrInvalidOption: %v", err)
			}
		})
	}
}

func TestLoadEnv(t *testing.T) {
	t.Setenv("BACKPLANE_NAMESPACE", "env-ns")
	t.Setenv("BACKPLANE_TRANSPORT_URL", "mem://envhub")
	t.Setenv("BACKPLANE_TTL", "5m")
	c, err := fxmodule.LoadEnv("")
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "env-ns" || c.TransportURL != "mem://envhub" || c.TTL != 5*time.Minute {
		t.Fatalf("LoadEnv = %+v", c)
	}
	t.Setenv("BACKPLANE_TTL", "five minutes")
	t.Setenv("BACKPLANE_QUEUE_SIZE", "many")
	_, err = fxmodule.LoadEnv("BACKPLANE_")
	for _, want := range []string{"BACKPLANE_TTL", "five minutes", "duration", "BACKPLANE_QUEUE_SIZE", "integer"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadEnv with bad values = %v, want it to mention %q", err, want)
		}
	}
}

func TestLoadYAML(t *testing.T) {
	const doc = `
namespace: yaml-ns
transport_url: mem://yamlhub
ttl: 90s
store:
  name: bigcache
  bigcache:
    shards: 16
    max_size_mb: 8
`
	c, err := fxmodule.LoadYAML(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	if c.Namespace != "yaml-ns" || c.TTL != 90*time.Second || c.Store.BigCache.Shards != 16 || c.Store.BigCache.MaxSizeMB != 8 {
		t.Fatalf("LoadYAML = %+v", c)
	}
	if c.HeartbeatInterval != time.Second {
		t.Errorf("an absent field lost its default: %v", c.HeartbeatInterval)
	}
	if c, err := fxmodule.LoadYAML(strings.NewReader("")); err == nil || c.TTL != 10*time.Minute {
		t.Errorf("empty document: %+v, %v (want defaults and a missing-namespace error)", c, err)
	}

	bad := []struct {
		name, doc string
		want      []string
	}{
		{"unknown field", "namespace: x\nttl_seconds: 5\n", []string{"line 2", `unknown field "ttl_seconds"`, "valid:", "transport_url"}},
		{"unknown nested field", "namespace: x\nstore:\n  bigcache:\n    size: 5\n", []string{"line 4", `"size"`, "store.bigcache", "max_size_mb"}},
		{"bad duration", "namespace: x\npublish_timeout: 5 seconds\n", []string{"line 2", "publish_timeout", "5 seconds", "duration"}},
		{"bad nested duration", "namespace: x\nstore:\n  bigcache:\n    life_window: forever\n", []string{"store.bigcache.life_window", "forever"}},
		{"bad number", "namespace: x\nttl_jitter: lots\n", []string{"ttl_jitter", "number"}},
		{"section as value", "namespace: x\nstore: bigcache\n", []string{"store must be a mapping"}},
		{"list as value", "namespace: [a, b]\n", []string{"namespace must be a single value"}},
		{"not yaml", "namespace: [\n", []string{"yaml"}},
		{"two errors", "ttl: x\nqueue_size: y\n", []string{"ttl", "queue_size"}},
		{"no transport", "namespace: x\n", []string{"yaml transport_url", "not set"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			_, err := fxmodule.LoadYAML(strings.NewReader(tt.doc))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestOtterFromYAMLAndEnv selects the otter store by either source and
// opens it with the configured bounds.
func TestOtterFromYAMLAndEnv(t *testing.T) {
	const doc = `
namespace: ns
transport_url: mem://
store:
  name: otter
  otter:
    max_size_mb: 0
    max_entries: 5000
    expire: false
`
	y, err := fxmodule.LoadYAML(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	e := fxmodule.DefaultConfig()
	if err := e.ApplyEnv("APP_", []string{
		"APP_NAMESPACE=ns",
		"APP_TRANSPORT_URL=mem://",
		"APP_STORE_NAME=otter",
		"APP_STORE_OTTER_MAX_SIZE_MB=0",
		"APP_STORE_OTTER_MAX_ENTRIES=5000",
		"APP_STORE_OTTER_EXPIRE=false",
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(y, e) {
		t.Fatalf("YAML and env differ:\nyaml %+v\nenv  %+v", y, e)
	}
	want := otterstore.Config{MaxEntries: 5000, MaxValueLen: 1 << 20, ClockResolution: time.Second}
	if got := y.Store.Otter.Otter(); got != want {
		t.Fatalf("Otter() = %+v, want %+v", got, want)
	}
	s, err := fxmodule.OpenStore(context.Background(), y.Store)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	os, ok := s.(*otterstore.Store)
	if !ok {
		t.Fatalf("OpenStore returned %T, want *otterstore.Store", s)
	}
	if c := os.Caps(); c.TTL || !c.Eviction || c.MaxValueLen != 1<<20 {
		t.Fatalf("Caps = %+v", c)
	}

	bad := "namespace: ns\nstore:\n  name: otter\n  otter:\n    max_entries: 10\n"
	if _, err := fxmodule.LoadYAML(strings.NewReader(bad)); err == nil || !strings.Contains(err.Error(), "store.otter.max_entries") {
		t.Fatalf("max_entries with the default max_size_mb: %v, want an error naming store.otter.max_entries", err)
	}
	if _, err := fxmodule.LoadYAML(strings.NewReader("namespace: ns\nstore:\n  otter:\n    size: 1\n")); err == nil ||
		!strings.Contains(err.Error(), `"size"`) || !strings.Contains(err.Error(), "max_entries") {
		t.Fatalf("unknown otter key: %v, want it named with the valid ones", err)
	}
}

func TestLoadYAMLFile(t *testing.T) {
	path := writeFile(t, "backplane.yaml", "namespace: file-ns\ntransport_url: mem://\nttl: 1m\n")
	c, err := fxmodule.LoadYAMLFile(path)
	if err != nil || c.Namespace != "file-ns" || c.TTL != time.Minute {
		t.Fatalf("LoadYAMLFile = %+v, %v", c, err)
	}
	if _, err := fxmodule.LoadYAMLFile(path + ".missing"); err == nil {
		t.Fatal("missing file: no error")
	}
	bad := writeFile(t, "bad.yaml", "namespace: x\nttl: soon\n")
	if _, err := fxmodule.LoadYAMLFile(bad); err == nil || !strings.Contains(err.Error(), "bad.yaml") || !strings.Contains(err.Error(), "ttl") {
		t.Fatalf("bad file: %v, want the file and field named", err)
	}
}

// The package documentation's table lists every Config field, as README
// promises.
func TestConfigFieldsDocumented(t *testing.T) {
	doc, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range fxmodule.ConfigFieldPaths() {
		if !strings.Contains(string(doc), "//\t"+p+" ") && !strings.Contains(string(doc), "//\t"+p+".") {
			t.Errorf("Config field %s is not in the table of doc.go", p)
		}
	}
}
