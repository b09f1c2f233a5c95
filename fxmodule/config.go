package fxmodule

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/allegro/bigcache/v3"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/stores/otterstore"
	"github.com/backplane-go/backplane/transports"
)

// Config chooses and configures a Cache's transport, store and engine. It
// suits configuration files (yaml and json tags) and the environment
// (LoadEnv). Start from DefaultConfig, which LoadEnv and LoadYAML do: like
// core.Options, the zero value is not valid.
//
// Each field's documentation names its YAML key, its environment variable
// (with the default prefix BACKPLANE_) and its default. The json tags use
// the same names; encoding/json writes durations as integer nanoseconds.
type Config struct {
	// Namespace separates applications on one broker: instances share
	// invalidations only within a namespace. Required, unless the
	// transport URL carries a namespace parameter, which overrides it.
	// YAML namespace, env BACKPLANE_NAMESPACE.
	Namespace string `yaml:"namespace" json:"namespace"`
	// TransportURL picks the transport by scheme: mem://[name] (one
	// process only), redis://, rediss://, nats://, tls://, sb:// or another
	// registered scheme (see the package documentation for each scheme's
	// parameters, and the package to import for it). Required: nothing
	// picks a transport that the configuration does not name.
	// YAML transport_url, env BACKPLANE_TRANSPORT_URL. No default.
	TransportURL string `yaml:"transport_url" json:"transport_url"`
	// TransitionURL, when set, is a second transport that the instance
	// publishes on and reads beside TransportURL (transports.Dual), for
	// moving a fleet from one transport or mode to another by rolling
	// deploys: deploy every instance with transport_url set to the new URL
	// and transition_url to the old one, then deploy them with
	// transport_url alone. While it is set the instance is never Durable
	// (see transports.Dual). YAML transition_url, env
	// BACKPLANE_TRANSITION_URL. Default: none.
	TransitionURL string `yaml:"transition_url" json:"transition_url"`
	// Store picks and sizes the local store. YAML store.
	Store StoreConfig `yaml:"store" json:"store"`

	// TTL is the lifetime of a cached entry (core.Options.TTL); 0 means
	// no expiry. YAML ttl, env BACKPLANE_TTL. Default 10m.
	TTL time.Duration `yaml:"ttl" json:"ttl"`
	// TTLJitter spreads expiries by up to this fraction of TTL, in [0, 1)
	// (core.Options.TTLJitter). YAML ttl_jitter, env BACKPLANE_TTL_JITTER.
	// Default 0.1.
	TTLJitter float64 `yaml:"ttl_jitter" json:"ttl_jitter"`

	// OnDisconnect is what happens to the local store when the link goes
	// down or silent: "flush" (stop caching until it is back) or "keep"
	// (core.Options.OnDisconnect). YAML on_disconnect, env
	// BACKPLANE_ON_DISCONNECT. Default "flush".
	OnDisconnect string `yaml:"on_disconnect" json:"on_disconnect"`
	// OnReconnect is what happens when the link is back and messages may
	// have been lost: "flush" or "keep" (core.Options.OnReconnect). YAML
	// on_reconnect, env BACKPLANE_ON_RECONNECT. Default "flush".
	OnReconnect string `yaml:"on_reconnect" json:"on_reconnect"`
	// OnGap is what happens when a peer's sequence numbers show lost
	// messages: "flush" or "keep" (core.Options.OnGap). YAML on_gap, env
	// BACKPLANE_ON_GAP. Default "flush".
	OnGap string `yaml:"on_gap" json:"on_gap"`

	// HeartbeatInterval is how often the instance publishes a heartbeat;
	// 0 disables heartbeats and silence detection
	// (core.Options.HeartbeatInterval). YAML heartbeat_interval, env
	// BACKPLANE_HEARTBEAT_INTERVAL. Default 1s.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" json:"heartbeat_interval"`
	// HeartbeatTimeout is how long the link may stay silent before it
	// counts as down; 0 means 3 * HeartbeatInterval
	// (core.Options.HeartbeatTimeout). YAML heartbeat_timeout, env
	// BACKPLANE_HEARTBEAT_TIMEOUT. Default 0.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout" json:"heartbeat_timeout"`

	// MaxKeysPerCall bounds the keys of one Invalidate call
	// (core.Options.MaxKeysPerCall). YAML max_keys_per_call, env
	// BACKPLANE_MAX_KEYS_PER_CALL. Default 10000.
	MaxKeysPerCall int `yaml:"max_keys_per_call" json:"max_keys_per_call"`
	// MaxBatchKeys bounds the keys coalesced into one publish round
	// (core.Options.MaxBatchKeys). YAML max_batch_keys, env
	// BACKPLANE_MAX_BATCH_KEYS. Default 16384.
	MaxBatchKeys int `yaml:"max_batch_keys" json:"max_batch_keys"`
	// MaxPayload caps the bytes of one published message below the
	// transport's limit; 0 means the transport's limit
	// (core.Options.MaxPayload). YAML max_payload, env
	// BACKPLANE_MAX_PAYLOAD. Default 0.
	MaxPayload int `yaml:"max_payload" json:"max_payload"`
	// QueueSize bounds the Invalidate and Clear calls waiting to be
	// published (core.Options.QueueSize). YAML queue_size, env
	// BACKPLANE_QUEUE_SIZE. Default 1024.
	QueueSize int `yaml:"queue_size" json:"queue_size"`
	// PublishTimeout bounds one publish round trip
	// (core.Options.PublishTimeout). YAML publish_timeout, env
	// BACKPLANE_PUBLISH_TIMEOUT. Default 5s.
	PublishTimeout time.Duration `yaml:"publish_timeout" json:"publish_timeout"`
	// AckTimeout bounds how long an acknowledged call
	// (core.Cache.InvalidateAcked) waits for the peers' confirmations
	// (core.Options.AckTimeout). YAML ack_timeout, env
	// BACKPLANE_ACK_TIMEOUT. Default 0: HeartbeatTimeout.
	AckTimeout time.Duration `yaml:"ack_timeout" json:"ack_timeout"`
	// ReorderWindow is how long a message overtaken by a later one of the
	// same instance may take to arrive before it counts as lost, over a
	// transport that publishes on several connections at once, such as
	// Redis (core.Options.ReorderWindow). YAML reorder_window, env
	// BACKPLANE_REORDER_WINDOW. Default 250ms.
	ReorderWindow time.Duration `yaml:"reorder_window" json:"reorder_window"`
	// MaxPeers bounds the peers whose sequence numbers an instance tracks
	// (core.Options.MaxPeers); set it above the number of instances of a
	// namespace. YAML max_peers, env BACKPLANE_MAX_PEERS. Default 1024.
	MaxPeers int `yaml:"max_peers" json:"max_peers"`
	// MaxMissing bounds the sequence numbers an instance waits for at once
	// over all peers (core.Options.MaxMissing). YAML max_missing, env
	// BACKPLANE_MAX_MISSING. Default 4096.
	MaxMissing int `yaml:"max_missing" json:"max_missing"`
	// MaxTagsPerEntry bounds the tags one cached entry carries, 1 to 255
	// (core.Options.MaxTagsPerEntry). YAML max_tags_per_entry, env
	// BACKPLANE_MAX_TAGS_PER_ENTRY. Default 8.
	MaxTagsPerEntry int `yaml:"max_tags_per_entry" json:"max_tags_per_entry"`

	// CanaryInterval, when positive, makes the instance invalidate a
	// synthetic key this often and report, in its health check, when its
	// own canary or a live peer's is overdue (core.Options.CanaryInterval).
	// YAML canary_interval, env BACKPLANE_CANARY_INTERVAL. Default 0 (off).
	CanaryInterval time.Duration `yaml:"canary_interval" json:"canary_interval"`
	// CanaryTimeout is how overdue a canary may be; 0 means the engine's
	// default (core.Options.CanaryTimeout). YAML canary_timeout, env
	// BACKPLANE_CANARY_TIMEOUT. Default 0.
	CanaryTimeout time.Duration `yaml:"canary_timeout" json:"canary_timeout"`
	// ReplayWindow, when messages are signed (a *core.Keyring in the fx
	// graph), rejects signed messages published more than this long away
	// from the receiver's clock (core.Options.ReplayWindow). YAML
	// replay_window, env BACKPLANE_REPLAY_WINDOW. Default 2m.
	ReplayWindow time.Duration `yaml:"replay_window" json:"replay_window"`
	// AcceptUnsigned keeps accepting unsigned messages while signing is on,
	// for turning signing on in a running fleet one instance at a time
	// (core.Options.AcceptUnsigned). YAML accept_unsigned, env
	// BACKPLANE_ACCEPT_UNSIGNED. Default false.
	AcceptUnsigned bool `yaml:"accept_unsigned" json:"accept_unsigned"`

	// StartTimeout bounds the start of the Cache (dial, subscribe, wait
	// until delivery is active) on top of the fx start context. YAML
	// start_timeout, env BACKPLANE_START_TIMEOUT. Default 10s.
	StartTimeout time.Duration `yaml:"start_timeout" json:"start_timeout"`
	// CloseTimeout bounds how long Close drains pending publishes when no
	// context bounds it (core.Options.CloseTimeout); the fx stop context
	// bounds it too. YAML close_timeout, env BACKPLANE_CLOSE_TIMEOUT.
	// Default 5s.
	CloseTimeout time.Duration `yaml:"close_timeout" json:"close_timeout"`
}

