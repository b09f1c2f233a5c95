package redistransport

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the redis:// and rediss:// schemes with
// transports.Open (and so with fxmodule).
func init() {
	transports.Register("redis", openURL)
	transports.Register("rediss", openURL)
}

// Query parameters of redis:// and rediss:// (besides namespace). The
// fxmodule package documentation describes them.
var (
	urlParams = []string{
		"sharded", "max_payload", "channel_prefix", "client_name",
		"health_check_interval", "health_check_timeout", "concurrent_publish",
		"tls_ca", "tls_cert", "tls_key", "tls_server_name",
		"addr", "cluster",
		"mode", "maxlen", "retention", "replay", // the stream mode, read by Open
	}
	// goRedisParams are passed through to redis.ParseURL or
	// redis.ParseClusterURL, which reject those that do not apply.
	goRedisParams = []string{
		"protocol", "db", "dial_timeout", "read_timeout", "write_timeout",
		"pool_fifo", "pool_size", "pool_timeout", "min_idle_conns",
		"max_idle_conns", "max_active_conns", "conn_max_idle_time",
		"conn_max_lifetime", "max_retries", "min_retry_backoff",
		"max_retry_backoff", "skip_verify", "max_redirects", "read_only",
		"route_by_latency", "route_randomly",
	}
)

// openURL opens a redis:// or rediss:// URL, over a redis.UniversalClient
// of the request's clients if it has one.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, append(urlParams, goRedisParams...)...); err != nil {
		return nil, err
	}
	p := transports.NewParams(u)
	opts := []Option{WithLogger(req.Logger)}
	p.Bool("sharded", func(b bool) { opts = append(opts, WithShardedPubSub(b)) })
	p.Int("max_payload", func(n int) { opts = append(opts, WithMaxPayload(n)) })
	p.Int("concurrent_publish", func(n int) { opts = append(opts, WithConcurrentPublish(n)) })
	if v, ok := p.Str("channel_prefix"); ok {
		opts = append(opts, WithChannelPrefix(v))
	}
	if v, ok := p.Str("client_name"); ok {
		opts = append(opts, WithClientName(v))
	}
	hcInterval, hcTimeout := DefaultHealthCheckInterval, DefaultHealthCheckTimeout
	p.Duration("health_check_interval", func(d time.Duration) { hcInterval = d })
	p.Duration("health_check_timeout", func(d time.Duration) { hcTimeout = d })
	opts = append(opts, WithHealthCheck(hcInterval, hcTimeout))
	tc := p.TLSConfig()
	if p.Err() != nil {
		return nil, p.Err()
	}
	if client, ok := transports.Client[redis.UniversalClient](req); ok {
		return New(client, req.Namespace, opts...)
	}
	if tc != nil {
		if u.Scheme != "rediss" {
			return nil, fmt.Errorf("%w: tls_* parameters need a rediss:// URL", core.ErrInvalidOption)
		}
		opts = append(opts, WithTLSConfig(tc))
	}
	own := []string{"sharded", "max_payload", "channel_prefix", "client_name",
		"health_check_interval", "health_check_timeout",
		"tls_ca", "tls_cert", "tls_key", "tls_server_name"}
	return Open(transports.Without(u, own...).String(), req.Namespace, opts...)
}
