package rabbitmqtransport

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/backplane-go/backplane/internal/transportopt"
)

// Defaults used by DefaultOptions.
const (
	// DefaultExchangePrefix starts the exchange name, which is
	// "<prefix><namespace>".
	DefaultExchangePrefix = "backplane."
	// DefaultMaxPayload is the largest payload Publish accepts by default.
	// RabbitMQ itself accepts up to its max_message_size (128 MiB by
	// default); a cache invalidation never needs that much, and a large
	// message holds up every queue it is routed to.
	DefaultMaxPayload = 1 << 20
	// DefaultHeartbeat is the AMQP heartbeat interval negotiated for a
	// connection made by Open. amqp091-go closes a connection on which
	// nothing arrived for three intervals, so a dead broker (or a
	// half-open TCP connection) is noticed within about 15 seconds.
	DefaultHeartbeat = 5 * time.Second
	// DefaultConnectTimeout bounds the dial and the AMQP handshake of a
	// connection made by Open when the caller's context has no earlier
	// deadline.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultReconnectBackoff and DefaultMaxReconnectBackoff bound the
	// wait between attempts to reach the broker again after the
	// connection or one of its channels closed; the wait doubles up to
	// the maximum.
	DefaultReconnectBackoff    = 50 * time.Millisecond
	DefaultMaxReconnectBackoff = 2 * time.Second
	// DefaultQueueMaxLength is how many messages the broker keeps ready in
	// an instance's queue before it drops the oldest (x-max-length with
	// x-overflow=drop-head).
	DefaultQueueMaxLength = 100_000
	// DefaultQueueMaxBytes is how many bytes of message bodies the broker
	// keeps ready in an instance's queue before it drops the oldest
	// (x-max-length-bytes).
	DefaultQueueMaxBytes = 64 << 20
	// DefaultPrefetch is how many messages the broker sends an instance
	// before the instance acknowledges them (basic.qos): what the client
	// holds in memory beyond the handler call.
	DefaultPrefetch = 256
	// DefaultConcurrentPublish is how many publish rounds of one instance
	// may wait for the broker's confirmation at once.
	DefaultConcurrentPublish = 1

	// maxPayloadLimit is RabbitMQ's largest configurable max_message_size.
	maxPayloadLimit = 512 << 20
)

// Options configure a Transport. The zero value of a field means its
// default; DefaultOptions returns them filled in. Options suit
// configuration files; the Option functions suit code. Fields marked "Open
// only" are ignored by New, whose connection the caller configured.
type Options struct {
	// ExchangePrefix starts the name of the namespace's fanout exchange,
	// "<prefix><namespace>". Default DefaultExchangePrefix.
	ExchangePrefix string
	// QueueName names the instance's queue. Empty (the default) lets the
	// broker name it (amq.gen-...), which never collides. A name must be
	// unique to the instance: the queue is exclusive, and a reconnect
	// that finds the old queue not yet deleted (the broker has not
	// noticed the old connection's end) retries with backoff until it
	// is.
	QueueName string
	// MaxPayload is the largest payload in bytes Publish accepts. Default
	// DefaultMaxPayload; at most 512 MiB. Keep it at or below the broker's
	// max_message_size, which rejects larger messages by closing the
	// channel.
	MaxPayload int
	// QueueMaxLength is how many ready messages the instance's queue may
	// hold (x-max-length); beyond it the broker drops the oldest and the
	// Transport reports EventLoss. Default DefaultQueueMaxLength; negative:
	// no limit by count.
	QueueMaxLength int
	// QueueMaxBytes is how many bytes of ready message bodies the queue
	// may hold (x-max-length-bytes), with the same overflow. Default
	// DefaultQueueMaxBytes; negative: no limit by size.
	QueueMaxBytes int
	// Prefetch is how many unacknowledged messages the broker may have
	// sent the instance (basic.qos). Default DefaultPrefetch.
	Prefetch int
	// ConcurrentPublish is how many publish rounds of one instance may
	// wait for the broker's confirmation at once
	// (core.Limits.ConcurrentPublish). One channel keeps the order of
	// what is published on it, so receivers see an instance's messages in
	// order whatever the setting. Default DefaultConcurrentPublish.
	ConcurrentPublish int
	// Heartbeat is the AMQP heartbeat interval (Open only). Default
	// DefaultHeartbeat; negative: the broker's proposal.
	Heartbeat time.Duration
	// ConnectTimeout bounds a dial and handshake when the context has no
	// earlier deadline (Open only). Default DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// ReconnectBackoff and MaxReconnectBackoff bound the wait between
	// reconnect attempts (defaults DefaultReconnectBackoff and
	// DefaultMaxReconnectBackoff). With New, they pace the reopening of
	// channels on the given connection.
	ReconnectBackoff    time.Duration
	MaxReconnectBackoff time.Duration
	// TLSConfig is used for amqps:// URLs (Open only); nil means the
	// system roots and the URL's host name.
	TLSConfig *tls.Config
	// ConnectionName is advertised to the broker as the connection_name
	// client property, shown by rabbitmqctl list_connections and the
	// management UI (Open only). Default "backplane:<namespace>".
	ConnectionName string
	// Logger receives the transport's diagnostics. Default: discard.
	Logger *slog.Logger
}

