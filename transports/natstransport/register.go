package natstransport

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the nats:// and tls:// schemes with
// transports.Open (and so with fxmodule).
func init() {
	transports.Register("nats", openURL)
	transports.Register("tls", openURL)
}

// urlParams are the query parameters of nats:// and tls:// (besides
// namespace). The fxmodule package documentation describes them.
var urlParams = []string{
	"addr", "name", "max_payload", "subject_prefix", "connect_timeout",
	"reconnect_wait", "ping_interval", "flush_timeout", "pending_msgs",
	"pending_bytes", "concurrent_publish", "token", "credentials", "nkey",
	"tls_ca", "tls_cert", "tls_key", "tls_server_name",
}

// openURL opens a nats:// or tls:// URL, over a *nats.Conn of the
// request's clients if it has one. The JetStream mode's parameters
// (JetStreamURLParams) are accepted too.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, append(slices.Clone(urlParams), JetStreamURLParams()...)...); err != nil {
		return nil, err
	}
	js, err := JetStreamURLOptions(u.Query())
	if err != nil {
		return nil, err
	}
	p := transports.NewParams(u)
	opts := append([]Option{WithLogger(req.Logger)}, js...)
	if v, ok := p.Str("name"); ok {
		opts = append(opts, WithName(v))
	}
	if v, ok := p.Str("subject_prefix"); ok {
		opts = append(opts, WithSubjectPrefix(v))
	}
	p.Int("max_payload", func(n int) { opts = append(opts, WithMaxPayload(n)) })
	p.Duration("connect_timeout", func(d time.Duration) { opts = append(opts, WithConnectTimeout(d)) })
	p.Duration("reconnect_wait", func(d time.Duration) { opts = append(opts, WithReconnectWait(d)) })
	p.Duration("ping_interval", func(d time.Duration) { opts = append(opts, WithPingInterval(d)) })
	p.Duration("flush_timeout", func(d time.Duration) { opts = append(opts, WithFlushTimeout(d)) })
	p.Int("concurrent_publish", func(n int) { opts = append(opts, WithConcurrentPublish(n)) })
	msgs, bytes := 0, 0
	p.Int("pending_msgs", func(n int) { msgs = n })
	p.Int("pending_bytes", func(n int) { bytes = n })
	opts = append(opts, WithPendingLimits(msgs, bytes))
	if v, ok := p.Str("token"); ok {
		opts = append(opts, WithToken(v))
	}
	if v, ok := p.Str("credentials"); ok {
		opts = append(opts, WithCredentialsFile(v))
	}
	if v, ok := p.Str("nkey"); ok {
		opts = append(opts, WithNKeySeedFile(v))
	}
	tc := p.TLSConfig()
	if p.Err() != nil {
		return nil, p.Err()
	}
	if nc, ok := transports.Client[*nats.Conn](req); ok && nc != nil {
		return New(nc, req.Namespace, opts...)
	}
	if tc != nil {
		opts = append(opts, WithTLSConfig(tc))
	}
	servers := []string{(&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}).String()}
	for _, a := range u.Query()["addr"] {
		if !strings.Contains(a, "://") {
			a = u.Scheme + "://" + a
		}
		servers = append(servers, a)
	}
	return Open(strings.Join(servers, ","), req.Namespace, opts...)
}
