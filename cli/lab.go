package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/e2e/lab"
)

func (a *app) labCommand() *cobra.Command {
	var cfg lab.Config
	c := &cobra.Command{
		Use:   "lab",
		Short: "A local lab of Debian hosts in Docker, to try pgherd and to test it",
		Long: `lab starts real Debian hosts (systemd and sshd) as Docker containers on a
private network, with an SSH key and known_hosts for pgherd, and writes a spec
snippet (lab.hcl) that reaches them. See docs/lab.md.`,
	}
	c.PersistentFlags().StringVar(&cfg.Name, "name", "pgherd-lab", "lab name: prefixes containers, network and images")
	c.PersistentFlags().StringVar(&cfg.Dir, "dir", "", "state directory for the key, known_hosts and lab.hcl (default ~/.cache/pgherd/lab/NAME)")
	c.PersistentFlags().StringVar(&cfg.Subnet, "subnet", "", "the lab network (default 10.77.0.0/24)")

	up := &cobra.Command{
		Use:   "up",
		Short: "Build the images if needed and start the hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Log = a.logger()
			l, err := lab.Up(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "The lab %q is up with %d hosts. Spec snippet (also in %s/lab.hcl):\n\n%s", cfg.Name, len(l.Hosts()), l.Dir(), l.SpecSnippet())
			return nil
		},
	}
	up.Flags().IntVar(&cfg.Hosts, "hosts", 3, "number of hosts")

	down := &cobra.Command{
		Use:   "down",
		Short: "Remove the lab's hosts and network (the images stay cached)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Log = a.logger()
			l, err := lab.Open(cfg)
			if err != nil {
				return err
			}
			return l.Down(cmd.Context())
		},
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show the lab's hosts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.Log = a.logger()
			l, err := lab.Open(cfg)
			if err != nil {
				return err
			}
			st, err := l.Status(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "HOST\tADDRESS\tSTATE")
			for _, h := range st {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", h.Name, h.Address, h.State)
			}
			return tw.Flush()
		},
	}
	c.AddCommand(up, down, status)
	return c
}
