package natstransport

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/internal/transportopt"
)

// Defaults used by DefaultOptions.
const (
	// DefaultSubjectPrefix is the first token of the subject, which is
	// "<prefix>.<namespace>".
	DefaultSubjectPrefix = "backplane"
	// DefaultFlushTimeout bounds Subscribe and Publish when their context
	// has no deadline.
	DefaultFlushTimeout = 10 * time.Second
	// DefaultReconnectWait is the pause between reconnect attempts to the
	// same server of a connection made by Open.
	DefaultReconnectWait = 500 * time.Millisecond
	// DefaultConnectTimeout bounds the dial of a connection made by Open.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultPingInterval is how often a connection made by Open pings the
	// server; two unanswered pings count as a lost connection.
	DefaultPingInterval = 20 * time.Second
	// DefaultMaxPayload is reported by Limits before Open has connected
	// (NATS servers default to 1 MiB).
	DefaultMaxPayload = 1 << 20
	// DefaultConcurrentPublish is how many publish rounds of one instance
	// may wait for the server's confirmation at once: one, since more
	// measured no faster (BENCHMARKS.md).
	DefaultConcurrentPublish = 1
	// DefaultRetention is how long the stream of the JetStream mode keeps
	// a message when JetStreamOptions sets no retention at all.
	DefaultRetention = 10 * time.Minute
)

// Options configure a Transport. The zero value of a field means its
// default; DefaultOptions returns the defaults filled in. Fields marked
// "Open only" are ignored by New, whose connection the caller configured.
type Options struct {
	// SubjectPrefix is the first token of the subject "<prefix>.<namespace>".
	SubjectPrefix string
	// MaxPayload caps the payload size reported by Limits below the
	// server's max_payload. Zero means the server's value.
	MaxPayload int
	// FlushTimeout bounds Subscribe and Publish when their context has no
	// deadline.
	FlushTimeout time.Duration
	// ConcurrentPublish is how many publish rounds of one instance may
	// wait for the server's confirmation at once
	// (core.Limits.ConcurrentPublish): the engine sends a round while
	// earlier ones wait, and the one connection keeps them in order, so
	// any value is safe for receivers. More lets a call that arrives
	// during a burst go out at once instead of waiting for a round trip;
	// fewer makes calls under heavy load queue and share rounds, which
	// delivers more keys per second with more latency. 1 publishes one
	// round at a time. Default DefaultConcurrentPublish.
	ConcurrentPublish int
	// PendingMsgs and PendingBytes bound the messages received but not yet
	// handed to the handler. Beyond them nats.go drops messages (a slow
	// consumer), which the Transport reports as EventLoss. Zero means the
	// nats.go defaults (500,000 messages, 64 MiB); negative means no limit.
	PendingMsgs, PendingBytes int
	// Logger receives handler panics and connection diagnostics. Nil means
	// slog.Default().
	Logger *slog.Logger

	// Name is the connection name shown by the server's monitoring (Open
	// only). Empty means "backplane:<namespace>".
	Name string
	// ReconnectWait is the pause between reconnect attempts to the same
	// server (Open only). The connection retries forever.
	ReconnectWait time.Duration
	// ConnectTimeout bounds the dial of each server, the first one and
	// every reconnect (Open only). The context of Connect, Subscribe or
	// Publish bounds how long that call waits for the first dial.
	ConnectTimeout time.Duration
	// PingInterval is how often the client pings the server to detect a
	// dead connection (Open only).
	PingInterval time.Duration
	// User and Password authenticate the connection (Open only). They may
	// also be given in the URL as nats://user:password@host:port.
	User, Password string
	// Token authenticates the connection with a token (Open only).
	Token string
	// CredentialsFile is a NATS credentials file holding a user JWT and
	// NKey seed (Open only).
	CredentialsFile string
	// NKeySeedFile is a file holding an NKey seed (Open only).
	NKeySeedFile string
	// TLSConfig configures TLS (Open only). Nil with a tls:// URL means the
	// system roots.
	TLSConfig *tls.Config
	// RootCAFiles are PEM files of CAs to trust (Open only).
	RootCAFiles []string
	// NATSOptions are applied to the nats.go options after the ones above
	// (Open only). The Transport chains its disconnect and reconnect
	// handlers to any set here.
	NATSOptions []nats.Option

	// JetStream selects and configures the JetStream mode; its zero value
	// is core NATS pub/sub.
	JetStream JetStreamOptions
}

// DefaultOptions returns the options with every default filled in.
func DefaultOptions() Options {
	return Options{
		SubjectPrefix:     DefaultSubjectPrefix,
		FlushTimeout:      DefaultFlushTimeout,
		ConcurrentPublish: DefaultConcurrentPublish,
		ReconnectWait:     DefaultReconnectWait,
		ConnectTimeout:    DefaultConnectTimeout,
		PingInterval:      DefaultPingInterval,
	}
}