// StoreConfig picks and configures the local store.
type StoreConfig struct {
	// Name is the registered store: "bigcache", "otter" or one added with
	// RegisterStore. YAML store.name, env BACKPLANE_STORE_NAME. Default
	// "bigcache".
	Name string `yaml:"name" json:"name"`
	// BigCache sizes the "bigcache" store. YAML store.bigcache.
	BigCache BigCacheConfig `yaml:"bigcache" json:"bigcache"`
	// Otter sizes the "otter" store. YAML store.otter.
	Otter OtterConfig `yaml:"otter" json:"otter"`
	// Params configures other stores: free-form settings their opener
	// reads. YAML store.params.<key>, env BACKPLANE_STORE_PARAMS_<KEY>
	// (the key lower-cased). Default empty.
	Params map[string]string `yaml:"params" json:"params"`
}

// BigCacheConfig sizes the bigcache store (see bigcache.Config and
// bigcachestore.DefaultConfig).
type BigCacheConfig struct {
	// Shards is the number of shards, a power of two. YAML
	// store.bigcache.shards, env BACKPLANE_STORE_BIGCACHE_SHARDS. Default
	// 256.
	Shards int `yaml:"shards" json:"shards"`
	// MaxSizeMB bounds the memory of the cache in MiB (bigcache's
	// HardMaxCacheSize); 0 means no bound. It also bounds the largest value
	// (about MaxSizeMB/Shards). YAML store.bigcache.max_size_mb, env
	// BACKPLANE_STORE_BIGCACHE_MAX_SIZE_MB. Default 256.
	MaxSizeMB int `yaml:"max_size_mb" json:"max_size_mb"`
	// LifeWindow is when bigcache itself evicts an entry; keep it at least
	// as long as TTL*(1+TTLJitter), the engine expires entries by TTL. YAML
	// store.bigcache.life_window, env BACKPLANE_STORE_BIGCACHE_LIFE_WINDOW.
	// Default 10m.
	LifeWindow time.Duration `yaml:"life_window" json:"life_window"`
	// CleanWindow is how often expired entries are removed; 0 disables
	// the cleanup goroutine. YAML store.bigcache.clean_window, env
	// BACKPLANE_STORE_BIGCACHE_CLEAN_WINDOW. Default 1m.
	CleanWindow time.Duration `yaml:"clean_window" json:"clean_window"`
	// MaxEntriesInWindow and MaxEntrySize size the initial allocation
	// (entries expected within LifeWindow, and their average size in
	// bytes). YAML store.bigcache.max_entries_in_window and
	// store.bigcache.max_entry_size, env
	// BACKPLANE_STORE_BIGCACHE_MAX_ENTRIES_IN_WINDOW and
	// BACKPLANE_STORE_BIGCACHE_MAX_ENTRY_SIZE. Defaults 10000 and 512.
	MaxEntriesInWindow int `yaml:"max_entries_in_window" json:"max_entries_in_window"`
	MaxEntrySize       int `yaml:"max_entry_size" json:"max_entry_size"`
}

