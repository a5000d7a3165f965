package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/procmem"
)

// trimMemory gives the executable's pages that start-up touched, and that
// the steady loop does not use, back every 10 minutes, beginning 30 s after
// the start (docs/ha.md, Agent memory): they are most of the agent's
// resident set otherwise.
func trimMemory(ctx context.Context, log *slog.Logger) {
	wait := 30 * time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = 10 * time.Minute
		before, _, _ := procmem.Resident()
		if _, err := procmem.TrimExecutable(); err != nil {
			log.Warn("trimming the resident set", "err", err)
			return
		}
		after, anon, _ := procmem.Resident()
		log.Debug("resident set trimmed", "before_kB", before>>10, "after_kB", after>>10, "anon_kB", anon>>10)
	}
}

func (a *app) agentCommand() *cobra.Command {
	var configPath string
	c := &cobra.Command{
		Use:   "agent",
		Short: "Run the HA agent on a database host (pgherd apply installs it as pgherd-agent.service)",
		Long: `agent keeps exactly one writable primary in the cluster: it owns the local
PostgreSQL (start, stop, promote, follow, rewind), holds or watches the
leader lease in etcd, and serves the REST API (Patroni-compatible paths, see
docs/api.md). pgherd apply installs it as the systemd unit pgherd-agent.

Signals: SIGTERM or SIGINT stop it cleanly (a primary stops PostgreSQL and
hands the leader key over at once); SIGHUP re-reads the configuration
(HA settings, PostgreSQL parameters, pg_hba.conf) without a restart; SIGUSR2
makes it exit leaving PostgreSQL and its leader key alone, for an in-place
upgrade of the agent (the next agent takes the key over within the ttl).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := agent.LoadConfig(configPath)
			if err != nil {
				return err
			}
			log := a.logger()
			if a.logLevel == "warn" && a.env.Getenv("PGHERD_LOG") == "" {
				log = a.loggerAt("info")
			}
			ag := agent.New(cfg, log.With("member", cfg.Name), version)
			sigs := make(chan os.Signal, 4)
			signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR2)
			defer signal.Stop(sigs)
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			go trimMemory(ctx, log)
			go func() {
				for {
					select {
					case <-ctx.Done():
						return
					case s := <-sigs:
						switch s {
						case syscall.SIGHUP:
							if cfg, err := agent.LoadConfig(configPath); err != nil {
								log.Error("reload refused: the configuration does not load", "err", err)
							} else {
								ag.Reload(cfg)
							}
						case syscall.SIGUSR2:
							ag.Shutdown(true)
						}
					}
				}
			}()
			return ag.Run(ctx)
		},
	}
	c.Flags().StringVar(&configPath, "config", agent.ConfigPath, "the agent's configuration file")

	var api, caFile string
	status := &cobra.Command{
		Use:   "status",
		Short: "Print the cluster as the local agent sees it (its /cluster document)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 3*time.Second)
			defer cancel()
			client, scheme := http.DefaultClient, "http"
			if caFile != "" {
				host, _, err := net.SplitHostPort(api)
				if err != nil {
					return fmt.Errorf("--api %q: %w", api, err)
				}
				cfg, err := agent.HTTPClientTLS(caFile, host)
				if err != nil {
					return err
				}
				client, scheme = &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, "https"
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+api+"/cluster", nil)
			if err != nil {
				return err
			}
			resp, err := client.Do(req)
			if err != nil {
				return fmt.Errorf("the agent at %s does not answer: %w", api, err)
			}
			defer resp.Body.Close()
			_, err = io.Copy(a.env.Stdout, resp.Body)
			return err
		},
	}
	status.Flags().StringVar(&api, "api", "127.0.0.1:8008", "the agent's API address")
	status.Flags().StringVar(&caFile, "tls-ca", "", "reach the API over HTTPS, verifying it with this CA bundle and the --api host")
	c.AddCommand(status)
	return c
}