func (o *Options) fill() {
	d := DefaultOptions()
	transportopt.Fill(&o.SubjectPrefix, d.SubjectPrefix)
	transportopt.Fill(&o.FlushTimeout, d.FlushTimeout)
	transportopt.Fill(&o.ConcurrentPublish, d.ConcurrentPublish)
	transportopt.Fill(&o.ReconnectWait, d.ReconnectWait)
	transportopt.Fill(&o.ConnectTimeout, d.ConnectTimeout)
	transportopt.Fill(&o.PingInterval, d.PingInterval)
	transportopt.Fill(&o.Logger, slog.Default())
	o.JetStream.fill()
}

func (o *Options) validate() error {
	const pkg = "natstransport"
	err := transportopt.First(
		transportopt.NonNegative(pkg, "MaxPayload", o.MaxPayload),
		transportopt.NonNegative(pkg, "FlushTimeout", o.FlushTimeout),
		transportopt.NonNegative(pkg, "ConcurrentPublish", o.ConcurrentPublish),
		transportopt.NonNegative(pkg, "ReconnectWait", o.ReconnectWait),
		transportopt.NonNegative(pkg, "ConnectTimeout", o.ConnectTimeout),
		transportopt.NonNegative(pkg, "PingInterval", o.PingInterval),
	)
	switch {
	case err != nil:
		return err
	case o.CredentialsFile != "" && o.NKeySeedFile != "":
		return transportopt.Invalid(pkg, "CredentialsFile and NKeySeedFile are exclusive")
	}
	if err := validateSubject(o.SubjectPrefix); err != nil {
		return transportopt.Invalid(pkg, "SubjectPrefix: %w", err)
	}
	return o.JetStream.validate()
}

// Option changes Options.
type Option func(*Options)

// WithOptions replaces all options with o; later options still apply.
func WithOptions(o Options) Option { return func(p *Options) { *p = o } }

// WithSubjectPrefix sets Options.SubjectPrefix.
func WithSubjectPrefix(prefix string) Option { return func(o *Options) { o.SubjectPrefix = prefix } }

// WithMaxPayload sets Options.MaxPayload.
func WithMaxPayload(n int) Option { return func(o *Options) { o.MaxPayload = n } }

// WithFlushTimeout sets Options.FlushTimeout.
func WithFlushTimeout(d time.Duration) Option { return func(o *Options) { o.FlushTimeout = d } }

// WithConcurrentPublish sets Options.ConcurrentPublish.
func WithConcurrentPublish(n int) Option { return func(o *Options) { o.ConcurrentPublish = n } }

// WithPendingLimits sets Options.PendingMsgs and Options.PendingBytes.
func WithPendingLimits(msgs, bytes int) Option {
	return func(o *Options) { o.PendingMsgs, o.PendingBytes = msgs, bytes }
}

// WithLogger sets Options.Logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// WithName sets Options.Name.
func WithName(name string) Option { return func(o *Options) { o.Name = name } }

// WithReconnectWait sets Options.ReconnectWait.
func WithReconnectWait(d time.Duration) Option { return func(o *Options) { o.ReconnectWait = d } }

// WithConnectTimeout sets Options.ConnectTimeout.
func WithConnectTimeout(d time.Duration) Option { return func(o *Options) { o.ConnectTimeout = d } }

// WithPingInterval sets Options.PingInterval.
func WithPingInterval(d time.Duration) Option { return func(o *Options) { o.PingInterval = d } }

// WithUserInfo sets Options.User and Options.Password.
func WithUserInfo(user, password string) Option {
	return func(o *Options) { o.User, o.Password = user, password }
}

// WithToken sets Options.Token.
func WithToken(token string) Option { return func(o *Options) { o.Token = token } }

// WithCredentialsFile sets Options.CredentialsFile.
func WithCredentialsFile(path string) Option { return func(o *Options) { o.CredentialsFile = path } }

// WithNKeySeedFile sets Options.NKeySeedFile.
func WithNKeySeedFile(path string) Option { return func(o *Options) { o.NKeySeedFile = path } }

// WithTLSConfig sets Options.TLSConfig.
func WithTLSConfig(c *tls.Config) Option { return func(o *Options) { o.TLSConfig = c } }

// WithRootCAFiles sets Options.RootCAFiles.
func WithRootCAFiles(files ...string) Option { return func(o *Options) { o.RootCAFiles = files } }

// WithNATSOptions appends to Options.NATSOptions.
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *Options) { o.NATSOptions = append(o.NATSOptions, opts...) }
}

// WithJetStream selects the JetStream mode with the stream settings of js
// (Enabled is implied): sets Options.JetStream.
func WithJetStream(js JetStreamOptions) Option {
	return func(o *Options) {
		js.Enabled = true
		o.JetStream = js
	}
}
