package redistransport

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/internal/transportopt"
)

// PubSubMode chooses between classic and sharded Redis pub/sub.
type PubSubMode int

const (
	// PubSubAuto uses sharded pub/sub (SPUBLISH/SSUBSCRIBE) with a
	// *redis.ClusterClient and classic pub/sub with every other client.
	PubSubAuto PubSubMode = iota
	// PubSubClassic uses PUBLISH/SUBSCRIBE. On a cluster every message is
	// broadcast over the cluster bus to every node.
	PubSubClassic
	// PubSubSharded uses SPUBLISH/SSUBSCRIBE (Redis 7 or later). On a
	// cluster the messages stay on the shard that owns the channel's slot.
	PubSubSharded
)

// String returns the mode's name.
func (m PubSubMode) String() string {
	switch m {
	case PubSubAuto:
		return "auto"
	case PubSubClassic:
		return "classic"
	case PubSubSharded:
		return "sharded"
	default:
		return fmt.Sprintf("PubSubMode(%d)", int(m))
	}
}

// Defaults.
const (
	// DefaultMaxPayload is the default largest payload of one message. Redis
	// itself accepts up to 512 MB; a cache invalidation never needs that
	// much, and large messages stall every subscriber's connection.
	DefaultMaxPayload = 1 << 20
	// DefaultChannelPrefix starts every channel name.
	DefaultChannelPrefix = "backplane:"
	// DefaultHealthCheckInterval is how long the subscriber connection may
	// stay silent before the transport sends a PING on it.
	DefaultHealthCheckInterval = 3 * time.Second
	// DefaultHealthCheckTimeout is how long the transport waits for any
	// reply after that PING before it declares the connection dead and
	// replaces it.
	DefaultHealthCheckTimeout = 5 * time.Second
	// DefaultReconnectBackoff and DefaultMaxReconnectBackoff bound the wait
	// between attempts to reach Redis again after the subscriber
	// connection failed; the wait doubles up to the maximum.
	DefaultReconnectBackoff    = 50 * time.Millisecond
	DefaultMaxReconnectBackoff = 2 * time.Second
	// DefaultConcurrentPublish is how many Publish calls of one instance
	// the engine may run at once, each on a connection of the client's
	// pool: one, since more measured no faster (BENCHMARKS.md), and one
	// keeps an instance's messages in order.
	DefaultConcurrentPublish = 1

	// maxRedisBulk is Redis's default proto-max-bulk-len.
	maxRedisBulk = 512 << 20
)

// Options configure a Transport. The zero value of every field means its
// default; DefaultOptions returns them filled in. Options suit configuration
// files; the Option functions suit code.
type Options struct {
	// Mode chooses classic or sharded pub/sub. Default PubSubAuto.
	Mode PubSubMode
	// MaxPayload is the largest payload in bytes that Publish accepts.
	// Default DefaultMaxPayload; at most 512 MB.
	MaxPayload int
	// ChannelPrefix starts the channel name; the namespace follows in
	// braces (a Redis Cluster hash tag). Default DefaultChannelPrefix.
	ChannelPrefix string
	// TLSConfig, when set, is used by Open for the client it creates
	// (overriding what a rediss:// URL implies, but keeping its server
	// name unless TLSConfig sets one). New ignores it: a given client
	// brings its own TLS settings.
	TLSConfig *tls.Config
	// ClientName is set (CLIENT SETNAME) on every connection of a client
	// that Open creates, so that operators can find them in CLIENT LIST.
	// Default "backplane". New ignores it.
	ClientName string
	// Logger receives the transport's diagnostics. Default: discard.
	Logger *slog.Logger
	// HealthCheckInterval is how long the subscriber connection may stay
	// silent before the transport PINGs it; a negative value disables the
	// check. Default DefaultHealthCheckInterval.
	HealthCheckInterval time.Duration
	// HealthCheckTimeout is how long a PINGed connection may stay silent
	// before it is replaced. Default DefaultHealthCheckTimeout.
	HealthCheckTimeout time.Duration
	// ReconnectBackoff and MaxReconnectBackoff bound the wait between
	// reconnect attempts of the subscriber connection.
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// ConcurrentPublish is how many Publish calls of one instance the
	// engine may run at once (core.Limits.ConcurrentPublish). The client
	// runs them on different connections of its pool, so that an
	// invalidation does not wait for the round trip of the one before it;
	// Redis may then receive them out of order, and receivers wait up to
	// core.Options.ReorderWindow for an overtaken message. 1 publishes one
	// call at a time. Default DefaultConcurrentPublish.
	//
	// A receiver waits for overtaken messages only when its own transport
	// allows more than one call at once: give every instance of a
	// namespace the same setting. An instance with 1 counts every message
	// of a peer that another one overtook as a gap, and flushes.
	//
	// The stream mode ignores it: the engine publishes one call at a
	// time, so that an instance's entries are in the stream in the order
	// it published them.
	ConcurrentPublish int
	// Stream, when Stream.Enabled, carries messages on a Redis stream
	// instead of pub/sub (core.Limits.Durable); Mode is then unused.
	Stream StreamOptions
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	return Options{
		Mode:                PubSubAuto,
		MaxPayload:          DefaultMaxPayload,
		ChannelPrefix:       DefaultChannelPrefix,
		ClientName:          "backplane",
		Logger:              slog.New(slog.DiscardHandler),
		HealthCheckInterval: DefaultHealthCheckInterval,
		HealthCheckTimeout:  DefaultHealthCheckTimeout,
		ReconnectBackoff:    DefaultReconnectBackoff,
		MaxReconnectBackoff: DefaultMaxReconnectBackoff,
		ConcurrentPublish:   DefaultConcurrentPublish,
	}
}

