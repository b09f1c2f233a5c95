package fxmodule

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.uber.org/fx"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/transports"
)

// Module provides a *core.Cache built from the Config in the graph, and for
// advanced users the core.Backplane and core.LocalStore under it, and a
// HealthCheck for readiness probes.
//
// The graph must supply a Config (fx.Supply, or ConfigFromEnv or
// ConfigFromYAML) whose transport URL names a scheme that an imported
// transport package registered (import _ ".../transports/natstransport"
// for nats://; Module itself links only mem://). It may supply a
// *slog.Logger and a metric.MeterProvider, which the engine uses, and,
// with UseClient, a client the transport uses instead of dialling one.
//
// The constructor does no I/O. OnStart starts the cache: it dials,
// subscribes and waits until delivery is active, bounded by the start
// context and Config.StartTimeout; a failure fails the application's start
// with the cause. OnStop drains pending publishes (bounded by the stop
// context) and closes the cache, its transport and its store.
var Module = fx.Module("backplane",
	fx.Provide(New),
)

// clientGroup is the value group of the clients UseClient shares.
const clientGroup = `group:"backplane.clients"`

// UseClient makes the transport use the T in the graph (a
// redis.UniversalClient for redis:// and rediss://, a *nats.Conn for
// nats:// and tls://) instead of dialling one:
//
//	fx.Provide(newRedisClient),                  // returns redis.UniversalClient
//	fxmodule.UseClient[redis.UniversalClient](),
//
// The transport then ignores the URL's address, credentials and
// connection parameters and never closes the client. A transport of
// another protocol ignores it.
func UseClient[T any]() fx.Option {
	return fx.Provide(fx.Annotate(func(c T) any { return c }, fx.ResultTags(clientGroup)))
}

// ConfigFromEnv provides the Config from LoadEnv(prefix).
func ConfigFromEnv(prefix string) fx.Option {
	return fx.Provide(func() (Config, error) { return LoadEnv(prefix) })
}

// ConfigFromYAML provides the Config from LoadYAMLFile(path).
func ConfigFromYAML(path string) fx.Option {
	return fx.Provide(func() (Config, error) { return LoadYAMLFile(path) })
}

// Params are the inputs of New.
type Params struct {
	fx.In

	Config    Config
	Lifecycle fx.Lifecycle

	// Clients are the clients shared with UseClient; the transport uses
	// the first of its protocol instead of dialling.
	Clients []any `group:"backplane.clients"`
	// Logger, when present, receives the engine's and the transport's
	// logs. Default slog.Default().
	Logger *slog.Logger `optional:"true"`
	// MeterProvider, when present, receives the engine's metrics.
	MeterProvider metric.MeterProvider `optional:"true"`
	// Keyring, when present, signs every published message and rejects
	// unsigned and forged ones (core.Options.Keyring). Its keys are
	// secrets: provide it from the application's secret store. Every
	// instance of the namespace needs the same keys.
	Keyring *core.Keyring `optional:"true"`
}

// Result are the outputs of New.
type Result struct {
	fx.Out

	// Cache is the engine; it is started by the application's start.
	Cache *core.Cache
	// Backplane and Store are the Cache's transport and local store, for
	// advanced use (fault injection, metrics); the Cache owns and closes
	// them.
	Backplane core.Backplane
	Store     core.LocalStore
	// Health reports whether invalidations are flowing.
	Health HealthCheck
}

// New builds the cache, its transport and its store from p.Config and
// appends their start and stop to p.Lifecycle. It validates the
// configuration and opens the transport and store without I/O. Module
// provides it; call it directly to compose differently.
func New(p Params) (Result, error) {
	cfg := p.Config
	if err := cfg.Validate(); err != nil {
		return Result{}, fmt.Errorf("backplane config: %w", err)
	}
	log := p.Logger
	if log == nil {
		log = slog.Default()
	}
	ctx := context.Background()
	store, err := OpenStore(ctx, cfg.Store)
	if err != nil {
		return Result{}, err
	}
	openOpts := []OpenOption{WithTransportLogger(log)}
	for _, c := range p.Clients {
		openOpts = append(openOpts, WithClient(c))
	}
	bp, err := OpenBackplane(ctx, cfg.TransportURL, cfg.Namespace, openOpts...)
	if err != nil {
		_ = store.Close()
		return Result{}, err
	}
	if cfg.TransitionURL != "" {
		old, err := OpenBackplane(ctx, cfg.TransitionURL, cfg.Namespace, openOpts...)
		if err != nil {
			_ = bp.Close()
			_ = store.Close()
			return Result{}, fmt.Errorf("transition_url: %w", err)
		}
		bp = transports.Dual(bp, old)
	}
	opts := []core.Option{core.WithOptions(cfg.CoreOptions()), core.WithLogger(log)}
	if p.MeterProvider != nil {
		opts = append(opts, core.WithMeterProvider(p.MeterProvider))
	}
	if p.Keyring != nil {
		opts = append(opts, core.WithKeyring(p.Keyring))
	}
	c, err := core.New(store, bp, opts...)
	if err != nil {
		_ = bp.Close()
		_ = store.Close()
		return Result{}, fmt.Errorf("backplane: %w", err)
	}
	where := cfg.RedactedTransportURL()
	if cfg.TransitionURL != "" {
		where += " and " + transports.RedactRaw(cfg.TransitionURL)
	}
	p.Lifecycle.Append(fx.Hook{
		OnStart: func(ctx context.Context) error {
			if err := start(ctx, c, cfg.StartTimeout); err != nil {
				return fmt.Errorf("backplane: start over %s (namespace %q): %w", where, cfg.Namespace, err)
			}
			if err := checkMaxPayload(cfg, bp); err != nil {
				_ = c.Close()
				return fmt.Errorf("backplane: start over %s (namespace %q): %w", where, cfg.Namespace, err)
			}
			return nil
		},
		OnStop: func(ctx context.Context) error {
			return c.Shutdown(ctx)
		},
	})
	return Result{Cache: c, Backplane: bp, Store: store, Health: Check(c)}, nil
}

