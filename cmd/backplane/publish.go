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
	var tags bool
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
entry cached under one of them (for the catalog example: category:NAME).`,
		Example: `  backplane invalidate nats://127.0.0.1:4222 --namespace catalog product:7
  backplane invalidate redis://127.0.0.1:6379 -n catalog product:7 product:8
  backplane invalidate nats://127.0.0.1:4222 -n catalog --tags category:shoes
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
			return runInvalidate(cmd.Context(), g, args[0], ns, keys, tags)
		},
	}
	addNamespaceFlag(cmd, &ns)
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