// OtterConfig sizes the otter store (see otterstore.Config and
// otterstore.DefaultConfig).
type OtterConfig struct {
	// MaxSizeMB bounds the cache in MiB, counting each entry's key, value
	// and otterstore.EntryOverhead; 0 bounds it by MaxEntries instead. YAML
	// store.otter.max_size_mb, env BACKPLANE_STORE_OTTER_MAX_SIZE_MB.
	// Default 256.
	MaxSizeMB int `yaml:"max_size_mb" json:"max_size_mb"`
	// MaxEntries bounds the number of entries; only with MaxSizeMB 0 (both
	// 0: no bound). YAML store.otter.max_entries, env
	// BACKPLANE_STORE_OTTER_MAX_ENTRIES. Default 0.
	MaxEntries int `yaml:"max_entries" json:"max_entries"`
	// MaxValueLen is the largest value in bytes the store accepts; 0 means
	// as large as fits MaxSizeMB. YAML store.otter.max_value_len, env
	// BACKPLANE_STORE_OTTER_MAX_VALUE_LEN. Default 1048576 (1 MiB).
	MaxValueLen int `yaml:"max_value_len" json:"max_value_len"`
	// InitialCapacity is the number of entries the store is sized for at
	// the start; 0 lets otter choose. YAML store.otter.initial_capacity, env
	// BACKPLANE_STORE_OTTER_INITIAL_CAPACITY. Default 0.
	InitialCapacity int `yaml:"initial_capacity" json:"initial_capacity"`
	// Expire makes the store itself expire entries by the engine's TTL, so
	// that expired entries free their room early; the engine checks TTL on
	// every read either way. YAML store.otter.expire, env
	// BACKPLANE_STORE_OTTER_EXPIRE. Default true.
	Expire bool `yaml:"expire" json:"expire"`
	// ClockResolution is how often the store's expiry clock is updated; 0
	// reads the precise time on every read (slower). YAML
	// store.otter.clock_resolution, env
	// BACKPLANE_STORE_OTTER_CLOCK_RESOLUTION. Default 1s.
	ClockResolution time.Duration `yaml:"clock_resolution" json:"clock_resolution"`
}