// checkMaxPayload rejects a max_payload above the transport's limit, as
// the transports reject a max_payload URL parameter above theirs. It runs
// once the transport is connected, when its limit is known.
func checkMaxPayload(cfg Config, bp core.Backplane) error {
	limit := bp.Limits().MaxPayload
	if cfg.MaxPayload > 0 && limit > 0 && cfg.MaxPayload > limit {
		return fmt.Errorf("%w: max_payload %d is above the transport's limit %d; lower it (or 0 for the transport's limit), or raise the transport's own limit where it has one (the max_payload URL parameter of mem:// and redis://, the server's max_payload for NATS)",
			core.ErrInvalidOption, cfg.MaxPayload, limit)
	}
	return nil
}

// start starts c within ctx and timeout. It returns when the deadline
// passes even if the transport does not honour it (a dial or handshake with
// a timeout of its own); c is then closed as soon as Start returns. On
// failure c is closed: fx does not run the OnStop of a hook whose OnStart
// failed.
func start(ctx context.Context, c *core.Cache, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- c.Start(ctx) }()
	select {
	case err := <-errc:
		if err != nil {
			_ = c.Close()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-errc
			_ = c.Close()
		}()
		return fmt.Errorf("delivery not active before the start deadline (start_timeout %v): %w", timeout, context.Cause(ctx))
	}
}

// Errors of a HealthCheck, besides core.ErrNotStarted. Match them with
// errors.Is.
var (
	// ErrDisconnected: the transport reported the link down.
	ErrDisconnected = errors.New("backplane: disconnected")
	// ErrSilent: the instance's own heartbeats stopped coming back, so
	// invalidations may not be flowing.
	ErrSilent = errors.New("backplane: link silent")
	// ErrSyncBroken: with Config.CanaryInterval, the instance's own canary
	// or a live peer's is overdue: invalidations are not getting through
	// although the connection looks fine.
	ErrSyncBroken = errors.New("backplane: invalidations not getting through (canary overdue)")
)

// HealthCheck reports whether invalidations are flowing: nil when the
// cache is started, connected, not silent and (with the canary on) in sync;
// otherwise an error wrapping core.ErrNotStarted, ErrDisconnected,
// ErrSilent or ErrSyncBroken, whose message also
// gives the last heartbeat seen and the last flush and its cause. Use it
// as (part of) a readiness probe. The context is not used yet; it is there
// so that checks can be composed with ones that do I/O.
type HealthCheck func(ctx context.Context) error

// Check returns the HealthCheck of c.
func Check(c *core.Cache) HealthCheck {
	return func(context.Context) error { return healthError(c.Health()) }
}

func healthError(h core.Health) error {
	var cause error
	switch {
	case !h.Started:
		return core.ErrNotStarted
	case !h.Connected:
		cause = ErrDisconnected
	case h.Silent:
		cause = ErrSilent
	case h.SyncBroken:
		cause = ErrSyncBroken
	default:
		return nil
	}
	detail := ""
	if !h.LastReceived.IsZero() {
		detail += fmt.Sprintf("; last message %s ago", time.Since(h.LastReceived).Round(time.Millisecond))
	}
	if !h.LastFlush.IsZero() {
		detail += fmt.Sprintf("; last flush %s ago (%s)", time.Since(h.LastFlush).Round(time.Millisecond), h.LastFlushCause)
	}
	if h.Degraded {
		detail += "; not caching until the link is back"
	}
	return fmt.Errorf("%w%s", cause, detail)
}
