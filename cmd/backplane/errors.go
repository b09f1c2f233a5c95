package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
)

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// connectError is a broker that cannot be reached: exit code 3.
type connectError struct{ msg string }

func (e connectError) Error() string { return e.msg }

// abortedError is a declined confirmation: exit code 4.
type abortedError struct{ msg string }

func (e abortedError) Error() string { return e.msg }

// silentError is a failure whose details the command already printed:
// exit code 1 with a short line.
type silentError struct{ msg string }

func (e silentError) Error() string { return e.msg }

func exitCode(err error) int {
	var (
		ue usageError
		ce connectError
		ae abortedError
	)
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ce):
		return exitConnect
	case errors.As(err, &ae):
		return exitAborted
	case errors.Is(err, errInterrupted):
		return exitInterrupted
	}
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.HasPrefix(msg, p) {
			return exitUsage
		}
	}
	return exitFailure
}

// errInterrupted marks a command stopped by Ctrl-C.
var errInterrupted = errors.New("interrupted")

// interrupted returns errInterrupted if ctx ended by a signal, else err.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(context.Cause(ctx), context.Canceled) {
		return errInterrupted
	}
	return err
}

const urlExamples = "nats://127.0.0.1:4222, tls://host:4222, redis://127.0.0.1:6379/0, rediss://host:6380, sb://host?key_name=K&key=S, postgres://user:pass@host:5432/db, mem://"

// redact returns rawURL without its password, for messages.
func redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		if i := strings.LastIndex(rawURL, "@"); i >= 0 {
			return "xxxxx" + rawURL[i:]
		}
		return rawURL
	}
	return u.Redacted()
}

// hostOf returns the host:port a URL points at, for messages.
func hostOf(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil && u.Host != "" {
		return u.Host
	}
	return redact(rawURL)
}

// classify turns an error of opening or using a transport into an error
// that names the fix, with the right exit code.
func classify(ctx context.Context, rawURL string, timeout time.Duration, err error) error {
	if err == nil {
		return nil
	}
	if ie := interrupted(ctx, nil); ie != nil {
		return ie
	}
	var ue usageError
	if errors.As(err, &ue) {
		return err
	}
	host := hostOf(rawURL)
	msg := err.Error()
	lower := strings.ToLower(msg)
	var dnsErr *net.DNSError
	var certErr x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	switch {
	case errors.Is(err, fxmodule.ErrUnknownScheme):
		return usagef("bad URL %s: unknown scheme; use one of %s", redact(rawURL), urlExamples)
	case errors.Is(err, fxmodule.ErrUnknownParameter), errors.Is(err, core.ErrInvalidOption):
		return usagef("bad URL %s: %s\n(URL forms: %s)", redact(rawURL), trimPrefixes(msg), urlExamples)
	case errors.As(err, &dnsErr) || strings.Contains(lower, "no such host"):
		return connectError{fmt.Sprintf("cannot connect to %s: host not found; check the host name in the URL (%v)", host, lastCause(err))}
	case strings.Contains(lower, "authorization violation"), strings.Contains(lower, "noauth"),
		strings.Contains(lower, "wrongpass"), strings.Contains(lower, "authentication"),
		strings.Contains(lower, "invalid username-password"), strings.Contains(lower, "user is not authorized"),
		strings.Contains(lower, "noperm"):
		return connectError{fmt.Sprintf("cannot connect to %s: authentication failed; put the right credentials in the URL (nats://user:pass@host:4222, redis://user:pass@host:6379) or pass token=/credentials= (NATS)\n(broker said: %v)", host, lastCause(err))}
	case strings.Contains(lower, "no tls handshake"):
		return connectError{fmt.Sprintf("cannot connect to %s: the server did not complete a TLS handshake (within %v); a rediss:// URL needs a TLS server: use redis:// for a plain one", host, timeout)}
	case strings.Contains(lower, "did not answer as a nats server"):
		return connectError{fmt.Sprintf("cannot connect to %s: it accepted the connection but did not answer as a NATS server within %v; is it the right port (NATS 4222, Redis 6379) and the right scheme (nats://, tls:// for TLS, redis:// for Redis)?", host, timeout)}
	case errors.As(err, &certErr), errors.As(err, &hostErr), strings.Contains(lower, "x509:"), strings.Contains(lower, "tls:"),
		strings.Contains(lower, "tls handshake"), strings.Contains(lower, "tls required"), strings.Contains(lower, "secure connection"):
		return connectError{fmt.Sprintf("cannot connect to %s: TLS failed; use tls:// or rediss:// for a TLS broker (nats:// or redis:// for a plain one) and give the CA with tls_ca=FILE\n(%v)", host, lastCause(err))}
	case strings.Contains(lower, "connection refused"), strings.Contains(lower, "no servers available"):
		return connectError{fmt.Sprintf("cannot connect to %s: connection refused; is the broker running there? Check the host and port in the URL", host)}
	case strings.Contains(lower, "can't parse"), strings.Contains(lower, "protocol error"), strings.Contains(lower, "unexpected"):
		return connectError{fmt.Sprintf("cannot connect to %s: the server does not speak the protocol of the URL's scheme; is it the right port (NATS 4222, Redis 6379) and the right scheme?\n(%v)", host, lastCause(err))}
	case errors.Is(err, context.DeadlineExceeded), strings.Contains(lower, "timeout"), strings.Contains(lower, "timed out"):
		hint := "check that the address is reachable from here (firewall, port) or raise --timeout"
		if u, perr := url.Parse(rawURL); perr == nil && (u.Scheme == "rediss" || u.Scheme == "tls") {
			hint = "a " + u.Scheme + ":// URL needs a TLS server: use " + map[string]string{"rediss": "redis", "tls": "nats"}[u.Scheme] + ":// for a plain one; else " + hint
		}
		return connectError{fmt.Sprintf("cannot connect to %s: no answer within %v; %s", host, timeout, hint)}
	case strings.Contains(lower, "connection reset"), strings.Contains(lower, "eof"), strings.Contains(lower, "broken pipe"):
		return connectError{fmt.Sprintf("cannot connect to %s: the server closed the connection; is it the right kind of broker for the URL scheme, and does it need TLS? (%v)", host, lastCause(err))}
	}
	return connectError{fmt.Sprintf("cannot connect to %s: %v", host, trimPrefixes(msg))}
}

// lastCause returns the innermost error's message.
func lastCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// trimPrefixes drops the package prefixes that mean nothing to an operator.
func trimPrefixes(msg string) string {
	for _, p := range []string{"fxmodule: ", "backplane: invalid option: ", "backplane: ", "natstransport: ", "redistransport: ", "servicebustransport: ", "pgtransport: ", "rabbitmqtransport: "} {
		msg = strings.ReplaceAll(msg, p, "")
	}
	return msg
}
