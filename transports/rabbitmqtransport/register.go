package rabbitmqtransport

import (
	"context"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the amqp:// and amqps:// schemes with
// transports.Open (and so with fxmodule).
func init() {
	transports.Register("amqp", openURL)
	transports.Register("amqps", openURL)
}

// urlParams are the query parameters of amqp:// and amqps:// (besides
// namespace). The package and fxmodule documentation describe them.
var urlParams = []string{
	"exchange_prefix", "queue_name", "max_payload", "queue_max_length",
	"queue_max_bytes", "prefetch", "concurrent_publish", "heartbeat",
	"connect_timeout", "reconnect_backoff", "max_reconnect_backoff",
	"connection_name", "tls_ca", "tls_cert", "tls_key", "tls_server_name",
}

// openURL opens an amqp:// or amqps:// URL, over an *amqp.Connection of
// the request's clients if it has one.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, urlParams...); err != nil {
		return nil, err
	}
	opts, err := urlOptions(transports.NewParams(u), u.Scheme)
	if err != nil {
		return nil, err
	}
	opts = append([]Option{WithLogger(req.Logger)}, opts...)
	if conn, ok := transports.Client[*amqp.Connection](req); ok && conn != nil {
		return New(conn, req.Namespace, opts...)
	}
	return Open(transports.Without(u, urlParams...).String(), req.Namespace, opts...)
}

// urlOptions reads the URL parameters into Options.
func urlOptions(p *transports.Params, scheme string) ([]Option, error) {
	var opts []Option
	if v, ok := p.Str("exchange_prefix"); ok {
		opts = append(opts, WithExchangePrefix(v))
	}
	if v, ok := p.Str("queue_name"); ok {
		opts = append(opts, WithQueueName(v))
	}
	if v, ok := p.Str("connection_name"); ok {
		opts = append(opts, WithConnectionName(v))
	}
	p.Int("max_payload", func(n int) { opts = append(opts, WithMaxPayload(n)) })
	p.Int("prefetch", func(n int) { opts = append(opts, WithPrefetch(n)) })
	p.Int("concurrent_publish", func(n int) { opts = append(opts, WithConcurrentPublish(n)) })
	maxLen, maxBytes := limitParam(p, "queue_max_length"), limitParam(p, "queue_max_bytes")
	opts = append(opts, WithQueueLimits(maxLen, maxBytes))
	p.Duration("heartbeat", func(d time.Duration) {
		if d == 0 {
			d = -1 // the broker's proposal
		}
		opts = append(opts, WithHeartbeat(d))
	})
	p.Duration("connect_timeout", func(d time.Duration) { opts = append(opts, WithConnectTimeout(d)) })
	backoff, maxBackoff := DefaultReconnectBackoff, DefaultMaxReconnectBackoff
	p.Duration("reconnect_backoff", func(d time.Duration) { backoff = d })
	p.Duration("max_reconnect_backoff", func(d time.Duration) { maxBackoff = d })
	opts = append(opts, WithReconnectBackoff(backoff, max(backoff, maxBackoff)))
	tc := p.TLSConfig()
	if err := p.Err(); err != nil {
		return nil, err
	}
	if tc != nil {
		if scheme != "amqps" {
			return nil, fmt.Errorf("%w: tls_* parameters need an amqps:// URL", core.ErrInvalidOption)
		}
		opts = append(opts, WithTLSConfig(tc))
	}
	return opts, nil
}

// limitParam reads a queue limit: a count, or "none" (also -1) for no
// limit; 0 when absent (the default).
func limitParam(p *transports.Params, name string) int {
	v, ok := p.Str(name)
	if !ok {
		return 0
	}
	if v == "none" || v == "-1" {
		return -1
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		p.Fail(name, v, fmt.Errorf("want a positive count, or none"))
	}
	return n
}
