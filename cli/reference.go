package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

// WriteReference writes the CLI reference (docs/cli.md) from the commands
// themselves, so that the documentation cannot drift from the flags.
func WriteReference(w io.Writer) error {
	a := &app{env: Env{Environ: nil}}
	root := a.rootCommand()
	var b strings.Builder
	b.WriteString("# pgherd command line reference\n\n")
	b.WriteString("Generated from the commands themselves (`go test ./cli -run TestReference -update`); do not edit by hand.\n\n")
	b.WriteString("Long flags may be written with one dash, as in Terraform: `-auto-approve` is `--auto-approve`.\n\n")
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" {
			return
		}
		fmt.Fprintf(&b, "## %s\n\n", c.CommandPath())
		if c.Long != "" {
			fmt.Fprintf(&b, "%s\n\n", c.Long)
		} else {
			fmt.Fprintf(&b, "%s.\n\n", c.Short)
		}
		fmt.Fprintf(&b, "```\n%s```\n\n", c.UsageString())
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	_, err := io.WriteString(w, b.String())
	return err
}
