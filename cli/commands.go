package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"

	"github.com/rogpeppe/go-internal/diff"
	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/spec"
)

// version is set at build time with -ldflags "-X github.com/pgherd/pgherd/cli.version=v1.2.3".
var version = "dev"

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print pgherd's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rev := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" && len(s.Value) >= 12 {
						rev = " (" + s.Value[:12] + ")"
					}
				}
			}
			fmt.Fprintf(a.env.Stdout, "pgherd %s%s %s/%s %s\n", version, rev, runtime.GOOS, runtime.GOARCH, runtime.Version())
			return nil
		},
	}
}

func (a *app) validateCommand() *cobra.Command {
	var f specFlags
	c := &cobra.Command{
		Use:   "validate [flags] [SPEC...]",
		Short: "Check a spec without contacting any host",
		Long: `validate reads the spec (files, or directories of *.hcl files; default the
current directory) and reports every error at once, with file, line and a
snippet. It contacts no host. Exit code 0 when the spec is valid, 1 otherwise.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.load(args, &f)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "Success! The spec is valid: %d hosts, %d resources.\n", len(m.Hosts),
				len(m.Packages)+len(m.Files)+len(m.Directories)+len(m.Groups)+len(m.Users)+len(m.Services)+len(m.Sysctls))
			return nil
		},
	}
	f.register(c)
	return c
}

func (a *app) fmtCommand() *cobra.Command {
	var check, showDiff bool
	c := &cobra.Command{
		Use:   "fmt [flags] [SPEC...]",
		Short: "Rewrite spec files in the canonical format",
		Long: `fmt rewrites *.hcl files (default: those of the current directory) in the
canonical layout. With -check it changes nothing and exits 3 when a file is
not formatted (as terraform fmt -check does); -diff shows what would change.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := hclFiles(args)
			if err != nil {
				return err
			}
			unformatted := false
			for _, path := range files {
				src, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				out, diags := spec.Format(src, path)
				if diags.HasErrors() {
					d := spec.Diagnostics{Diags: diags}
					_ = d.Write(a.env.Stderr, a.color(a.env.Stderr))
					return &exitError{code: exitError1}
				}
				if bytes.Equal(src, out) {
					continue
				}
				unformatted = true
				fmt.Fprintln(a.env.Stdout, path)
				if showDiff {
					a.env.Stdout.Write(diff.Diff(path, src, path+" (formatted)", out))
				}
				if !check {
					if err := os.WriteFile(path, out, 0o644); err != nil {
						return err
					}
				}
			}
			if check && unformatted {
				return &exitError{code: 3}
			}
			return nil
		},
	}
	c.Flags().BoolVar(&check, "check", false, "change nothing; exit 3 when a file is not formatted")
	c.Flags().BoolVar(&showDiff, "diff", false, "show the changes")
	return c
}

// hclFiles lists the .hcl files named by args, directories expanded.
func hclFiles(args []string) ([]string, error) {
	if len(args) == 0 {
		args = []string{"."}
	}
	var files []string
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			files = append(files, arg)
			continue
		}
		matches, err := filepath.Glob(filepath.Join(arg, "*.hcl"))
		if err != nil {
			return nil, err
		}
		sort.Strings(matches)
		files = append(files, matches...)
	}
	return files, nil
}
