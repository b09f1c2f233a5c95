// options.go: Options, their defaults and validation, and the With...
// functional options.

package core

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// Policy says what the engine does when it learns that invalidations may
// have been lost.
type Policy int

const (
	// PolicyFlush clears the local store (the default): nothing stale
	// survives, at the price of a colder cache.
	PolicyFlush Policy = iota
	// PolicyKeep keeps the local store and relies on the entries' TTL to
	// bound staleness.
	PolicyKeep
)

// String returns the policy's name.
func (p Policy) String() string {
	switch p {
	case PolicyFlush:
		return "flush"
	case PolicyKeep:
		return "keep"
	default:
		return fmt.Sprintf("Policy(%d)", int(p))
	}
}

// Options configure a Cache. Start from DefaultOptions; the zero value is
// not valid. Every field is checked by New.
type Options struct {
	// TTL is the lifetime of a cached entry, enforced by the engine
	// whatever the store does: the last safety net against staleness. The
	// read path checks it against a clock refreshed every 5 ms while reads
	// happen, so an entry may outlive its TTL by that much.
	// Zero means entries live until evicted. Default 10 minutes.
	TTL time.Duration
	// TTLJitter spreads expiries: each entry lives TTL*(1-j) to TTL*(1+j)
	// with j drawn uniformly from [0, TTLJitter). Range [0, 1). Default 0.1.
	TTLJitter float64

	// HeartbeatInterval is how often the instance publishes a heartbeat
	// carrying its last sequence number. Peers detect a lost tail of
	// messages from it, and the instance detects a silent link (its own
	// heartbeats stop coming back). Zero disables heartbeats and silence
	// detection. Default 1 second.
	HeartbeatInterval time.Duration
	// HeartbeatTimeout bounds how far behind delivery to this instance may
	// run: when the newest own message that came back was published longer
	// ago than this (by the instance's own clock), the link counts as
	// silent, whether nothing arrives at all (a blackhole) or everything
	// arrives late (a slow subscriber with a backlog). It must exceed
	// HeartbeatInterval. Default 3 * HeartbeatInterval.
	HeartbeatTimeout time.Duration

	// CanaryInterval, when positive, makes the instance publish a synthetic
	// invalidation (of CanaryKey) this often, through the same path as
	// Invalidate. Every instance must see every live peer's canary and its
	// own: Health reports SyncBroken, with the peer, when one is overdue
	// (CanaryTimeout), and the lag feeds the backplane.canary.lag metric.
	// Zero (default) disables the probe.
	CanaryInterval time.Duration
	// CanaryTimeout is how overdue a canary may be. Default 3 *
	// CanaryInterval plus the heartbeat timeout (the budget for a canary's
	// own publish round trip and delivery).
	CanaryTimeout time.Duration

	// OnDisconnect applies when the transport reports a disconnect or the
	// link goes silent. PolicyFlush (default) clears the store and stops
	// caching until the link is back; reads keep being served through
	// GetOrLoad's loader. PolicyKeep keeps serving cached entries. Over a
	// Durable transport neither applies: the store is kept but not served
	// until delivery has caught up (Health.Suspended).
	OnDisconnect Policy
	// OnReconnect applies when the link is back after a disconnect or a
	// silence (messages may have been lost meanwhile). Default PolicyFlush.
	// Over a Durable transport it applies only when the transport could
	// not resume where it stopped (Event.Resumed false).
	OnReconnect Policy
	// OnGap applies when a peer's sequence numbers show lost messages, or
	// the transport reports a loss. Default PolicyFlush.
	OnGap Policy
	// ReorderWindow is how long a message that a later one of the same
	// peer overtook may take to arrive before it counts as lost (a gap).
	// It applies only over a transport that publishes on several
	// connections at once (Limits.ConcurrentPublish above 1, and not a
	// Sender, which keeps order), where an instance's messages may
	// overtake one another; over any other transport a missing message is
	// a gap at once. It delays the detection of a message lost in such a
	// transport by at most this much. Default 250 milliseconds, longer
	// than dialling a connection.
	ReorderWindow time.Duration

	// MaxPeers bounds the peers whose sequence numbers an instance tracks
	// at once. A message from a further peer is applied (its keys are
	// evicted) but its losses cannot be checked: it counts as a gap
	// (OnGap) and in Stats.PeersRefused. Set it above the number of
	// instances in a namespace. Default 1024.
	MaxPeers int
	// MaxMissing bounds the sequence numbers an instance waits for at once
	// (messages overtaken by later ones of the same peer, see
	// ReorderWindow), over all peers; one peer has at most 1024 of them.
	// Beyond either bound the missing messages count as lost at once (a
	// gap, OnGap). Default 4096.
	MaxMissing int

	// MaxTagsPerEntry bounds the tags one entry carries (each costs the
	// entry 10 bytes and its hits a check); 1 to 255. Tags are 1 to
	// MaxKeyLen bytes. Default 8.
	MaxTagsPerEntry int

	// MaxKeysPerCall bounds the keys of one Invalidate call. Default 10000.
	MaxKeysPerCall int
	// MaxBatchKeys bounds the keys coalesced into one publish round.
	// Default 16384.
	MaxBatchKeys int
	// MaxPayload caps the bytes of one published message below the
	// transport's own limit. Zero means the transport's limit.
	MaxPayload int
	// QueueSize bounds the Invalidate and Clear calls waiting to be
	// published; further calls block (honouring their context). Default 1024.
	QueueSize int
	// PublishTimeout bounds one publish round trip: a round is abandoned,
	// and its calls fail, after PublishTimeout to a quarter more (rounds
	// share a deadline). Default 5 seconds.
	PublishTimeout time.Duration
	// AckTimeout bounds how long an acknowledged call (InvalidateAcked)
	// waits for the peers' confirmations, within its context's deadline.
	// Default HeartbeatTimeout.
	AckTimeout time.Duration
	// CloseTimeout bounds how long Close drains pending publishes.
	// Default 5 seconds.
	CloseTimeout time.Duration

	// Keyring, when set, signs every published message with HMAC-SHA256
	// and drops received messages that are unsigned or do not verify
	// (counted in Stats.Rejected). Every instance needs the same keys.
	Keyring *Keyring
	// ReplayWindow, with a Keyring, rejects signed messages published
	// (by the sender's clock) more than this long before or after the
	// receiver's clock, so a captured message cannot be replayed later.
	// Hosts' clocks must agree within it. Default 2 minutes; ignored
	// without a Keyring.
	ReplayWindow time.Duration
	// AcceptUnsigned keeps accepting unsigned messages while Keyring is set:
	// for turning signing on in a running fleet, one instance at a time.
	AcceptUnsigned bool

	// Codec encodes values for the typed helpers. Default JSON.
	Codec Codec
	// Logger receives connection events, flushes and errors. Default
	// slog.Default().
	Logger *slog.Logger
	// MeterProvider receives the engine's metrics. Default: none (no-op).
	MeterProvider metric.MeterProvider

	// now is the clock; tests replace it.
	now       func() time.Time
	realClock bool
}

