package transports

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/backplane-go/backplane/core"
)

// Params reads typed query parameters for an Opener, remembering the
// first error with the parameter's name (Err).
type Params struct {
	q   url.Values
	err error
}

// NewParams returns the Params of u's query.
func NewParams(u *url.URL) *Params { return &Params{q: u.Query()} }

// Err returns the first error, which wraps core.ErrInvalidOption and
// names the parameter and its value.
func (p *Params) Err() error { return p.err }

// Fail records an error about parameter name with value v.
func (p *Params) Fail(name, v string, err error) {
	if p.err == nil {
		p.err = fmt.Errorf("%w: query parameter %s=%q: %v", core.ErrInvalidOption, name, v, err)
	}
}

// Str returns the value of name and whether it is present.
func (p *Params) Str(name string) (string, bool) {
	if !p.q.Has(name) {
		return "", false
	}
	return p.q.Get(name), true
}

// Int calls set with the value of name, a non-negative integer, if present.
func (p *Params) Int(name string, set func(int)) {
	if v, ok := p.Str(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			p.Fail(name, v, err)
			return
		}
		if n < 0 {
			p.Fail(name, v, fmt.Errorf("negative"))
			return
		}
		set(n)
	}
}

// Duration calls set with the value of name, a duration, if present.
func (p *Params) Duration(name string, set func(time.Duration)) {
	if v, ok := p.Str(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			p.Fail(name, v, err)
			return
		}
		set(d)
	}
}

// Bool calls set with the value of name, a boolean, if present.
func (p *Params) Bool(name string, set func(bool)) {
	if v, ok := p.Str(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			p.Fail(name, v, err)
			return
		}
		set(b)
	}
}

// TLSConfig builds a TLS configuration from tls_ca, tls_cert, tls_key and
// tls_server_name, or returns nil when none is set.
func (p *Params) TLSConfig() *tls.Config {
	ca, hasCA := p.Str("tls_ca")
	cert, hasCert := p.Str("tls_cert")
	key, hasKey := p.Str("tls_key")
	name, hasName := p.Str("tls_server_name")
	if !hasCA && !hasCert && !hasKey && !hasName {
		return nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: name}
	if hasCA {
		pem, err := os.ReadFile(ca)
		if err != nil {
			p.Fail("tls_ca", ca, err)
			return nil
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			p.Fail("tls_ca", ca, fmt.Errorf("no PEM certificate in the file"))
			return nil
		}
	}
	if hasCert != hasKey {
		p.Fail("tls_cert", cert, fmt.Errorf("tls_cert and tls_key go together"))
		return nil
	}
	if hasCert {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			p.Fail("tls_cert", cert, err)
			return nil
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c
}

// Without returns u with the query parameters in names removed.
func Without(u *url.URL, names ...string) *url.URL {
	c := *u
	q := c.Query()
	for _, n := range names {
		q.Del(n)
	}
	c.RawQuery = q.Encode()
	return &c
}
