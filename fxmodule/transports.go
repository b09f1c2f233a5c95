package fxmodule

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports/memtransport"
	"github.com/backplane-go/backplane/transports/natstransport"
	"github.com/backplane-go/backplane/transports/redistransport"
)

func init() {
	RegisterTransport("mem", openMem)
	RegisterTransport("redis", openRedis)
	RegisterTransport("rediss", openRedis)
	RegisterTransport("nats", openNATS)
	RegisterTransport("tls", openNATS)
}

// Query parameters of each built-in scheme (besides namespace, which every
// scheme accepts). The package documentation describes them.
var (
	memParams = []string{"max_payload", "queue_size"}

	redisParams = []string{
		"sharded", "max_payload", "channel_prefix", "client_name",
		"health_check_interval", "health_check_timeout", "concurrent_publish",
		"tls_ca", "tls_cert", "tls_key", "tls_server_name",
		"addr", "cluster",
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

	natsParams = []string{
		"addr", "name", "max_payload", "subject_prefix", "connect_timeout",
		"reconnect_wait", "ping_interval", "flush_timeout", "pending_msgs",
		"pending_bytes", "concurrent_publish", "token", "credentials", "nkey",
		"tls_ca", "tls_cert", "tls_key", "tls_server_name",
	}
)

// params reads typed query parameters, remembering the first error with
// the parameter's name.
type params struct {
	q   url.Values
	err error
}

func (p *params) fail(name, v string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: query parameter %s=%q: %v", core.ErrInvalidOption, name, v, err)
	}
}

func (p *params) str(name string) (string, bool) {
	if !p.q.Has(name) {
		return "", false
	}
	return p.q.Get(name), true
}

func (p *params) int(name string, set func(int)) {
	if v, ok := p.str(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			p.fail(name, v, err)
			return
		}
		if n < 0 {
			p.fail(name, v, fmt.Errorf("negative"))
			return
		}
		set(n)
	}
}

func (p *params) duration(name string, set func(time.Duration)) {
	if v, ok := p.str(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			p.fail(name, v, err)
			return
		}
		set(d)
	}
}

func (p *params) bool(name string, set func(bool)) {
	if v, ok := p.str(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.fail(name, v, err)
			return
		}
		set(b)
	}
}

