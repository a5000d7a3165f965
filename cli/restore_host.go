package cli

import (
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/pg"
)

// The host-side steps of a restore of the whole cluster: pgherd restore
// --host runs them over SSH on the new primary, and the manual runbook
// uses them too. Both read the agent's configuration.

func (a *app) restoreRecoverCommand() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "recover [flags]",
		Short: "Carry out a restored data directory's recovery, with no client let in",
		Long: `recover carries out the recovery that pgherd restore set up in the agent's data
directory (postgres.data_dir of the configuration), with the agent stopped. It
starts PostgreSQL listening on no TCP address and on a unix socket in a
private directory, so that no client, agent or backup job reaches it; waits
until it has replayed the archived WAL up to the target and promoted (a new
timeline); waits up to a minute for the archiver to store the new timeline's
history file; stops it cleanly; and removes the recovery settings from
postgresql.auto.conf (left there, they would apply again the next time the
server starts in recovery, as a standby). The agent then starts the data
directory as a primary, as it would any former primary shut down cleanly.

The agent must not start a restored data directory itself: it would promote
a server it sees in recovery before the target is reached.

Run it again after an interruption: a data directory recovered already is
left as it is. Progress goes to stderr every ten seconds.

Exit codes: 0 recovered (now or before); 1 error (the end of PostgreSQL's log
says why, such as a target past the end of the archive).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return err
			}
			i := cfg.Instance(a.logger().With("component", "postgres"))
			res, err := i.FinishRecovery(cmd.Context(), pg.RecoveryOptions{Progress: func(p pg.RecoveryProgress) {
				last := "no transaction yet"
				if !p.LastReplayed.IsZero() {
					last = "last transaction of " + p.LastReplayed.UTC().Format("2006-01-02 15:04:05Z07:00")
				}
				fmt.Fprintf(a.env.Stderr, "recovering: replayed up to %s (%s), %s\n", p.ReplayLSN, last, p.Elapsed.Round(time.Second))
			}})
			if err != nil {
				return err
			}
			cleared, err := backup.ClearRecoverySettings(cfg.Postgres.DataDir)
			if err != nil {
				return err
			}
			sysid := strconv.FormatUint(res.SystemID, 10)
			if res.Ran {
				fmt.Fprintf(a.env.Stdout, "Recovered %s: promoted to timeline %d (system identifier %s) and shut down cleanly, in %s.\n",
					cfg.Postgres.DataDir, res.TimeLine, sysid, res.Took.Round(100*time.Millisecond))
			} else {
				fmt.Fprintf(a.env.Stdout, "%s was recovered already: timeline %d (system identifier %s), shut down cleanly.\n",
					cfg.Postgres.DataDir, res.TimeLine, sysid)
			}
			if res.ArchivePending > 0 {
				fmt.Fprintf(a.env.Stdout, "%d WAL files still wait for the archiver: the next start archives them.\n", res.ArchivePending)
			}
			if cleared {
				fmt.Fprintln(a.env.Stdout, "Removed the recovery settings from postgresql.auto.conf.")
			}
			return nil
		},
	}
	configFlag(c, &config)
	return c
}

func (a *app) restoreResetEtcdCommand() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "reset-etcd [flags]",
		Short: "Clear the cluster's state in etcd for a restored cluster, every agent stopped",
		Long: `reset-etcd clears the cluster's state in etcd (every key under
/pgherd/<cluster>/: leader, members, config, sync, switchover, history,
status) except the initialize key, which records the cluster's system
identifier: it must hold that of the agent's data directory (the restored
one, which keeps the cluster's identity), or is written with it when absent.
It is one etcd transaction, refused when the initialize key names another
system.

Run it with every member's agent stopped, after pgherd restore recover: the
agents then find no leader, no stale member and no history of the timelines
the restore left behind; the restored member takes the leader key and the
others, finding the cluster initialized, copy it instead of bootstrapping a
new one.

Exit codes: 0 cleared; 1 error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return err
			}
			cd, err := cfg.Instance(a.logger()).ControlData(ctx)
			if err != nil {
				return fmt.Errorf("the system identifier of %s: %w", cfg.Postgres.DataDir, err)
			}
			sysid := cd["Database system identifier"]
			if sysid == "" {
				return fmt.Errorf("pg_controldata -D %s gave no system identifier", cfg.Postgres.DataDir)
			}
			cli, err := dcs.New(ctx, dcs.Options{Endpoints: cfg.Etcd.Endpoints, Cluster: cfg.Cluster, TLS: cfg.TLS.Client(),
				RequestTimeout: 5 * time.Second, Logger: a.logger().With("component", "dcs")})
			if err != nil {
				return err
			}
			defer cli.Close()
			n, err := cli.Reset(ctx, sysid)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.env.Stdout, "Cleared cluster %s's state in etcd (%d keys under %s); the initialize key holds its system identifier %s.\n",
				cfg.Cluster, n, cli.Prefix(), sysid)
			return nil
		},
	}
	configFlag(c, &config)
	return c
}