// DefaultOptions returns the defaults documented on each Options field.
func DefaultOptions() Options {
	return Options{
		TTL:               10 * time.Minute,
		TTLJitter:         0.1,
		HeartbeatInterval: time.Second,
		OnDisconnect:      PolicyFlush,
		OnReconnect:       PolicyFlush,
		OnGap:             PolicyFlush,
		ReorderWindow:     250 * time.Millisecond,
		MaxPeers:          1024,
		MaxMissing:        4096,
		MaxTagsPerEntry:   8,
		MaxKeysPerCall:    10000,
		MaxBatchKeys:      16384,
		QueueSize:         1024,
		PublishTimeout:    5 * time.Second,
		CloseTimeout:      5 * time.Second,
		ReplayWindow:      2 * time.Minute,
		Codec:             JSONCodec{},
	}
}

// Option changes Options; New applies them in order over DefaultOptions.
type Option func(*Options)

// WithOptions replaces all options with o (for configuration files); later
// options still apply on top.
func WithOptions(o Options) Option { return func(p *Options) { *p = o } }

// WithTTL sets Options.TTL and Options.TTLJitter.
func WithTTL(ttl time.Duration, jitter float64) Option {
	return func(o *Options) { o.TTL, o.TTLJitter = ttl, jitter }
}

// WithHeartbeat sets Options.HeartbeatInterval and Options.HeartbeatTimeout
// (timeout zero means 3 * interval).
func WithHeartbeat(interval, timeout time.Duration) Option {
	return func(o *Options) { o.HeartbeatInterval, o.HeartbeatTimeout = interval, timeout }
}

// WithPolicies sets Options.OnDisconnect, OnReconnect and OnGap.
func WithPolicies(onDisconnect, onReconnect, onGap Policy) Option {
	return func(o *Options) { o.OnDisconnect, o.OnReconnect, o.OnGap = onDisconnect, onReconnect, onGap }
}

// WithCodec sets Options.Codec.
func WithCodec(c Codec) Option { return func(o *Options) { o.Codec = c } }

// WithLogger sets Options.Logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithMeterProvider sets Options.MeterProvider.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *Options) { o.MeterProvider = mp }
}

// WithKeyring sets Options.Keyring: sign and verify every message.
func WithKeyring(k *Keyring) Option { return func(o *Options) { o.Keyring = k } }

// WithCanary sets Options.CanaryInterval and Options.CanaryTimeout (zero:
// 3 * interval).
func WithCanary(interval, timeout time.Duration) Option {
	return func(o *Options) { o.CanaryInterval, o.CanaryTimeout = interval, timeout }
}

// WithQueueSize sets Options.QueueSize.
func WithQueueSize(n int) Option { return func(o *Options) { o.QueueSize = n } }

// WithReorderWindow sets Options.ReorderWindow.
func WithReorderWindow(d time.Duration) Option { return func(o *Options) { o.ReorderWindow = d } }

// WithReceiveLimits sets Options.MaxPeers and Options.MaxMissing.
func WithReceiveLimits(maxPeers, maxMissing int) Option {
	return func(o *Options) { o.MaxPeers, o.MaxMissing = maxPeers, maxMissing }
}

