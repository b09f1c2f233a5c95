package redistransport

import (
	"crypto/tls"
	"errors"
	"net/url"
	"strconv"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// newClient parses rawURL: redis:// or rediss:// with the query parameters
// of redis.ParseURL; with one or more addr parameters or cluster=true, a
// cluster client from redis.ParseClusterURL.
func newClient(rawURL string, o Options, lastHandshake *atomic.Pointer[error]) (redis.UniversalClient, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, invalid("bad URL: %v", err)
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, invalid("URL scheme %q is not redis or rediss", u.Scheme)
	}
	q := u.Query()
	cluster := q.Has("addr")
	if v := q.Get("cluster"); v != "" {
		if cluster, err = strconv.ParseBool(v); err != nil {
			return nil, invalid("bad cluster parameter %q", v)
		}
		q.Del("cluster")
		u.RawQuery = q.Encode()
	}
	if cluster {
		co, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, invalid("URL: %v", err)
		}
		co.TLSConfig = mergeTLS(co.TLSConfig, o.TLSConfig)
		co.ClientName = o.ClientName
		co.ContextTimeoutEnabled = true
		co.Dialer = tlsDialer(co.DialTimeout, co.TLSConfig, lastHandshake)
		return redis.NewClusterClient(co), nil
	}
	ro, err := redis.ParseURL(u.String())
	if err != nil {
		return nil, invalid("URL: %v", err)
	}
	ro.TLSConfig = mergeTLS(ro.TLSConfig, o.TLSConfig)
	ro.ClientName = o.ClientName
	ro.ContextTimeoutEnabled = true
	ro.Dialer = tlsDialer(ro.DialTimeout, ro.TLSConfig, lastHandshake)
	return redis.NewClient(ro), nil
}

// mergeTLS returns the configuration the user gave, keeping the server name
// the URL implied when the user's configuration names none.
func mergeTLS(fromURL, given *tls.Config) *tls.Config {
	if given == nil {
		return fromURL
	}
	c := given.Clone()
	if c.ServerName == "" && fromURL != nil {
		c.ServerName = fromURL.ServerName
	}
	return c
}
