package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version = ""

func buildVersion() (ver, rev string) {
	ver = version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ver, ""
	}
	if ver == "" {
		ver = info.Main.Version
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
			if len(rev) > 12 {
				rev = rev[:12]
			}
		case "vcs.modified":
			if s.Value == "true" && rev != "" {
				rev += "+dirty"
			}
		}
	}
	if ver == "" {
		ver = "(devel)"
	}
	return ver, rev
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version of this tool",
		Example: "  backplane version",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ver, rev := buildVersion()
			line := "backplane " + ver
			if rev != "" {
				line += " (" + rev + ")"
			}
			fmt.Fprintf(g.stdout, "%s %s %s/%s\n", line, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}

// noArgs rejects positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("%s takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

// urlArg accepts exactly one argument, the broker URL, plus at least
// extra more.
func urlArg(extra int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef("missing the broker URL (for example %s)", urlExamples)
		}
		if len(args) < 1+extra {
			return usagef("missing %s", what)
		}
		if extra == 0 && len(args) > 1 {
			return usagef("%s takes one URL, got %d arguments", cmd.CommandPath(), len(args))
		}
		return nil
	}
}