// tlsConfig builds a TLS configuration from tls_ca, tls_cert, tls_key and
// tls_server_name, or returns nil when none is set.
func (p *params) tlsConfig() *tls.Config {
	ca, hasCA := p.str("tls_ca")
	cert, hasCert := p.str("tls_cert")
	key, hasKey := p.str("tls_key")
	name, hasName := p.str("tls_server_name")
	if !hasCA && !hasCert && !hasKey && !hasName {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name}
	if hasCA {
		pem, err := os.ReadFile(ca)
		if err != nil {
			p.fail("tls_ca", ca, err)
			return nil
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			p.fail("tls_ca", ca, fmt.Errorf("no PEM certificate in the file"))
			return nil
		}
	}
	if hasCert != hasKey {
		p.fail("tls_cert", cert, fmt.Errorf("tls_cert and tls_key go together"))
		return nil
	}
	if hasCert {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			p.fail("tls_cert", cert, err)
			return nil
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// without returns u with the query parameters in names removed.
func without(u *url.URL, names []string) *url.URL {
	c := *u
	q := c.Query()
	for _, n := range names {
		q.Del(n)
	}
	c.RawQuery = q.Encode()
	return &c
}

var memHubs = struct {
	sync.Mutex
	m map[string]*memtransport.Hub
}{m: map[string]*memtransport.Hub{}}

// MemHub returns the process-wide in-process hub that mem://name URLs
// connect to, creating it on first use. The hub of mem:// (no name) is
// called "default". Tests use it to inject faults.
func MemHub(name string, opts ...memtransport.HubOption) *memtransport.Hub {
	if name == "" {
		name = "default"
	}
	memHubs.Lock()
	defer memHubs.Unlock()
	h := memHubs.m[name]
	if h == nil {
		h = memtransport.NewHub(opts...)
		memHubs.m[name] = h
	}
	return h
}

func openMem(_ context.Context, req TransportRequest) (core.Backplane, error) {
	u := req.URL
	if err := CheckParams(u, memParams...); err != nil {
		return nil, err
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%w: mem:// takes a hub name, not a path (mem://name)", core.ErrInvalidOption)
	}
	p := &params{q: u.Query()}
	opts := []memtransport.HubOption{memtransport.WithLogger(req.Logger)}
	p.int("max_payload", func(n int) { opts = append(opts, memtransport.WithMaxPayload(n)) })
	p.int("queue_size", func(n int) { opts = append(opts, memtransport.WithQueueSize(n)) })
	if p.err != nil {
		return nil, p.err
	}
	return MemHub(u.Host, opts...).New(req.Namespace), nil
}

func openRedis(_ context.Context, req TransportRequest) (core.Backplane, error) {
	u := req.URL
	if err := CheckParams(u, append(redisParams, goRedisParams...)...); err != nil {
		return nil, err
	}
	p := &params{q: u.Query()}
	opts := []redistransport.Option{redistransport.WithLogger(req.Logger)}
	p.bool("sharded", func(b bool) { opts = append(opts, redistransport.WithShardedPubSub(b)) })
	p.int("max_payload", func(n int) { opts = append(opts, redistransport.WithMaxPayload(n)) })
	p.int("concurrent_publish", func(n int) { opts = append(opts, redistransport.WithConcurrentPublish(n)) })
	if v, ok := p.str("channel_prefix"); ok {
		opts = append(opts, redistransport.WithChannelPrefix(v))
	}
	if v, ok := p.str("client_name"); ok {
		opts = append(opts, redistransport.WithClientName(v))
	}
	hcInterval, hcTimeout := redistransport.DefaultHealthCheckInterval, redistransport.DefaultHealthCheckTimeout
	p.duration("health_check_interval", func(d time.Duration) { hcInterval = d })
	p.duration("health_check_timeout", func(d time.Duration) { hcTimeout = d })
	opts = append(opts, redistransport.WithHealthCheck(hcInterval, hcTimeout))
	tc := p.tlsConfig()
	if p.err != nil {
		return nil, p.err
	}
	if req.Redis != nil {
		return redistransport.New(req.Redis, req.Namespace, opts...)
	}
	if tc != nil {
		if u.Scheme != "rediss" {
			return nil, fmt.Errorf("%w: tls_* parameters need a rediss:// URL", core.ErrInvalidOption)
		}
		opts = append(opts, redistransport.WithTLSConfig(tc))
	}
	own := []string{"sharded", "max_payload", "channel_prefix", "client_name",
		"health_check_interval", "health_check_timeout",
		"tls_ca", "tls_cert", "tls_key", "tls_server_name"}
	return redistransport.Open(without(u, own).String(), req.Namespace, opts...)
}

func openNATS(_ context.Context, req TransportRequest) (core.Backplane, error) {
	u := req.URL
	if err := CheckParams(u, natsParams...); err != nil {
		return nil, err
	}
	p := &params{q: u.Query()}
	var opts []natstransport.Option
	opts = append(opts, natstransport.WithLogger(req.Logger))
	if v, ok := p.str("name"); ok {
		opts = append(opts, natstransport.WithName(v))
	}
	if v, ok := p.str("subject_prefix"); ok {
		opts = append(opts, natstransport.WithSubjectPrefix(v))
	}
	p.int("max_payload", func(n int) { opts = append(opts, natstransport.WithMaxPayload(n)) })
	p.duration("connect_timeout", func(d time.Duration) { opts = append(opts, natstransport.WithConnectTimeout(d)) })
	p.duration("reconnect_wait", func(d time.Duration) { opts = append(opts, natstransport.WithReconnectWait(d)) })
	p.duration("ping_interval", func(d time.Duration) { opts = append(opts, natstransport.WithPingInterval(d)) })
	p.duration("flush_timeout", func(d time.Duration) { opts = append(opts, natstransport.WithFlushTimeout(d)) })
	p.int("concurrent_publish", func(n int) { opts = append(opts, natstransport.WithConcurrentPublish(n)) })
	msgs, bytes := 0, 0
	p.int("pending_msgs", func(n int) { msgs = n })
	p.int("pending_bytes", func(n int) { bytes = n })
	opts = append(opts, natstransport.WithPendingLimits(msgs, bytes))
	if v, ok := p.str("token"); ok {
		opts = append(opts, natstransport.WithToken(v))
	}
	if v, ok := p.str("credentials"); ok {
		opts = append(opts, natstransport.WithCredentialsFile(v))
	}
	if v, ok := p.str("nkey"); ok {
		opts = append(opts, natstransport.WithNKeySeedFile(v))
	}
	tc := p.tlsConfig()
	if p.err != nil {
		return nil, p.err
	}
	if req.NATS != nil {
		return natstransport.New(req.NATS, req.Namespace, opts...)
	}
	if tc != nil {
		opts = append(opts, natstransport.WithTLSConfig(tc))
	}
	servers := []string{(&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}).String()}
	for _, a := range u.Query()["addr"] {
		if !strings.Contains(a, "://") {
			a = u.Scheme + "://" + a
		}
		servers = append(servers, a)
	}
	return natstransport.Open(strings.Join(servers, ","), req.Namespace, opts...)
}