// Default values of Config fields that core.DefaultOptions does not set.
const (
	DefaultStore        = "bigcache"
	DefaultStartTimeout = 10 * time.Second
)

// DefaultConfig returns the defaults documented on each field. Namespace
// and TransportURL are empty: set them.
func DefaultConfig() Config {
	o := core.DefaultOptions()
	bc := bigcachestore.DefaultConfig()
	oc := otterstore.DefaultConfig()
	return Config{
		Store: StoreConfig{
			Name: DefaultStore,
			BigCache: BigCacheConfig{
				Shards:             bc.Shards,
				MaxSizeMB:          bc.HardMaxCacheSize,
				LifeWindow:         bc.LifeWindow,
				CleanWindow:        bc.CleanWindow,
				MaxEntriesInWindow: bc.MaxEntriesInWindow,
				MaxEntrySize:       bc.MaxEntrySize,
			},
			Otter: OtterConfig{
				MaxSizeMB:       oc.MaxBytes >> 20,
				MaxEntries:      oc.MaxEntries,
				MaxValueLen:     oc.MaxValueLen,
				InitialCapacity: oc.InitialCapacity,
				Expire:          oc.TTL,
				ClockResolution: oc.ClockResolution,
			},
		},
		TTL:               o.TTL,
		TTLJitter:         o.TTLJitter,
		OnDisconnect:      o.OnDisconnect.String(),
		OnReconnect:       o.OnReconnect.String(),
		OnGap:             o.OnGap.String(),
		HeartbeatInterval: o.HeartbeatInterval,
		HeartbeatTimeout:  o.HeartbeatTimeout,
		MaxKeysPerCall:    o.MaxKeysPerCall,
		MaxBatchKeys:      o.MaxBatchKeys,
		MaxPayload:        o.MaxPayload,
		QueueSize:         o.QueueSize,
		PublishTimeout:    o.PublishTimeout,
		AckTimeout:        o.AckTimeout,
		ReorderWindow:     o.ReorderWindow,
		MaxPeers:          o.MaxPeers,
		MaxMissing:        o.MaxMissing,
		MaxTagsPerEntry:   o.MaxTagsPerEntry,
		CanaryInterval:    o.CanaryInterval,
		CanaryTimeout:     o.CanaryTimeout,
		ReplayWindow:      o.ReplayWindow,
		AcceptUnsigned:    o.AcceptUnsigned,
		StartTimeout:      DefaultStartTimeout,
		CloseTimeout:      o.CloseTimeout,
	}
}

