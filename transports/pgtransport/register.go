package pgtransport

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Importing this package registers the postgres:// and postgresql://
// schemes with transports.Open (and so with fxmodule).
func init() {
	transports.Register("postgres", openURL)
	transports.Register("postgresql", openURL)
}

// Query parameters of postgres:// and postgresql:// (besides namespace).
// The fxmodule package documentation describes them.
var (
	// urlParams are the transport's own; they are removed before the URL
	// goes to pgxpool.ParseConfig.
	urlParams = []string{
		"channel_prefix", "max_payload", "ping_interval", "ping_timeout",
		"reconnect_backoff", "max_reconnect_backoff", "concurrent_publish",
		"pending_msgs",
	}
	// pgxParams are passed through to pgxpool.ParseConfig: libpq's
	// connection parameters that pgx knows, pgx's and pgxpool's own, and
	// the run-time settings application_name and options. Any other
	// parameter would reach the server as a setting of the session, so it
	// is rejected here instead.
	pgxParams = []string{
		"host", "port", "dbname", "user", "password", "passfile",
		"connect_timeout", "sslmode", "sslkey", "sslcert", "sslcertmode",
		"sslrootcert", "sslnegotiation", "sslpassword", "sslsni",
		"krbspn", "krbsrvname", "target_session_attrs", "service",
		"servicefile", "min_protocol_version", "max_protocol_version",
		"channel_binding", "require_auth",
		"application_name", "options",
		"statement_cache_capacity", "description_cache_capacity",
		"default_query_exec_mode",
		"pool_max_conns", "pool_min_conns", "pool_min_idle_conns",
		"pool_max_conn_lifetime", "pool_max_conn_idle_time",
		"pool_health_check_period", "pool_max_conn_lifetime_jitter",
		"pool_ping_timeout",
	}
)

// openURL opens a postgres:// or postgresql:// URL, over a *pgxpool.Pool
// of the request's clients if it has one.
func openURL(_ context.Context, req transports.Request) (core.Backplane, error) {
	u := req.URL
	if err := transports.CheckParams(u, append(urlParams, pgxParams...)...); err != nil {
		return nil, err
	}
	p := transports.NewParams(u)
	opts := []Option{WithLogger(req.Logger)}
	if v, ok := p.Str("channel_prefix"); ok {
		opts = append(opts, WithChannelPrefix(v))
	}
	p.Int("max_payload", func(n int) { opts = append(opts, WithMaxPayload(n)) })
	p.Int("concurrent_publish", func(n int) { opts = append(opts, WithConcurrentPublish(n)) })
	p.Int("pending_msgs", func(n int) { opts = append(opts, WithPendingMessages(n)) })
	pingInterval, pingTimeout := DefaultPingInterval, DefaultPingTimeout
	p.Duration("ping_interval", func(d time.Duration) { pingInterval = d })
	p.Duration("ping_timeout", func(d time.Duration) { pingTimeout = d })
	opts = append(opts, WithPing(pingInterval, pingTimeout))
	backoff, maxBackoff := DefaultReconnectBackoff, DefaultMaxReconnectBackoff
	p.Duration("reconnect_backoff", func(d time.Duration) { backoff = d })
	p.Duration("max_reconnect_backoff", func(d time.Duration) { maxBackoff = d })
	opts = append(opts, WithReconnectBackoff(backoff, maxBackoff))
	if p.Err() != nil {
		return nil, p.Err()
	}
	if pool, ok := transports.Client[*pgxpool.Pool](req); ok && pool != nil {
		return New(pool, req.Namespace, opts...)
	}
	return Open(transports.Without(u, urlParams...).String(), req.Namespace, opts...)
}
