// Package cli is pgherd's command line: one cobra command per verb, each a
// thin layer over spec, planner and the agent packages.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Env is what a run of the command line sees of its process.
type Env struct {
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	Environ []string
}

// Getenv returns the value of an environment variable of e.
func (e Env) Getenv(name string) string {
	for _, kv := range e.Environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == name {
			return v
		}
	}
	return ""
}

// exitError carries an exit code out of a command. Its message, if any, has
// already been printed.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Exit codes, as Terraform's.
const (
	exitOK      = 0
	exitError1  = 1
	exitChanges = 2
)

// app holds what every command shares.
type app struct {
	env Env
	// stopSignals restores default signal handling, so that a second
	// Ctrl-C ends the process at once.
	stopSignals func()
	logLevel    string
	noColor     bool
}

// color reports whether output to w may use colors: a terminal, and no
// -no-color or NO_COLOR.
func (a *app) color(w io.Writer) bool { return !a.noColor && isTerminal(w) }

func (a *app) logger() *slog.Logger { return a.loggerAt(a.logLevel) }

// loggerAt logs to stderr from the given level up.
func (a *app) loggerAt(level string) *slog.Logger {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		lvl = slog.LevelWarn
	}
	return slog.New(slog.NewTextHandler(a.env.Stderr, &slog.HandlerOptions{Level: lvl}))
}

// Run runs the command line args and returns the process exit code.
// stopSignals, when not nil, is called once an interrupt has been seen, so
// that a second one ends the process.
func Run(ctx context.Context, stopSignals func(), args []string, env Env) int {
	a := &app{env: env, stopSignals: stopSignals}
	root := a.rootCommand()
	root.SetArgs(terraformStyleFlags(root, args))
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintf(env.Stderr, "Error: %v\n", err)
	return exitError1
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "pgherd",
		Short: "Declarative provisioning and convergence for highly available PostgreSQL",
		Long: `pgherd turns an HCL spec into a running, self-healing PostgreSQL cluster on
ordinary Linux hosts, and keeps it that way: plan shows what would change on
each host, apply carries it out.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	lvl := a.env.Getenv("PGHERD_LOG")
	if lvl == "" {
		lvl = "warn"
	}
	root.PersistentFlags().StringVar(&a.logLevel, "log-level", lvl, "log level: debug, info, warn, error (env PGHERD_LOG)")
	root.PersistentFlags().BoolVar(&a.noColor, "no-color", a.env.Getenv("NO_COLOR") != "", "no colors in output (env NO_COLOR)")
	root.AddCommand(
		a.versionCommand(),
		a.validateCommand(),
		a.fmtCommand(),
		a.planCommand(),
		a.applyCommand(),
		a.statusCommand(), a.switchoverCommand(), a.upgradeCommand(),
		a.labCommand(),
		a.agentCommand(),
		a.walPushCommand(), a.walFetchCommand(), a.backupCommand(), a.restoreCommand(),
	)
	return root
}

// terraformStyleFlags lets long flags be written with one dash, as in
// Terraform (-auto-approve, -detailed-exitcode), by rewriting "-name" and
// "-name=value" to their two-dash form when name is a long flag of some
// command. Single-letter shorthands are left alone.
func terraformStyleFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, fs := range []*pflag.FlagSet{c.LocalFlags(), c.PersistentFlags(), c.InheritedFlags()} {
			fs.VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if len(arg) > 2 && arg[0] == '-' && arg[1] != '-' {
			name, _, _ := strings.Cut(arg[1:], "=")
			if len(name) > 1 && long[name] {
				arg = "-" + arg
			}
		}
		out = append(out, arg)
	}
	return out
}