// ParsePolicy parses "flush" or "keep".
func ParsePolicy(s string) (core.Policy, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "flush":
		return core.PolicyFlush, nil
	case "keep":
		return core.PolicyKeep, nil
	}
	return 0, fmt.Errorf("policy %q is not flush or keep", s)
}

// Validate reports every invalid field at once, naming each by its YAML
// key, its environment variable and its Config field. Errors wrap
// core.ErrInvalidOption. It does no I/O: an unknown transport scheme or
// query parameter is reported when the Module opens the transport.
// LoadEnv and LoadYAML validate too, naming the variable or the file the
// setting was read from.
func (c Config) Validate() error { return c.validate(codeLabel) }

// labeler names a setting, by its YAML path, in an error message.
type labeler func(path string) string

// codeLabel names a setting of a Config built in code.
func codeLabel(path string) string {
	return fmt.Sprintf("%s (Config.%s, YAML %s, env %s)", path, goName(path), path, envName(DefaultEnvPrefix, path))
}

// pathLabel names a setting by its YAML path alone.
func pathLabel(path string) string { return path }

// envLabel names a setting read from the environment.
func envLabel(prefix string) labeler {
	return func(path string) string { return envName(prefix, path) }
}

// yamlLabel names a setting read from a YAML document.
func yamlLabel(file string) labeler {
	return func(path string) string {
		if file == "" {
			return "yaml " + path
		}
		return path + " in " + file
	}
}

func (c Config) validate(label labeler) error {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{core.ErrInvalidOption, label(path)}, args...)...))
	}
	if c.TransportURL == "" {
		bad("transport_url", "not set; name the transport every instance shares, like nats://127.0.0.1:4222 or redis://127.0.0.1:6379 (mem:// only reaches instances in the same process)")
	} else if u, err := transports.ParseURL(c.TransportURL); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", label("transport_url"), err))
	} else if c.Namespace == "" && !u.Query().Has("namespace") {
		bad("namespace", "not set; name the application's namespace (instances share invalidations within it), or add ?namespace=NAME to the transport URL")
	}
	if c.TransitionURL != "" {
		if _, err := transports.ParseURL(c.TransitionURL); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", label("transition_url"), err))
		} else if c.TransitionURL == c.TransportURL {
			bad("transition_url", "the same URL as transport_url; set it to the transport the fleet moves from (or to), or leave it empty")
		}
	}
	if c.Store.Name == "" {
		bad("store.name", "empty (registered: %s)", strings.Join(Stores(), ", "))
	}
	for _, f := range []struct{ path, v string }{{"on_disconnect", c.OnDisconnect}, {"on_reconnect", c.OnReconnect}, {"on_gap", c.OnGap}} {
		if _, err := ParsePolicy(f.v); err != nil {
			bad(f.path, "%v", err)
		}
	}
	if c.StartTimeout <= 0 {
		bad("start_timeout", "%v must be positive", c.StartTimeout)
	}
	if c.ReplayWindow <= 0 {
		bad("replay_window", "%v must be positive", c.ReplayWindow)
	}
	if strings.EqualFold(c.Store.Name, "bigcache") {
		errs = append(errs, c.Store.BigCache.validate(label)...)
	}
	if strings.EqualFold(c.Store.Name, "otter") {
		errs = append(errs, c.Store.Otter.validate(label)...)
	}
	o := c.CoreOptions()
	for _, err := range splitJoined(o.Validate()) {
		errs = append(errs, relabel(err, label))
	}
	return errors.Join(errs...)
}

// splitJoined returns the errors an errors.Join holds, or err alone.
func splitJoined(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// relabel names the setting of an error of core.Options.Validate, whose
// message starts with the name of the option (a Config field of the same
// name).
func relabel(err error, label labeler) error {
	msg := strings.TrimPrefix(err.Error(), core.ErrInvalidOption.Error()+": ")
	name, _, _ := strings.Cut(msg, " ")
	for _, f := range configFields() {
		if f.goName == name {
			return fmt.Errorf("%w: %s: %s", core.ErrInvalidOption, label(f.path), msg)
		}
	}
	return err
}

func (b BigCacheConfig) validate(label labeler) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{core.ErrInvalidOption, label("store.bigcache." + field)}, args...)...))
	}
	if b.Shards <= 0 || b.Shards&(b.Shards-1) != 0 {
		bad("shards", "%d is not a positive power of two", b.Shards)
	}
	if b.MaxSizeMB < 0 {
		bad("max_size_mb", "%d is negative", b.MaxSizeMB)
	}
	if b.LifeWindow <= 0 {
		bad("life_window", "%v must be positive", b.LifeWindow)
	}
	if b.CleanWindow < 0 {
		bad("clean_window", "%v is negative", b.CleanWindow)
	}
	if b.MaxEntriesInWindow <= 0 {
		bad("max_entries_in_window", "%d must be positive", b.MaxEntriesInWindow)
	}
	if b.MaxEntrySize <= 0 {
		bad("max_entry_size", "%d must be positive", b.MaxEntrySize)
	}
	return errs
}

func (o OtterConfig) validate(label labeler) []error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s: "+format, append([]any{core.ErrInvalidOption, label("store.otter." + field)}, args...)...))
	}
	if o.MaxSizeMB < 0 {
		bad("max_size_mb", "%d is negative", o.MaxSizeMB)
	} else if o.MaxSizeMB > math.MaxInt>>20 {
		bad("max_size_mb", "%d is too large", o.MaxSizeMB)
	}
	if o.MaxEntries < 0 {
		bad("max_entries", "%d is negative", o.MaxEntries)
	} else if o.MaxEntries > 0 && o.MaxSizeMB > 0 {
		bad("max_entries", "%d set together with max_size_mb %d (set max_size_mb to 0 to bound by entries)", o.MaxEntries, o.MaxSizeMB)
	}
	if o.MaxValueLen < 0 {
		bad("max_value_len", "%d is negative", o.MaxValueLen)
	}
	if o.InitialCapacity < 0 {
		bad("initial_capacity", "%d is negative", o.InitialCapacity)
	}
	if o.ClockResolution < 0 {
		bad("clock_resolution", "%v is negative", o.ClockResolution)
	}
	if len(errs) == 0 && o.MaxSizeMB > 0 && o.MaxValueLen > 0 {
		if err := o.Otter().Validate(); err != nil {
			bad("max_value_len", "%d bytes does not fit max_size_mb %d", o.MaxValueLen, o.MaxSizeMB)
		}
	}
	return errs
}

// Otter returns the configuration of the "otter" store:
// otterstore.DefaultConfig with the fields of o applied.
func (o OtterConfig) Otter() otterstore.Config {
	cfg := otterstore.DefaultConfig()
	cfg.MaxBytes = o.MaxSizeMB << 20
	cfg.MaxEntries = o.MaxEntries
	cfg.MaxValueLen = o.MaxValueLen
	cfg.InitialCapacity = o.InitialCapacity
	cfg.TTL = o.Expire
	cfg.ClockResolution = o.ClockResolution
	return cfg
}

// CoreOptions returns the engine options: core.DefaultOptions with every
// engine field of c applied. An unparsable policy keeps its default
// (Validate reports it).
func (c Config) CoreOptions() core.Options {
	o := core.DefaultOptions()
	o.TTL, o.TTLJitter = c.TTL, c.TTLJitter
	o.HeartbeatInterval, o.HeartbeatTimeout = c.HeartbeatInterval, c.HeartbeatTimeout
	if p, err := ParsePolicy(c.OnDisconnect); err == nil {
		o.OnDisconnect = p
	}
	if p, err := ParsePolicy(c.OnReconnect); err == nil {
		o.OnReconnect = p
	}
	if p, err := ParsePolicy(c.OnGap); err == nil {
		o.OnGap = p
	}
	o.MaxKeysPerCall, o.MaxBatchKeys = c.MaxKeysPerCall, c.MaxBatchKeys
	o.MaxPayload, o.QueueSize = c.MaxPayload, c.QueueSize
	o.PublishTimeout, o.CloseTimeout = c.PublishTimeout, c.CloseTimeout
	o.AckTimeout = c.AckTimeout
	o.ReorderWindow = c.ReorderWindow
	o.MaxPeers, o.MaxMissing = c.MaxPeers, c.MaxMissing
	o.MaxTagsPerEntry = c.MaxTagsPerEntry
	o.CanaryInterval, o.CanaryTimeout = c.CanaryInterval, c.CanaryTimeout
	o.ReplayWindow, o.AcceptUnsigned = c.ReplayWindow, c.AcceptUnsigned
	return o
}

// BigCache returns the bigcache configuration of the "bigcache" store:
// bigcachestore.DefaultConfig with the fields of b applied.
func (b BigCacheConfig) BigCache() bigcache.Config {
	cfg := bigcachestore.DefaultConfig()
	cfg.Shards = b.Shards
	cfg.HardMaxCacheSize = b.MaxSizeMB
	cfg.LifeWindow = b.LifeWindow
	cfg.CleanWindow = b.CleanWindow
	cfg.MaxEntriesInWindow = b.MaxEntriesInWindow
	cfg.MaxEntrySize = b.MaxEntrySize
	return cfg
}

// RedactedTransportURL returns TransportURL with its credentials (a
// password, a NATS token in the user part or the token parameter) replaced
// by "xxxxx", for logs and error messages.
func (c Config) RedactedTransportURL() string {
	return transports.RedactRaw(c.TransportURL)
}

func init() {
	RegisterStore("bigcache", func(_ context.Context, cfg StoreConfig) (core.LocalStore, error) {
		if len(cfg.Params) > 0 {
			return nil, fmt.Errorf("%w: bigcache takes store.bigcache settings, not store.params", ErrUnknownParameter)
		}
		if err := errors.Join(cfg.BigCache.validate(pathLabel)...); err != nil {
			return nil, err
		}
		return bigcachestore.New(cfg.BigCache.BigCache())
	})
	RegisterStore("otter", func(_ context.Context, cfg StoreConfig) (core.LocalStore, error) {
		if len(cfg.Params) > 0 {
			return nil, fmt.Errorf("%w: otter takes store.otter settings, not store.params", ErrUnknownParameter)
		}
		if err := errors.Join(cfg.Otter.validate(pathLabel)...); err != nil {
			return nil, err
		}
		return otterstore.New(cfg.Otter.Otter())
	})
}
