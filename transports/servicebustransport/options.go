package servicebustransport

import (
	"log/slog"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/messaging/azservicebus"

	"github.com/backplane-go/backplane/internal/transportopt"
)

// Defaults used by DefaultOptions.
const (
	// DefaultTopicPrefix is prepended to the namespace to name the topic
	// when Options.Topic is empty: "backplane.<namespace>".
	DefaultTopicPrefix = "backplane."
	// DefaultMaxMessageSize is the entity's max message size assumed by
	// Limits: 256 KiB, the Standard tier's. Premium namespaces allow more;
	// set Options.MaxMessageSize to use it.
	DefaultMaxMessageSize = 256 * 1024
	// MessageOverhead is what Limits keeps free of the max message size for
	// the AMQP encoding of one message in a batch (its properties and
	// section headers).
	MessageOverhead = 512
	// DefaultReceiveBatch is how many messages one receive call may return.
	DefaultReceiveBatch = 256
	// DefaultRecoverWait is the pause between attempts to re-attach the
	// receiver after a failure.
	DefaultRecoverWait = 100 * time.Millisecond
	// DefaultSettleTimeout bounds the completion of a message in PeekLock
	// mode and the deprovisioning in Close.
	DefaultSettleTimeout = 10 * time.Second
)

// Options configure a Transport. The zero value of a field means its
// default; DefaultOptions returns the defaults filled in.
//
// Exactly one of Subscription and Provisioner must be set.
type Options struct {
	// Topic is the topic every instance sends to and subscribes to. Empty
	// means DefaultTopicPrefix + namespace.
	Topic string
	// Subscription is a pre-provisioned subscription of Topic that this
	// instance, and only this instance, receives from.
	Subscription string
	// Provisioner creates this instance's subscription in Subscribe and
	// deletes it in Close (see NewAdminProvisioner).
	Provisioner Provisioner
	// Inspector reads the subscription's runtime properties when the
	// Transport attaches and after every outage, so that the
	// core.EventReconnected says whether the subscription survived (see
	// ErrSubscriptionRecreated and ErrResumeUnproven); an *admin.Client,
	// which needs the Manage right. Nil means the Provisioner's Admin when
	// the Provisioner is an *AdminProvisioner whose Admin is one (an
	// *admin.Client is), and no check otherwise. With an Inspector,
	// Subscribe fails when it cannot read the subscription.
	Inspector SubscriptionInspector
	// PeekLock receives in PeekLock mode and completes every message after
	// the handler returned, instead of the default ReceiveAndDelete. See
	// the package documentation.
	PeekLock bool
	// MaxMessageSize is the topic's max message size in bytes; Limits
	// reports it minus MessageOverhead. Zero means DefaultMaxMessageSize.
	MaxMessageSize int
	// ReceiveBatch is how many messages one receive call may return (the
	// link credit). Zero means DefaultReceiveBatch.
	ReceiveBatch int
	// RecoverWait is the pause between attempts to re-attach the receiver
	// after a failure. Zero means DefaultRecoverWait.
	RecoverWait time.Duration
	// SettleTimeout bounds one settlement (PeekLock) and the deprovisioning
	// in Close. Zero means DefaultSettleTimeout.
	SettleTimeout time.Duration
	// ClientOptions configure the client that Open and OpenWithCredential
	// make; New ignores them. Nil means the SDK defaults with faster
	// retries (RetryDelay 100 ms, MaxRetryDelay 2 s).
	ClientOptions *azservicebus.ClientOptions
	// Logger receives handler panics and connection diagnostics. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultOptions returns the default Options (Topic, Subscription and
// Provisioner unset).
func DefaultOptions() Options {
	return Options{
		MaxMessageSize: DefaultMaxMessageSize,
		ReceiveBatch:   DefaultReceiveBatch,
		RecoverWait:    DefaultRecoverWait,
		SettleTimeout:  DefaultSettleTimeout,
	}
}

// Option changes Options.
type Option func(*Options)

// WithOptions replaces all Options at once; later options still apply.
func WithOptions(o Options) Option { return func(dst *Options) { *dst = o } }

// WithTopic sets Options.Topic.
func WithTopic(name string) Option { return func(o *Options) { o.Topic = name } }

// WithSubscription sets Options.Subscription, a pre-provisioned
// subscription.
func WithSubscription(name string) Option { return func(o *Options) { o.Subscription = name } }

// WithProvisioner sets Options.Provisioner.
func WithProvisioner(p Provisioner) Option { return func(o *Options) { o.Provisioner = p } }

// WithInspector sets Options.Inspector.
func WithInspector(in SubscriptionInspector) Option { return func(o *Options) { o.Inspector = in } }

// WithPeekLock sets Options.PeekLock.
func WithPeekLock(on bool) Option { return func(o *Options) { o.PeekLock = on } }

// WithMaxMessageSize sets Options.MaxMessageSize.
func WithMaxMessageSize(n int) Option { return func(o *Options) { o.MaxMessageSize = n } }

// WithReceiveBatch sets Options.ReceiveBatch.
func WithReceiveBatch(n int) Option { return func(o *Options) { o.ReceiveBatch = n } }

// WithRecoverWait sets Options.RecoverWait.
func WithRecoverWait(d time.Duration) Option { return func(o *Options) { o.RecoverWait = d } }

// WithClientOptions sets Options.ClientOptions.
func WithClientOptions(co *azservicebus.ClientOptions) Option {
	return func(o *Options) { o.ClientOptions = co }
}

// WithLogger sets Options.Logger.
func WithLogger(l *slog.Logger) Option { return func(o *Options) { o.Logger = l } }

// resolve applies opts over the defaults and validates the result.
func resolve(namespace string, opts []Option) (Options, error) {
	const pkg = "servicebustransport"
	o := transportopt.Apply(DefaultOptions(), opts)
	d := DefaultOptions()
	transportopt.Fill(&o.MaxMessageSize, d.MaxMessageSize)
	transportopt.Fill(&o.ReceiveBatch, d.ReceiveBatch)
	transportopt.Fill(&o.RecoverWait, d.RecoverWait)
	transportopt.Fill(&o.SettleTimeout, d.SettleTimeout)
	transportopt.Fill(&o.Logger, slog.Default())
	if ap, ok := o.Provisioner.(*AdminProvisioner); ok && o.Inspector == nil {
		if in, ok := ap.Admin.(SubscriptionInspector); ok {
			o.Inspector = in
		}
	}
	if o.Topic == "" {
		if namespace == "" {
			return o, transportopt.Invalid(pkg, "empty namespace and no Topic")
		}
		o.Topic = DefaultTopicPrefix + namespace
	}
	switch {
	case strings.ContainsAny(o.Topic, "?#@\\") || len(o.Topic) > 260:
		return o, transportopt.Invalid(pkg, "invalid topic name %q", o.Topic)
	case (o.Subscription == "") == (o.Provisioner == nil):
		return o, transportopt.Invalid(pkg, "set exactly one of Subscription and Provisioner")
	case o.MaxMessageSize <= MessageOverhead:
		return o, transportopt.Invalid(pkg, "MaxMessageSize %d <= %d", o.MaxMessageSize, MessageOverhead)
	case o.ReceiveBatch < 0 || o.ReceiveBatch > 5000:
		return o, transportopt.Invalid(pkg, "ReceiveBatch %d not in 1..5000", o.ReceiveBatch)
	}
	return o, transportopt.First(
		transportopt.NonNegative(pkg, "RecoverWait", o.RecoverWait),
		transportopt.NonNegative(pkg, "SettleTimeout", o.SettleTimeout),
	)
}
