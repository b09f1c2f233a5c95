package fxmodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/backplane-go/backplane/core"
)

// ErrUnknownScheme is wrapped by the error of OpenBackplane for a URL whose
// scheme no transport registered.
var ErrUnknownScheme = errors.New("fxmodule: unknown transport scheme")

// ErrUnknownStore is wrapped by the error of OpenStore for a store name that
// no store registered.
var ErrUnknownStore = errors.New("fxmodule: unknown store")

// ErrUnknownParameter is wrapped by the error of an opener for a URL query
// parameter or store parameter it does not know.
var ErrUnknownParameter = errors.New("fxmodule: unknown parameter")

// TransportRequest is what a TransportOpener gets.
type TransportRequest struct {
	// URL is the transport URL. The namespace parameter, which every
	// scheme accepts, has been removed from its query.
	URL *url.URL
	// Namespace is the namespace to open: the URL's namespace parameter if
	// it had one, else the namespace given to OpenBackplane.
	Namespace string
	// Logger receives the transport's diagnostics. It is never nil.
	Logger *slog.Logger
	// Redis and NATS are clients the application already has (for example
	// from its fx graph), or nil. An opener for their protocol uses such a
	// client instead of dialling its own and never closes it.
	Redis redis.UniversalClient
	NATS  *nats.Conn
}

// TransportOpener opens a Backplane for a URL of its scheme. It does no
// I/O: the transport connects in Subscribe or Publish. It rejects query
// parameters it does not know with an error wrapping ErrUnknownParameter
// (see CheckParams).
type TransportOpener func(ctx context.Context, req TransportRequest) (core.Backplane, error)

// StoreOpener opens a LocalStore from its configuration. It does no I/O.
type StoreOpener func(ctx context.Context, cfg StoreConfig) (core.LocalStore, error)

var registry = struct {
	sync.RWMutex
	transports map[string]TransportOpener
	stores     map[string]StoreOpener
}{
	transports: map[string]TransportOpener{},
	stores:     map[string]StoreOpener{},
}

// RegisterTransport makes opener the transport for URLs of scheme (without
// "://", case-insensitive), replacing any earlier registration. It is meant
// to be called from an init function; it panics on an empty scheme or a nil
// opener.
func RegisterTransport(scheme string, opener TransportOpener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || opener == nil {
		panic("fxmodule: RegisterTransport with an empty scheme or a nil opener")
	}
	registry.Lock()
	defer registry.Unlock()
	registry.transports[scheme] = opener
}

// RegisterStore makes opener the store called name (case-insensitive),
// replacing any earlier registration. It panics on an empty name or a nil
// opener.
func RegisterStore(name string, opener StoreOpener) {
	name = strings.ToLower(name)
	if name == "" || opener == nil {
		panic("fxmodule: RegisterStore with an empty name or a nil opener")
	}
	registry.Lock()
	defer registry.Unlock()
	registry.stores[name] = opener
}

// Schemes returns the registered transport schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Sorted(maps.Keys(registry.transports))
}

// Stores returns the registered store names, sorted.
func Stores() []string {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Sorted(maps.Keys(registry.stores))
}

// OpenOption changes how OpenBackplane opens a transport.
type OpenOption func(*TransportRequest)

// WithRedisClient makes redis:// and rediss:// URLs use client instead of
// dialling one; the URL's address, credentials and go-redis parameters are
// then ignored, and the client is never closed by the transport.
func WithRedisClient(client redis.UniversalClient) OpenOption {
	return func(r *TransportRequest) { r.Redis = client }
}

// WithNATSConn makes nats:// and tls:// URLs use nc instead of dialling
// one; the URL's servers and connection parameters are then ignored, and
// nc is never closed by the transport.
func WithNATSConn(nc *nats.Conn) OpenOption {
	return func(r *TransportRequest) { r.NATS = nc }
}

// WithTransportLogger sets the logger given to the transport. The default
// is slog.Default().
func WithTransportLogger(l *slog.Logger) OpenOption {
	return func(r *TransportRequest) {
		if l != nil {
			r.Logger = l
		}
	}
}

