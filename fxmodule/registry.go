package fxmodule

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
	"github.com/backplane-go/backplane/transports/memtransport"
)

// ErrUnknownScheme is wrapped by the error of OpenBackplane for a URL whose
// scheme no imported transport registered (transports.ErrUnknownScheme).
var ErrUnknownScheme = transports.ErrUnknownScheme

// ErrUnknownStore is wrapped by the error of OpenStore for a store name that
// no store registered.
var ErrUnknownStore = errors.New("fxmodule: unknown store")

// ErrUnknownParameter is wrapped by the error of an opener for a URL query
// parameter or store parameter it does not know
// (transports.ErrUnknownParameter).
var ErrUnknownParameter = transports.ErrUnknownParameter

// TransportRequest is what a TransportOpener gets.
type TransportRequest = transports.Request

// TransportOpener opens a Backplane for a URL of its scheme; see
// transports.Opener.
type TransportOpener = transports.Opener

// StoreOpener opens a LocalStore from its configuration. It does no I/O.
type StoreOpener func(ctx context.Context, cfg StoreConfig) (core.LocalStore, error)

var stores = struct {
	sync.RWMutex
	m map[string]StoreOpener
}{m: map[string]StoreOpener{}}

// RegisterTransport is transports.Register: it makes opener the transport
// for URLs of scheme. The transport packages of this module register their
// schemes themselves when imported.
func RegisterTransport(scheme string, opener TransportOpener) { transports.Register(scheme, opener) }

// RegisterStore makes opener the store called name (case-insensitive),
// replacing any earlier registration. It panics on an empty name or a nil
// opener.
func RegisterStore(name string, opener StoreOpener) {
	name = strings.ToLower(name)
	if name == "" || opener == nil {
		panic("fxmodule: RegisterStore with an empty name or a nil opener")
	}
	stores.Lock()
	defer stores.Unlock()
	stores.m[name] = opener
}

// Schemes returns the registered transport schemes, sorted: mem and those
// of the transport packages the application imports.
func Schemes() []string { return transports.Schemes() }

// Stores returns the registered store names, sorted.
func Stores() []string {
	stores.RLock()
	defer stores.RUnlock()
	return slices.Sorted(maps.Keys(stores.m))
}

// OpenOption changes how OpenBackplane opens a transport.
type OpenOption = transports.Option

// WithClient offers a client the application already has (a
// redis.UniversalClient for redis:// and rediss://, a *nats.Conn for
// nats:// and tls://) to the transport, which then uses it instead of
// dialling one, ignores the URL's address, credentials and connection
// parameters, and never closes it. A nil client is ignored.
func WithClient(client any) OpenOption { return transports.WithClient(client) }

// WithTransportLogger sets the logger given to the transport. The default
// is slog.Default().
var WithTransportLogger = transports.WithLogger

// OpenBackplane opens the transport that rawURL names, for namespace (the
// URL's namespace query parameter overrides it); see transports.Open. A
// scheme whose transport package the application did not import fails
// with an error wrapping ErrUnknownScheme that names the package. It does
// no I/O. Error messages never contain the URL's password.
func OpenBackplane(ctx context.Context, rawURL, namespace string, opts ...OpenOption) (core.Backplane, error) {
	bp, err := transports.Open(ctx, rawURL, namespace, opts...)
	if err != nil {
		return nil, fmt.Errorf("fxmodule: %w", err)
	}
	return bp, nil
}

// MemHub returns the process-wide in-process hub that mem://name URLs
// connect to (memtransport.SharedHub), creating it on first use. The hub
// of mem:// (no name) is called "default". Tests use it to inject faults.
func MemHub(name string, opts ...memtransport.HubOption) *memtransport.Hub {
	return memtransport.SharedHub(name, opts...)
}

// OpenStore opens the store cfg.Name names. An unknown name fails with an
// error wrapping ErrUnknownStore that lists the registered ones.
func OpenStore(ctx context.Context, cfg StoreConfig) (core.LocalStore, error) {
	name := strings.ToLower(cfg.Name)
	stores.RLock()
	opener := stores.m[name]
	stores.RUnlock()
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
// valid parameters, if u has a query parameter not in known; see
// transports.CheckParams.
func CheckParams(u *url.URL, known ...string) error { return transports.CheckParams(u, known...) }
