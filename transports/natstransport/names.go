// Subject and URL checks, and the redaction of URLs for logs and errors.

package natstransport

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/backplane-go/backplane/core"
)

// validateSubject checks s against the NATS subject rules for a literal
// subject: non-empty tokens separated by '.', no wildcards, no whitespace or
// control characters.
func validateSubject(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for tok := range strings.SplitSeq(s, ".") {
		switch tok {
		case "":
			return errors.New("empty token (leading, trailing or double '.')")
		case "*", ">":
			return fmt.Errorf("wildcard token %q", tok)
		}
		for _, r := range tok {
			if r <= ' ' || r == 0x7f {
				return fmt.Errorf("invalid character %q", r)
			}
		}
	}
	return nil
}

func validateURLs(servers string) error {
	if strings.TrimSpace(servers) == "" {
		return fmt.Errorf("%w: natstransport: no server URL", core.ErrInvalidOption)
	}
	for s := range strings.SplitSeq(servers, ",") {
		s = strings.TrimSpace(s)
		u, err := url.Parse(s)
		if err != nil {
			// url.Parse's error quotes the URL; do not echo a password.
			return fmt.Errorf("%w: natstransport: malformed server URL", core.ErrInvalidOption)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return fmt.Errorf("%w: natstransport: server URL %s: scheme must be nats, tls, ws or wss", core.ErrInvalidOption, redactURL(u))
		}
		if u.Host == "" {
			return fmt.Errorf("%w: natstransport: server URL %s: no host", core.ErrInvalidOption, redactURL(u))
		}
	}
	return nil
}

func redactURLs(servers string) string {
	var out []string
	for s := range strings.SplitSeq(servers, ",") {
		if u, err := url.Parse(strings.TrimSpace(s)); err == nil {
			out = append(out, redactURL(u))
		}
	}
	return strings.Join(out, ",")
}

// redactURL hides a password, and a token given as the user part
// (nats://TOKEN@host), which url.URL.Redacted would show.
func redactURL(u *url.URL) string {
	if u.User == nil {
		return u.String()
	}
	c := *u
	if _, hasPassword := u.User.Password(); hasPassword {
		c.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		c.User = url.User("xxxxx")
	}
	return c.String()
}

// Subject returns the NATS subject the Transport publishes and subscribes
// to.
func (t *Transport) Subject() string { return t.subject }

// Conn returns the connection, or nil while a Transport made by Open has
// not connected yet.
func (t *Transport) Conn() *nats.Conn { return t.nc.Load() }

// Limits reports the largest payload: the server's max_payload, lowered to
// Options.MaxPayload if that is smaller; Options.ConcurrentPublish; and
// Durable in the JetStream mode.
//
// Before a Transport made by Open has connected, the server's value is not
// known, and Limits reports DefaultMaxPayload (or Options.MaxPayload). That
// answer is kept as a ceiling: Limits never reports more later, so a caller
// that read the limit early (core.New does) never builds payloads the
// Transport refuses, unless the server's max_payload is below
// DefaultMaxPayload. Against such a server, set WithMaxPayload or call
// Connect before reading Limits.
func (t *Transport) Limits() core.Limits {
	nc := t.nc.Load()
	n := t.maxPayload(nc)
	if nc == nil {
		t.ceiling.CompareAndSwap(0, int64(n))
	}
	return core.Limits{MaxPayload: n, ConcurrentPublish: t.opts.ConcurrentPublish, Durable: t.js != nil}
}

func (t *Transport) maxPayload(nc *nats.Conn) int {
	n := DefaultMaxPayload
	if nc != nil {
		if m := nc.MaxPayload(); m > 0 {
			n = int(m)
		}
		if c := int(t.ceiling.Load()); c > 0 && c < n {
			n = c
		}
	}
	if t.opts.MaxPayload > 0 && t.opts.MaxPayload < n {
		n = t.opts.MaxPayload
	}
	return n
}
