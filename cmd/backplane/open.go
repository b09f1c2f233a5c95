package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
	"github.com/backplane-go/backplane/fxmodule"
	"github.com/backplane-go/backplane/stores/bigcachestore"
	"github.com/backplane-go/backplane/stores/otterstore"
)

// namespaceEnv supplies --namespace's default.
const namespaceEnv = "BACKPLANE_NAMESPACE"

// addNamespaceFlag adds --namespace (-n) to cmd.
func addNamespaceFlag(cmd *cobra.Command, ns *string) {
	cmd.Flags().StringVarP(ns, "namespace", "n", os.Getenv(namespaceEnv),
		"namespace of the application's caches (default $"+namespaceEnv+"; a namespace= URL parameter also works)")
}

// requireNamespace returns a usage error when neither --namespace nor the
// URL names a namespace.
func requireNamespace(rawURL, ns string) error {
	if ns != "" {
		return nil
	}
	if u, err := url.Parse(rawURL); err == nil && u.Query().Get("namespace") != "" {
		return nil
	}
	return usagef("no namespace: name the application's namespace with --namespace NAME (or $%s, or ?namespace=NAME in the URL)", namespaceEnv)
}

// randomNamespace returns a namespace no application uses, for commands
// that must not disturb anyone on a shared broker.
func randomNamespace(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// openBackplane opens and connects the transport rawURL names. Errors are
// classified (see classify).
func (g *globals) openBackplane(ctx context.Context, rawURL, ns string) (core.Backplane, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	bp, err := fxmodule.OpenBackplane(ctx, rawURL, ns, fxmodule.WithTransportLogger(g.logger()))
	if err != nil {
		return nil, classify(ctx, rawURL, g.timeout, err)
	}
	// Transports that can dial eagerly do it now, so that a wrong URL
	// fails here with its cause.
	if c, ok := bp.(interface{ Connect(context.Context) error }); ok {
		if err := c.Connect(ctx); err != nil {
			_ = bp.Close()
			return nil, classify(ctx, rawURL, g.timeout, err)
		}
	}
	return bp, nil
}

// subscribe subscribes bp to h within --timeout.
func (g *globals) subscribe(ctx context.Context, rawURL string, bp core.Backplane, h core.Handler) error {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := bp.Subscribe(ctx, h); err != nil {
		return classify(ctx, rawURL, g.timeout, err)
	}
	return nil
}

// storeNames are the local stores the CLI's engines can run on.
var storeNames = []string{"bigcache", "otter"}

// newStore returns a small local store for the CLI's own engines: name is
// "bigcache" or "otter".
func newStore(name string) (core.LocalStore, error) {
	switch name {
	case "bigcache":
		cfg := bigcachestore.DefaultConfig()
		cfg.Shards, cfg.HardMaxCacheSize, cfg.MaxEntriesInWindow = 16, 16, 1000
		return bigcachestore.New(cfg)
	case "otter":
		cfg := otterstore.DefaultConfig()
		cfg.MaxBytes = 16 << 20
		return otterstore.New(cfg)
	}
	return nil, usagef("unknown store %q (stores: %s)", name, strings.Join(storeNames, ", "))
}

// openCache opens an engine over the transport rawURL names, wrapping the
// transport with wrap if it is not nil.
func (g *globals) openCache(ctx context.Context, rawURL, ns string, wrap func(core.Backplane) core.Backplane, opts ...core.Option) (*core.Cache, error) {
	return g.openCacheOn(ctx, "bigcache", rawURL, ns, wrap, opts...)
}

// openCacheOn is openCache over the local store storeName (see newStore).
func (g *globals) openCacheOn(ctx context.Context, storeName, rawURL, ns string, wrap func(core.Backplane) core.Backplane, opts ...core.Option) (*core.Cache, error) {
	store, err := newStore(storeName)
	if err != nil {
		return nil, err
	}
	bp, err := g.openBackplane(ctx, rawURL, ns)
	if err != nil {
		_ = store.Close()
		return nil, err
	}
	if wrap != nil {
		bp = wrap(bp)
	}
	opts = append([]core.Option{core.WithLogger(g.logger()), core.WithPublishTimeout(g.timeout)}, opts...)
	if g.keyring != nil {
		opts = append(opts, core.WithKeyring(g.keyring))
	}
	c, err := core.New(store, bp, opts...)
	if err != nil {
		_ = bp.Close()
		_ = store.Close()
		return nil, err
	}
	sctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	if err := c.Start(sctx); err != nil {
		_ = c.Close()
		return nil, classify(sctx, rawURL, g.timeout, err)
	}
	return c, nil
}