// OpenBackplane opens the transport that rawURL names, for namespace (the
// URL's namespace query parameter overrides it). The scheme picks the
// registered opener; an unknown scheme fails with an error wrapping
// ErrUnknownScheme that lists the registered ones. OpenBackplane does no
// I/O. Error messages never contain the URL's password.
func OpenBackplane(ctx context.Context, rawURL, namespace string, opts ...OpenOption) (core.Backplane, error) {
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	registry.RLock()
	opener := registry.transports[u.Scheme]
	registry.RUnlock()
	if opener == nil {
		return nil, fmt.Errorf("%w %q in %s (registered: %s)", ErrUnknownScheme, u.Scheme, redact(u), strings.Join(Schemes(), ", "))
	}
	q := u.Query()
	if q.Has("namespace") {
		namespace = q.Get("namespace")
		q.Del("namespace")
		u.RawQuery = q.Encode()
	}
	if namespace == "" {
		return nil, fmt.Errorf("%w: fxmodule: empty namespace for %s", core.ErrInvalidOption, redact(u))
	}
	req := TransportRequest{URL: u, Namespace: namespace, Logger: slog.Default()}
	for _, o := range opts {
		if o != nil {
			o(&req)
		}
	}
	bp, err := opener(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("fxmodule: open %s: %w", redact(u), err)
	}
	return bp, nil
}

// parseURL parses a transport URL without ever echoing its password.
func parseURL(rawURL string) (*url.URL, error) {
	if !strings.Contains(rawURL, "://") {
		return nil, fmt.Errorf("%w: fxmodule: transport URL %q has no scheme (registered: %s)",
			core.ErrInvalidOption, redactRaw(rawURL), strings.Join(Schemes(), ", "))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: fxmodule: malformed transport URL: %v", core.ErrInvalidOption, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

// secretParams are query parameters whose values redact hides.
var secretParams = []string{"token", "password", "key"}

// redact returns u for messages: a password, or a user name without a
// password (a NATS token), and secret query parameters become "xxxxx".
func redact(u *url.URL) string {
	c := *u
	if c.User != nil {
		if _, has := c.User.Password(); has {
			c.User = url.UserPassword(c.User.Username(), "xxxxx")
		} else {
			c.User = url.User("xxxxx")
		}
	}
	q := c.Query()
	hidden := false
	for _, k := range secretParams {
		if q.Has(k) {
			q.Set(k, "xxxxx")
			hidden = true
		}
	}
	if hidden {
		c.RawQuery = q.Encode()
	}
	return c.String()
}

// redactRaw hides everything between "//" and "@" of a URL that did not
// parse.
func redactRaw(s string) string {
	if at := strings.LastIndex(s, "@"); at >= 0 {
		start := strings.Index(s, "//")
		if start >= 0 && start < at {
			return s[:start+2] + "xxxxx" + s[at:]
		}
		return "xxxxx" + s[at:]
	}
	return s
}

// OpenStore opens the store cfg.Name names. An unknown name fails with an
// error wrapping ErrUnknownStore that lists the registered ones.
func OpenStore(ctx context.Context, cfg StoreConfig) (core.LocalStore, error) {
	name := strings.ToLower(cfg.Name)
	registry.RLock()
	opener := registry.stores[name]
	registry.RUnlock()
	if opener == nil {
		return nil, fmt.Errorf("%w %q (registered: %s)", ErrUnknownStore, cfg.Name, strings.Join(Stores(), ", "))
	}
	s, err := opener(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("fxmodule: open store %s: %w", name, err)
	}
	return s, nil
}

// CheckParams returns an error wrapping ErrUnknownParameter, naming the
// valid parameters, if u has a query parameter not in known. Openers call
// it first.
func CheckParams(u *url.URL, known ...string) error {
	var unknown []string
	for k := range u.Query() {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	valid := append([]string{"namespace"}, known...)
	slices.Sort(valid)
	return fmt.Errorf("%w %s for %s:// (valid: %s)", ErrUnknownParameter,
		strings.Join(quoteAll(unknown), ", "), u.Scheme, strings.Join(slices.Compact(valid), ", "))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
