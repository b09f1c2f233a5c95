package pgtransport

import (
	"encoding/base64"
	"log/slog"
	"time"

	"github.com/backplane-go/backplane/internal/transportopt"
)

// Defaults and limits.
const (
	// NotifyPayloadLimit is the length a NOTIFY payload must stay below in
	// PostgreSQL's default build (BLCKSZ 8192): at most 7999 bytes of text.
	NotifyPayloadLimit = 8000
	// MaxPayload is the largest payload the transport can carry, and the
	// default of Options.MaxPayload: the most bytes whose base64 text
	// stays below NotifyPayloadLimit (5997 bytes, 7996 characters).
	MaxPayload = (NotifyPayloadLimit - 1) / 4 * 3
	// DefaultChannelPrefix starts every channel name.
	DefaultChannelPrefix = "backplane:"
	// DefaultPingInterval is how long the listener connection may stay
	// silent before the transport pings the server on it.
	DefaultPingInterval = 3 * time.Second
	// DefaultPingTimeout is how long the transport waits for the reply to
	// that ping before it declares the connection dead and replaces it.
	DefaultPingTimeout = 5 * time.Second
	// DefaultReconnectBackoff and DefaultMaxReconnectBackoff bound the wait
	// between attempts to reach the server again after the listener
	// connection failed; the wait doubles up to the maximum.
	DefaultReconnectBackoff    = 50 * time.Millisecond
	DefaultMaxReconnectBackoff = 2 * time.Second
	// DefaultConcurrentPublish is how many Publish calls of one instance
	// the engine may run at once: one, which keeps an instance's messages
	// in order.
	DefaultConcurrentPublish = 1
	// DefaultPendingMessages is how many received notifications may wait
	// for the handler before the transport drops them (core.EventLoss)
	// rather than stop reading the listener connection, which would hold
	// back PostgreSQL's notification queue for every listener.
	DefaultPendingMessages = 16384
)

// encodedLen is the length of the NOTIFY payload text of n bytes.
func encodedLen(n int) int { return base64.StdEncoding.EncodedLen(n) }

// Options configure a Transport. The zero value of every field means its
// default; DefaultOptions returns them filled in.
type Options struct {
	// MaxPayload is the largest payload in bytes that Publish accepts.
	// Default and maximum MaxPayload.
	MaxPayload int
	// ChannelPrefix starts the channel name; the namespace follows (see
	// ChannelName). Default DefaultChannelPrefix.
	ChannelPrefix string
	// Logger receives the transport's diagnostics. Default: discard.
	Logger *slog.Logger
	// PingInterval is how long the listener connection may stay silent
	// before the transport pings the server on it; a negative value
	// disables the ping (TCP keepalive remains). Default
	// DefaultPingInterval.
	PingInterval time.Duration
	// PingTimeout is how long a ping may take before the connection is
	// replaced. Default DefaultPingTimeout.
	PingTimeout time.Duration
	// ReconnectBackoff and MaxReconnectBackoff bound the wait between
	// reconnect attempts of the listener connection.
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// ConcurrentPublish is how many Publish calls of one instance the
	// engine may run at once (core.Limits.ConcurrentPublish), each on a
	// connection of the pool. Their NOTIFYs then commit in either order,
	// and receivers wait up to core.Options.ReorderWindow for an overtaken
	// message; give every instance of a namespace the same setting.
	// Default DefaultConcurrentPublish.
	ConcurrentPublish int
	// PendingMessages is how many received notifications may wait for the
	// handler; past it the transport drops notifications and reports
	// core.EventLoss. Default DefaultPendingMessages.
	PendingMessages int
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	return Options{
		MaxPayload:          MaxPayload,
		ChannelPrefix:       DefaultChannelPrefix,
		Logger:              slog.New(slog.DiscardHandler),
		PingInterval:        DefaultPingInterval,
		PingTimeout:         DefaultPingTimeout,
		ReconnectBackoff:    DefaultReconnectBackoff,
		MaxReconnectBackoff: DefaultMaxReconnectBackoff,
		ConcurrentPublish:   DefaultConcurrentPublish,
		PendingMessages:     DefaultPendingMessages,
	}
}

// withDefaults fills zero fields with defaults and validates the result.
func (o Options) withDefaults() (Options, error) {
	d := DefaultOptions()
	transportopt.Fill(&o.MaxPayload, d.MaxPayload)
	transportopt.Fill(&o.ChannelPrefix, d.ChannelPrefix)
	transportopt.Fill(&o.Logger, d.Logger)
	transportopt.Fill(&o.PingInterval, d.PingInterval)
	transportopt.Fill(&o.PingTimeout, d.PingTimeout)
	transportopt.Fill(&o.ReconnectBackoff, d.ReconnectBackoff)
	transportopt.Fill(&o.MaxReconnectBackoff, d.MaxReconnectBackoff)
	transportopt.Fill(&o.ConcurrentPublish, d.ConcurrentPublish)
	transportopt.Fill(&o.PendingMessages, d.PendingMessages)
	switch {
	case o.MaxPayload < 0 || o.MaxPayload > MaxPayload:
		return o, invalid("MaxPayload %d is outside 1..%d (NOTIFY's payload stays below %d bytes of base64 text)",
			o.MaxPayload, MaxPayload, NotifyPayloadLimit)
	case o.PingInterval > 0 && o.PingTimeout < 0:
		return o, invalid("negative PingTimeout %v", o.PingTimeout)
	case o.ConcurrentPublish < 0:
		return o, invalid("negative ConcurrentPublish %d", o.ConcurrentPublish)
	case o.PendingMessages < 0:
		return o, invalid("negative PendingMessages %d", o.PendingMessages)
	case o.ReconnectBackoff < 0 || o.MaxReconnectBackoff < o.ReconnectBackoff:
		return o, invalid("reconnect backoff %v..%v is not a valid range", o.ReconnectBackoff, o.MaxReconnectBackoff)
	}
	return o, nil
}

func invalid(format string, args ...any) error {
	return transportopt.Invalid("pgtransport", format, args...)
}

// Option changes Options.
type Option func(*Options)

// WithOptions replaces all options with o (zero fields still mean their
// defaults); later Options apply on top.
func WithOptions(o Options) Option { return func(dst *Options) { *dst = o } }

// WithMaxPayload sets the largest payload Publish accepts (at most
// MaxPayload).
func WithMaxPayload(n int) Option { return func(o *Options) { o.MaxPayload = n } }

// WithChannelPrefix sets the prefix of the channel name.
func WithChannelPrefix(p string) Option { return func(o *Options) { o.ChannelPrefix = p } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithPing sets how long the listener connection may stay silent before a
// ping (interval; negative disables it) and how long the ping may take
// (timeout).
func WithPing(interval, timeout time.Duration) Option {
	return func(o *Options) {
		o.PingInterval = interval
		o.PingTimeout = timeout
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

// WithPendingMessages sets how many received notifications may wait for
// the handler before the transport drops them (core.EventLoss).
func WithPendingMessages(n int) Option { return func(o *Options) { o.PendingMessages = n } }
