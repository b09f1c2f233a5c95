package transports

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

	"github.com/backplane-go/backplane/core"
)

// ErrUnknownScheme is wrapped by the error of Open for a URL whose scheme
// no transport registered.
var ErrUnknownScheme = errors.New("backplane: unknown transport scheme")

// ErrUnknownParameter is wrapped by the error of an opener for a URL query
// parameter it does not know.
var ErrUnknownParameter = errors.New("backplane: unknown parameter")

// Request is what an Opener gets.
type Request struct {
	// URL is the transport URL. The namespace parameter, which every
	// scheme accepts, has been removed from its query.
	URL *url.URL
	// Namespace is the namespace to open: the URL's namespace parameter if
	// it had one, else the namespace given to Open.
	Namespace string
	// Logger receives the transport's diagnostics. It is never nil.
	Logger *slog.Logger
	// Clients are clients the application already has (a
	// redis.UniversalClient, a *nats.Conn, ...), for example from its fx
	// graph. An opener uses the first one of its protocol instead of
	// dialling its own and never closes it; see Client.
	Clients []any
}

// Client returns the first of req.Clients that is a T.
func Client[T any](req Request) (T, bool) {
	for _, c := range req.Clients {
		if t, ok := c.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

// Opener opens a Backplane for a URL of its scheme. It does no I/O: the
// transport connects in Subscribe or Publish. It rejects query parameters
// it does not know with an error wrapping ErrUnknownParameter (see
// CheckParams).
type Opener func(ctx context.Context, req Request) (core.Backplane, error)

var registry = struct {
	sync.RWMutex
	m map[string]Opener
}{m: map[string]Opener{}}

// Register makes opener the transport for URLs of scheme (without "://",
// case-insensitive), replacing any earlier registration. It is meant to be
// called from an init function; it panics on an empty scheme or a nil
// opener.
func Register(scheme string, opener Opener) {
	scheme = strings.ToLower(scheme)
	if scheme == "" || opener == nil {
		panic("transports: Register with an empty scheme or a nil opener")
	}
	registry.Lock()
	defer registry.Unlock()
	registry.m[scheme] = opener
}

// Schemes returns the registered schemes, sorted.
func Schemes() []string {
	registry.RLock()
	defer registry.RUnlock()
	return slices.Sorted(maps.Keys(registry.m))
}

// packages names the package that registers each scheme of this module,
// for the error of a scheme whose package the application did not import.
var packages = map[string]string{
	"mem":        "memtransport",
	"redis":      "redistransport",
	"rediss":     "redistransport",
	"nats":       "natstransport",
	"tls":        "natstransport",
	"sb":         "servicebustransport",
	"servicebus": "servicebustransport",
	"postgres":   "pgtransport",
	"postgresql": "pgtransport",
	"amqp":       "rabbitmqtransport",
	"amqps":      "rabbitmqtransport",
}

// ImportHint returns, for a scheme of one of this module's transports,
// the import that registers it ("import _ \"github.com/.../natstransport\""),
// and "" for other schemes.
func ImportHint(scheme string) string {
	if p, ok := packages[strings.ToLower(scheme)]; ok {
		return `import _ "github.com/backplane-go/backplane/transports/` + p + `"`
	}
	return ""
}

// Option changes how Open opens a transport.
type Option func(*Request)

// WithClient offers client (a redis.UniversalClient, a *nats.Conn, ...)
// to the transport: a transport of its protocol uses it instead of
// dialling and never closes it; the URL's address, credentials and
// connection parameters are then ignored. A nil client is ignored.
func WithClient(client any) Option {
	return func(r *Request) {
		if client != nil {
			r.Clients = append(r.Clients, client)
		}
	}
}

// WithLogger sets the logger given to the transport. The default is
// slog.Default().
func WithLogger(l *slog.Logger) Option {
	return func(r *Request) {
		if l != nil {
			r.Logger = l
		}
	}
}

// Open opens the transport that rawURL names, for namespace (the URL's
// namespace query parameter overrides it). The scheme picks the
// registered opener; an unknown scheme fails with an error wrapping
// ErrUnknownScheme that lists the registered ones and, for a scheme of
// this module, the package to import. Open does no I/O. Error messages
// never contain the URL's password.
func Open(ctx context.Context, rawURL, namespace string, opts ...Option) (core.Backplane, error) {
	u, err := ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	registry.RLock()
	opener := registry.m[u.Scheme]
	registry.RUnlock()
	if opener == nil {
		msg := fmt.Sprintf("%q in %s (registered: %s)", u.Scheme, Redact(u), strings.Join(Schemes(), ", "))
		if hint := ImportHint(u.Scheme); hint != "" {
			msg += "; to use it, " + hint
		}
		return nil, fmt.Errorf("%w %s", ErrUnknownScheme, msg)
	}
	q := u.Query()
	if q.Has("namespace") {
		namespace = q.Get("namespace")
		q.Del("namespace")
		u.RawQuery = q.Encode()
	}
	if namespace == "" {
		return nil, fmt.Errorf("%w: empty namespace for %s (name the application's namespace, or add ?namespace=NAME to the URL)", core.ErrInvalidOption, Redact(u))
	}
	req := Request{URL: u, Namespace: namespace, Logger: slog.Default()}
	for _, o := range opts {
		if o != nil {
			o(&req)
		}
	}
	bp, err := opener(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", Redact(u), err)
	}
	return bp, nil
}

// ParseURL parses a transport URL without ever echoing its password, and
// lower-cases its scheme.
func ParseURL(rawURL string) (*url.URL, error) {
	if !strings.Contains(rawURL, "://") {
		return nil, fmt.Errorf("%w: transport URL %q has no scheme (registered: %s)",
			core.ErrInvalidOption, RedactRaw(rawURL), strings.Join(Schemes(), ", "))
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("%w: malformed transport URL: %v", core.ErrInvalidOption, err)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	return u, nil
}

// secretParams are query parameters whose values Redact hides.
var secretParams = []string{"token", "password", "key", "sslpassword"}

// Redact returns u for messages: a password, or a user name without a
// password (a NATS token), and secret query parameters become "xxxxx".
func Redact(u *url.URL) string {
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

// RedactRaw is Redact for a URL that may not parse: it hides everything
// between "//" and "@".
func RedactRaw(s string) string {
	if strings.Contains(s, "://") {
		if u, err := url.Parse(s); err == nil {
			return Redact(u)
		}
	}
	if at := strings.LastIndex(s, "@"); at >= 0 {
		start := strings.Index(s, "//")
		if start >= 0 && start < at {
			return s[:start+2] + "xxxxx" + s[at:]
		}
		return "xxxxx" + s[at:]
	}
	return s
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