// DefaultOptions returns the options with every default filled in
// (ConnectionName, which depends on the namespace, is left empty).
func DefaultOptions() Options {
	return Options{
		ExchangePrefix:      DefaultExchangePrefix,
		MaxPayload:          DefaultMaxPayload,
		QueueMaxLength:      DefaultQueueMaxLength,
		QueueMaxBytes:       DefaultQueueMaxBytes,
		Prefetch:            DefaultPrefetch,
		ConcurrentPublish:   DefaultConcurrentPublish,
		Heartbeat:           DefaultHeartbeat,
		ConnectTimeout:      DefaultConnectTimeout,
		ReconnectBackoff:    DefaultReconnectBackoff,
		MaxReconnectBackoff: DefaultMaxReconnectBackoff,
		Logger:              slog.New(slog.DiscardHandler),
	}
}

const pkg = "rabbitmqtransport"

// withDefaults fills zero fields with defaults and validates the result.
func (o Options) withDefaults(namespace string) (Options, error) {
	d := DefaultOptions()
	transportopt.Fill(&o.ExchangePrefix, d.ExchangePrefix)
	transportopt.Fill(&o.MaxPayload, d.MaxPayload)
	transportopt.Fill(&o.QueueMaxLength, d.QueueMaxLength)
	transportopt.Fill(&o.QueueMaxBytes, d.QueueMaxBytes)
	transportopt.Fill(&o.Prefetch, d.Prefetch)
	transportopt.Fill(&o.ConcurrentPublish, d.ConcurrentPublish)
	transportopt.Fill(&o.Heartbeat, d.Heartbeat)
	transportopt.Fill(&o.ConnectTimeout, d.ConnectTimeout)
	transportopt.Fill(&o.ReconnectBackoff, d.ReconnectBackoff)
	transportopt.Fill(&o.MaxReconnectBackoff, d.MaxReconnectBackoff)
	transportopt.Fill(&o.Logger, d.Logger)
	transportopt.Fill(&o.ConnectionName, "backplane:"+namespace)
	if err := transportopt.First(
		transportopt.NonNegative(pkg, "MaxPayload", o.MaxPayload),
		transportopt.NonNegative(pkg, "Prefetch", o.Prefetch),
		transportopt.NonNegative(pkg, "ConcurrentPublish", o.ConcurrentPublish),
		transportopt.NonNegative(pkg, "ConnectTimeout", o.ConnectTimeout),
		transportopt.NonNegative(pkg, "ReconnectBackoff", o.ReconnectBackoff),
	); err != nil {
		return o, err
	}
	switch {
	case o.MaxPayload > maxPayloadLimit:
		return o, transportopt.Invalid(pkg, "MaxPayload %d over %d (RabbitMQ's largest max_message_size)", o.MaxPayload, maxPayloadLimit)
	case o.Prefetch > 65535:
		return o, transportopt.Invalid(pkg, "Prefetch %d over 65535", o.Prefetch)
	case o.MaxReconnectBackoff < o.ReconnectBackoff:
		return o, transportopt.Invalid(pkg, "MaxReconnectBackoff %v below ReconnectBackoff %v", o.MaxReconnectBackoff, o.ReconnectBackoff)
	case len(o.ExchangePrefix)+len(namespace) > 255:
		return o, transportopt.Invalid(pkg, "exchange name %q is longer than 255 bytes (ExchangePrefix plus namespace)", o.ExchangePrefix+namespace)
	case len(o.QueueName) > 255:
		return o, transportopt.Invalid(pkg, "QueueName is longer than 255 bytes")
	}
	return o, nil
}

// Option changes Options.
type Option func(*Options)

// WithOptions replaces all options with o (zero fields still mean their
// defaults); later Options apply on top.
func WithOptions(o Options) Option { return func(dst *Options) { *dst = o } }

// WithExchangePrefix sets the prefix of the exchange name.
func WithExchangePrefix(p string) Option { return func(o *Options) { o.ExchangePrefix = p } }

// WithQueueName names the instance's queue instead of letting the broker
// name it.
func WithQueueName(name string) Option { return func(o *Options) { o.QueueName = name } }

// WithMaxPayload sets the largest payload Publish accepts.
func WithMaxPayload(n int) Option { return func(o *Options) { o.MaxPayload = n } }

// WithQueueLimits sets the queue's length limits by count and by bytes
// (negative: no limit of that kind).
func WithQueueLimits(maxLength, maxBytes int) Option {
	return func(o *Options) {
		o.QueueMaxLength = maxLength
		o.QueueMaxBytes = maxBytes
	}
}

// WithPrefetch sets how many unacknowledged messages the broker may have
// sent the instance.
func WithPrefetch(n int) Option { return func(o *Options) { o.Prefetch = n } }

// WithConcurrentPublish sets how many publish rounds may wait for the
// broker's confirmation at once.
func WithConcurrentPublish(n int) Option { return func(o *Options) { o.ConcurrentPublish = n } }

// WithHeartbeat sets the AMQP heartbeat interval of a connection made by
// Open.
func WithHeartbeat(d time.Duration) Option { return func(o *Options) { o.Heartbeat = d } }

// WithConnectTimeout bounds a dial and handshake of a connection made by
// Open.
func WithConnectTimeout(d time.Duration) Option { return func(o *Options) { o.ConnectTimeout = d } }

// WithReconnectBackoff bounds the wait between reconnect attempts.
func WithReconnectBackoff(min, max time.Duration) Option {
	return func(o *Options) {
		o.ReconnectBackoff = min
		o.MaxReconnectBackoff = max
	}
}

// WithTLSConfig sets the TLS configuration of a connection made by Open.
func WithTLSConfig(c *tls.Config) Option { return func(o *Options) { o.TLSConfig = c } }

// WithConnectionName sets the connection_name client property of a
// connection made by Open.
func WithConnectionName(name string) Option { return func(o *Options) { o.ConnectionName = name } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }
