package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"
)

func newInvalidateCmd(g *globals) *cobra.Command {
	var ns, keysFrom string
	var tags, ack bool
	var beat time.Duration
	cmd := &cobra.Command{
		Use:   "invalidate URL KEY...",
		Short: "Evict keys (or tags) on every instance of a namespace now",
		Long: `invalidate publishes an invalidation of the given keys, exactly as an
application instance does after a write: every instance subscribed to the
namespace evicts those keys and reloads them on next use. It returns once the
message is on the broker.

Keys are the application's cache keys (for the catalog example:
product:ID). --keys-from reads more keys, one per line ("-" for stdin).
With --tags the arguments are tags: every instance stops serving every
entry cached under one of them (for the catalog example: category:NAME).

With --ack, invalidate returns only once every live instance confirmed that
it evicted (core.Cache.InvalidateAcked), and fails naming those that did not
(the invalidation still reaches them). It listens first for three
--heartbeat intervals (the fleet's heartbeat_interval), so that it knows
every live instance.`,
		Example: `  backplane invalidate nats://127.0.0.1:4222 --namespace catalog product:7
  backplane invalidate redis://127.0.0.1:6379 -n catalog product:7 product:8
  backplane invalidate nats://127.0.0.1:4222 -n catalog --tags category:shoes
  backplane invalidate redis://127.0.0.1:6379 -n catalog --ack product:7
  psql -Atc "select 'product:'||id from changed" | backplane invalidate nats://127.0.0.1:4222 -n catalog --keys-from -`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef("missing the broker URL and the keys (for example: invalidate nats://127.0.0.1:4222 -n catalog product:7)")
			}
			if !strings.Contains(args[0], "://") {
				return usagef("%q is not a broker URL: invalidate takes the URL first, then the keys (for example: invalidate nats://127.0.0.1:4222 -n catalog %s); URL forms: %s", args[0], args[0], urlExamples)
			}
			if len(args) == 1 && keysFrom == "" {
				return usagef("missing the keys to invalidate after the URL")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			keys := args[1:]
			if keysFrom != "" {
				more, err := readKeys(g, keysFrom)
				if err != nil {
					return err
				}
				keys = append(keys, more...)
			}
			if beat <= 0 {
				return usagef("--heartbeat must be positive")
			}
			if ack {
				return runInvalidateAcked(cmd.Context(), g, args[0], ns, keys, tags, beat)
			}
			return runInvalidate(cmd.Context(), g, args[0], ns, keys, tags)
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().BoolVar(&ack, "ack", false, "return only once every live instance confirmed the eviction")
	cmd.Flags().DurationVar(&beat, "heartbeat", time.Second, "with --ack: the fleet's heartbeat interval")
	cmd.Flags().BoolVar(&tags, "tags", false, "the arguments are tags, not keys: evict every entry cached under them")
	cmd.Flags().StringVar(&keysFrom, "keys-from", "", `read more keys from FILE, one per line ("-" for stdin)`)
	return cmd
}

func readKeys(g *globals, path string) ([]string, error) {
	var r io.Reader = g.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, usagef("--keys-from: %v", err)
		}
		defer f.Close()
		r = f
	}
	var keys []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		if k := strings.TrimSpace(sc.Text()); k != "" {
			keys = append(keys, k)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--keys-from: %w", err)
	}
	return keys, nil
}

func checkKeys(keys []string) error {
	if len(keys) == 0 {
		return usagef("no keys to invalidate")
	}
	for _, k := range keys {
		if k == "" {
			return usagef("empty key")
		}
		if len(k) > core.MaxKeyLen {
			return usagef("key %.20q… is %d bytes long; the longest key is %d bytes", k, len(k), core.MaxKeyLen)
		}
	}
	return nil
}

func runInvalidate(ctx context.Context, g *globals, rawURL, ns string, keys []string, tags bool) error {
	if err := requireNamespace(rawURL, ns); err != nil {
		return err
	}
	if err := checkKeys(keys); err != nil {
		return err
	}
	what := "key(s)"
	if tags {
		what = "tag(s)"
	}
	return publishWith(ctx, g, rawURL, ns, func(ctx context.Context, c *core.Cache) error {
		if tags {
			return c.InvalidateTags(ctx, keys...)
		}
		return c.Invalidate(ctx, keys...)
	}, func(d time.Duration) string {
		return fmt.Sprintf("invalidated %d %s in namespace %q on %s (on the broker after %s)",
			len(keys), what, nsOf(rawURL, ns), redact(rawURL), fmtDur(d, true))
	})
}

// runInvalidateAcked is invalidate --ack: an engine that takes part in the
// fleet's heartbeats, so that it knows the live instances, and waits for
// their confirmations.
func runInvalidateAcked(ctx context.Context, g *globals, rawURL, ns string, keys []string, tags bool, beat time.Duration) error {
	if err := requireNamespace(rawURL, ns); err != nil {
		return err
	}
	if err := checkKeys(keys); err != nil {
		return err
	}
	c, err := g.openCache(ctx, rawURL, ns, nil, core.WithHeartbeat(beat, 3*beat), core.WithAckTimeout(g.timeout))
	if err != nil {
		return err
	}
	defer c.Close()
	// The peer table is complete after a heartbeat timeout; the call waits
	// for that by itself, within --timeout on top.
	pctx, cancel := context.WithTimeout(ctx, 3*beat+g.timeout)
	defer cancel()
	start := time.Now()
	if tags {
		err = c.InvalidateTagsAcked(pctx, keys...)
	} else {
		err = c.InvalidateAcked(pctx, keys...)
	}
	took := time.Since(start)
	what := "key(s)"
	if tags {
		what = "tag(s)"
	}
	var ae *core.AckError
	switch {
	case errors.As(err, &ae):
		for _, p := range ae.Peers {
			fmt.Fprintf(g.stdout, "not confirmed: instance %s (%s)\n", p.ID, p.Reason)
		}
		return fmt.Errorf("invalidated %d %s on the broker, but %d of %d live instances did not confirm; the invalidation still reaches them",
			len(keys), what, len(ae.Peers), len(ae.Peers)+ae.Confirmed)
	case errors.Is(err, core.ErrTooManyKeys):
		return usagef("%v", err)
	case err != nil:
		return fmt.Errorf("publish failed, nothing was invalidated on the other instances: %w", classify(pctx, rawURL, g.timeout, err))
	}
	fmt.Fprintf(g.stdout, "invalidated %d %s in namespace %q on %s, confirmed by all %d live instances (after %s, %s of it listening for them)\n",
		len(keys), what, nsOf(rawURL, ns), redact(rawURL), c.Health().Peers, fmtDur(took, true), fmtDur(3*beat, true))
	return nil
}

// publishWith opens an engine on the namespace, runs op, and closes the
// engine once the message is on the broker.
func publishWith(ctx context.Context, g *globals, rawURL, ns string, op func(context.Context, *core.Cache) error, done func(time.Duration) string) error {
	c, err := g.openCache(ctx, rawURL, ns, nil, core.WithHeartbeat(0, 0))
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	start := time.Now()
	err = op(pctx, c)
	took := time.Since(start)
	cerr := c.Close()
	if err != nil {
		if errors.Is(err, core.ErrTooManyKeys) {
			return usagef("%v", err)
		}
		return fmt.Errorf("publish failed, nothing was invalidated on the other instances: %w", classify(pctx, rawURL, g.timeout, err))
	}
	if cerr != nil && !errors.Is(cerr, core.ErrClosed) {
		fmt.Fprintf(g.stderr, "warning: closing the connection: %v\n", cerr)
	}
	fmt.Fprintln(g.stdout, done(took))
	return nil
}

func newClearCmd(g *globals) *cobra.Command {
	var ns string
	var yes bool
	cmd := &cobra.Command{
		Use:   "clear URL",
		Short: "Empty the cache of every instance of a namespace",
		Long: `clear publishes a clear message: every instance subscribed to the namespace
drops all its cached entries and reloads them from the database on next use
(a cold cache: expect more database load for a while).

clear asks for confirmation on the terminal unless --yes. Without a terminal
(scripts, CI) it refuses unless --yes is given (exit code 2).`,
		Example: `  backplane clear nats://127.0.0.1:4222 --namespace catalog
  backplane clear redis://127.0.0.1:6379 -n catalog --yes`,
		Args: urlArg(0, ""),
		RunE: func(cmd *cobra.Command, args []string) error {
			rawURL := args[0]
			if err := requireNamespace(rawURL, ns); err != nil {
				return err
			}
			if !yes {
				if err := confirm(g, fmt.Sprintf("Clear every cache in namespace %q on %s? Every instance drops all entries.", nsOf(rawURL, ns), redact(rawURL))); err != nil {
					return err
				}
			}
			return publishWith(cmd.Context(), g, rawURL, ns, func(ctx context.Context, c *core.Cache) error {
				return c.Clear(ctx)
			}, func(d time.Duration) string {
				return fmt.Sprintf("cleared namespace %q on %s (on the broker after %s)", nsOf(rawURL, ns), redact(rawURL), fmtDur(d, true))
			})
		},
	}
	addNamespaceFlag(cmd, &ns)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// confirm asks on the terminal; without one it refuses.
func confirm(g *globals, question string) error {
	if !isTerminal(g.stdin) {
		return usagef("refusing to clear without confirmation: no terminal to ask on; pass --yes to clear")
	}
	fmt.Fprintf(g.stderr, "%s\nType yes to continue: ", question)
	line, _ := bufio.NewReader(g.stdin).ReadString('\n')
	if strings.TrimSpace(strings.ToLower(line)) != "yes" {
		return abortedError{"not confirmed; nothing was cleared"}
	}
	return nil
}
