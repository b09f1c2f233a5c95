package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/backplane-go/backplane/core"

	// The operator tool speaks every scheme of this module.
	_ "github.com/backplane-go/backplane/transports/memtransport"
	_ "github.com/backplane-go/backplane/transports/natstransport"
	_ "github.com/backplane-go/backplane/transports/pgtransport"
	_ "github.com/backplane-go/backplane/transports/rabbitmqtransport"
	_ "github.com/backplane-go/backplane/transports/redistransport"
	_ "github.com/backplane-go/backplane/transports/servicebustransport"
)

// loadKeyring reads --signing-key ID:FILE values; the file holds the
// secret (a trailing newline is ignored).
func loadKeyring(specs []string) (*core.Keyring, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	var keys []core.SigningKey
	for _, spec := range specs {
		id, file, ok := strings.Cut(spec, ":")
		if !ok || id == "" || file == "" {
			return nil, usagef("--signing-key %q: want ID:FILE, FILE holding the secret", spec)
		}
		secret, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("--signing-key %s: %v", id, err)
		}
		keys = append(keys, core.SigningKey{ID: id, Secret: bytes.TrimRight(secret, "\r\n")})
	}
	k, err := core.NewKeyring(keys...)
	if err != nil {
		return nil, usagef("--signing-key: %v", strings.TrimPrefix(err.Error(), "backplane: invalid option: "))
	}
	return k, nil
}

// Exit codes, documented in the package documentation and in --help.
const (
	exitOK          = 0
	exitFailure     = 1
	exitUsage       = 2
	exitConnect     = 3
	exitAborted     = 4
	exitInterrupted = 130
)

const exitCodesHelp = `Exit codes:
  0    success
  1    failure (a check failed, the demo saw a stale read, a publish failed)
  2    usage (bad arguments, flags or URL; clear refused without confirmation)
  3    cannot connect (broker unreachable, unknown host, TLS or authentication failure)
  4    aborted (clear was not confirmed)
  130  interrupted (Ctrl-C)`

// globals are the persistent flags.
type globals struct {
	timeout time.Duration
	verbose bool
	keys    []string
	keyring *core.Keyring
	stdout  io.Writer
	stderr  io.Writer
	stdin   io.Reader
}

// logger returns the logger given to transports and engines: silent
// unless --verbose, so that diagnostics never clutter the output.
func (g *globals) logger() *slog.Logger {
	if g.verbose {
		return slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "backplane",
		Short: "Operate a backplane invalidation bus",
		Long: `backplane keeps the in-memory caches of a scaled-out service coherent. This tool
shows it working (demo) and looks at and acts on a live bus (tail, invalidate,
clear, bench, check).

URLs name the broker: nats://host:4222, tls://host:4222, redis://host:6379/0,
rediss://host:6380, sb://namespace.servicebus.windows.net?key_name=K&key=S,
postgres://user:pass@host:5432/db, amqp://user:pass@host:5672/, amqps://...,
mem:// (in-process). Credentials go in the URL.`,
		Example: `  backplane demo
  backplane tail nats://127.0.0.1:4222 --namespace catalog
  backplane invalidate redis://127.0.0.1:6379 --namespace catalog product:7
  backplane check nats://127.0.0.1:4222`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetOut(g.stdout)
	root.SetErr(g.stderr)
	root.SetIn(g.stdin)
	root.PersistentFlags().DurationVar(&g.timeout, "timeout", 10*time.Second, "bound for connecting and for each network operation")
	root.PersistentFlags().BoolVarP(&g.verbose, "verbose", "v", false, "log transport and engine diagnostics to stderr")
	root.PersistentFlags().StringSliceVar(&g.keys, "signing-key", nil,
		"ID:FILE of an HMAC signing key the fleet uses (core.Keyring); repeat for rotation, the first signs")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if g.timeout <= 0 {
			return usagef("--timeout %v: want a positive duration, like 5s", g.timeout)
		}
		k, err := loadKeyring(g.keys)
		g.keyring = k
		return err
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.SetUsageTemplate(root.UsageTemplate() + "\n" + exitCodesHelp + "\n")
	root.AddCommand(
		newDemoCmd(g),
		newTailCmd(g),
		newInvalidateCmd(g),
		newClearCmd(g),
		newBenchCmd(g),
		newCheckCmd(g),
		newVersionCmd(g),
	)
	return root
}

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (code int) {
	g := &globals{stdout: stdout, stderr: stderr, stdin: stdin}
	quietRedis(g)
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "backplane: internal error: %v\nPlease report it with the command line that caused it.\n", r)
			code = exitFailure
		}
	}()
	root := newRoot(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	code = exitCode(err)
	if code == exitInterrupted {
		fmt.Fprintln(stderr, "backplane: interrupted")
		return code
	}
	var se silentError
	if !errors.As(err, &se) {
		fmt.Fprintln(stderr, "backplane:", err)
	}
	if code == exitUsage {
		if c, _, ferr := root.Find(args); ferr == nil && c != nil {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", c.CommandPath())
		}
	}
	return code
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