// WithPublishTimeout sets Options.PublishTimeout.
func WithPublishTimeout(d time.Duration) Option { return func(o *Options) { o.PublishTimeout = d } }

// WithAckTimeout sets Options.AckTimeout.
func WithAckTimeout(d time.Duration) Option { return func(o *Options) { o.AckTimeout = d } }

func withClock(now func() time.Time) Option { return func(o *Options) { o.now = now } }

// Validate reports every invalid field at once: the errors.Join of one
// error per invalid field, each wrapping ErrInvalidOption, each message
// starting with the field's name.
func (o *Options) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...))
	}
	if o.TTL < 0 {
		bad("TTL %v is negative", o.TTL)
	}
	if o.TTLJitter < 0 || o.TTLJitter >= 1 {
		bad("TTLJitter %v is outside [0, 1)", o.TTLJitter)
	}
	if o.HeartbeatInterval < 0 {
		bad("HeartbeatInterval %v is negative", o.HeartbeatInterval)
	}
	if o.HeartbeatTimeout < 0 {
		bad("HeartbeatTimeout %v is negative", o.HeartbeatTimeout)
	} else if o.HeartbeatInterval > 0 && o.HeartbeatTimeout != 0 && o.HeartbeatTimeout <= o.HeartbeatInterval {
		bad("HeartbeatTimeout %v must exceed HeartbeatInterval %v", o.HeartbeatTimeout, o.HeartbeatInterval)
	}
	if o.ReorderWindow < 0 {
		bad("ReorderWindow %v is negative", o.ReorderWindow)
	}
	if !o.OnDisconnect.valid() {
		bad("OnDisconnect %v is not a known policy", o.OnDisconnect)
	}
	if !o.OnReconnect.valid() {
		bad("OnReconnect %v is not a known policy", o.OnReconnect)
	}
	if !o.OnGap.valid() {
		bad("OnGap %v is not a known policy", o.OnGap)
	}
	if o.MaxPeers <= 0 {
		bad("MaxPeers %d must be positive", o.MaxPeers)
	}
	if o.MaxMissing <= 0 {
		bad("MaxMissing %d must be positive", o.MaxMissing)
	}
	if o.MaxTagsPerEntry < 1 || o.MaxTagsPerEntry > 255 {
		bad("MaxTagsPerEntry %d is outside 1..255", o.MaxTagsPerEntry)
	}
	if o.MaxKeysPerCall <= 0 {
		bad("MaxKeysPerCall %d must be positive", o.MaxKeysPerCall)
	}
	if o.MaxBatchKeys <= 0 {
		bad("MaxBatchKeys %d must be positive", o.MaxBatchKeys)
	}
	if o.MaxPayload < 0 {
		bad("MaxPayload %d is negative", o.MaxPayload)
	} else if o.MaxPayload > 0 && o.MaxPayload < minPayload {
		bad("MaxPayload %d is below the minimum %d (one key of MaxKeyLen bytes)", o.MaxPayload, minPayload)
	}
	if o.CanaryInterval < 0 {
		bad("CanaryInterval %v is negative", o.CanaryInterval)
	}
	if o.CanaryTimeout < 0 {
		bad("CanaryTimeout %v is negative", o.CanaryTimeout)
	} else if o.CanaryInterval > 0 && o.CanaryTimeout != 0 && o.CanaryTimeout <= o.CanaryInterval {
		bad("CanaryTimeout %v must exceed CanaryInterval %v", o.CanaryTimeout, o.CanaryInterval)
	}
	if o.Keyring != nil && o.ReplayWindow <= 0 {
		bad("ReplayWindow %v must be positive with a Keyring", o.ReplayWindow)
	}
	if o.QueueSize <= 0 {
		bad("QueueSize %d must be positive", o.QueueSize)
	}
	if o.AckTimeout < 0 {
		bad("AckTimeout %v must not be negative", o.AckTimeout)
	}
	if o.PublishTimeout <= 0 {
		bad("PublishTimeout %v must be positive", o.PublishTimeout)
	}
	if o.CloseTimeout <= 0 {
		bad("CloseTimeout %v must be positive", o.CloseTimeout)
	}
	if o.Codec == nil {
		bad("Codec is nil")
	}
	return errors.Join(errs...)
}

// minPayload is the smallest payload limit that carries one key of MaxKeyLen.
const minPayload = headerLen + 1 + 2 + MaxKeyLen

func (p Policy) valid() bool { return p == PolicyFlush || p == PolicyKeep }

func (o *Options) heartbeatTimeout() time.Duration {
	if o.HeartbeatTimeout > 0 {
		return o.HeartbeatTimeout
	}
	return 3 * o.HeartbeatInterval
}

func (o *Options) canaryTimeout() time.Duration {
	if o.CanaryTimeout > 0 {
		return o.CanaryTimeout
	}
	t := 3 * o.CanaryInterval
	if o.HeartbeatInterval > 0 {
		t += o.heartbeatTimeout()
	}
	return t
}