// withDefaults fills zero fields with defaults and validates the result.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	transportopt.Fill(&o.MaxPayload, d.MaxPayload)
	transportopt.Fill(&o.ChannelPrefix, d.ChannelPrefix)
	transportopt.Fill(&o.ClientName, d.ClientName)
	transportopt.Fill(&o.Logger, d.Logger)
	transportopt.Fill(&o.HealthCheckInterval, d.HealthCheckInterval)
	transportopt.Fill(&o.HealthCheckTimeout, d.HealthCheckTimeout)
	transportopt.Fill(&o.ReconnectBackoff, d.ReconnectBackoff)
	transportopt.Fill(&o.MaxReconnectBackoff, d.MaxReconnectBackoff)
	transportopt.Fill(&o.ConcurrentPublish, d.ConcurrentPublish)
	if err := o.Stream.fill(); err != nil {
		return o, err
	}
	switch {
	case o.Mode < PubSubAuto || o.Mode > PubSubSharded:
		return o, invalid("unknown pub/sub mode %v", o.Mode)
	case o.MaxPayload < 0 || o.MaxPayload > maxRedisBulk:
		return o, invalid("MaxPayload %d is outside 1..%d", o.MaxPayload, maxRedisBulk)
	case o.HealthCheckInterval > 0 && o.HealthCheckTimeout < 0:
		return o, invalid("negative HealthCheckTimeout %v", o.HealthCheckTimeout)
	case o.ConcurrentPublish < 0:
		return o, invalid("negative ConcurrentPublish %d", o.ConcurrentPublish)
	case o.ReconnectBackoff < 0 || o.MaxReconnectBackoff < o.ReconnectBackoff:
		return o, invalid("reconnect backoff %v..%v is not a valid range", o.ReconnectBackoff, o.MaxReconnectBackoff)
	}
	return o, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("redistransport: %w: "+format, append([]any{core.ErrInvalidOption}, args...)...)
}

// Option changes Options.
type Option func(*Options)

// WithOptions replaces all options with o (zero fields still mean their
// defaults); later Options apply on top.
func WithOptions(o Options) Option { return func(dst *Options) { *dst = o } }

// WithPubSubMode chooses classic or sharded pub/sub.
func WithPubSubMode(m PubSubMode) Option { return func(o *Options) { o.Mode = m } }

// WithShardedPubSub turns sharded pub/sub (SPUBLISH/SSUBSCRIBE) on or off
// regardless of the client type.
func WithShardedPubSub(on bool) Option {
	return func(o *Options) {
		if on {
			o.Mode = PubSubSharded
		} else {
			o.Mode = PubSubClassic
		}
	}
}

// WithMaxPayload sets the largest payload Publish accepts.
func WithMaxPayload(n int) Option { return func(o *Options) { o.MaxPayload = n } }

// WithChannelPrefix sets the prefix of the channel name.
func WithChannelPrefix(p string) Option { return func(o *Options) { o.ChannelPrefix = p } }

// WithTLSConfig sets the TLS configuration of a client that Open creates.
func WithTLSConfig(c *tls.Config) Option { return func(o *Options) { o.TLSConfig = c } }

// WithClientName sets the connection name of a client that Open creates.
func WithClientName(name string) Option { return func(o *Options) { o.ClientName = name } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithHealthCheck sets how long the subscriber connection may stay silent
// before a PING (interval; negative disables the check) and how long after
// the PING before it is replaced (timeout).
func WithHealthCheck(interval, timeout time.Duration) Option {
	return func(o *Options) {
		o.HealthCheckInterval = interval
		o.HealthCheckTimeout = timeout
	}
}

// WithReconnectBackoff bounds the wait between reconnect attempts.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *Options) {
		o.ReconnectBackoff = min
		o.MaxReconnectBackoff = max
	}
}

// WithConcurrentPublish sets how many Publish calls of one instance the
// engine may run at once; 1 publishes one call at a time.
func WithConcurrentPublish(n int) Option { return func(o *Options) { o.ConcurrentPublish = n } }
