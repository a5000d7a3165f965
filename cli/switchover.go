package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/spec"
)

// errNoToken: the spec gives the agents no API token, so they refuse every
// write verb.
var errNoToken = errors.New("the cluster has no api_token (ha { api_token = var.api_token }): the agents refuse write verbs without one")

// errNoLeader: no member reports a leader.
var errNoLeader = errors.New("the cluster has no leader now: there is nothing to switch over from (see pgherd status)")

// errSwitchoverRefused wraps what the agent answered when it refused.
var errSwitchoverRefused = errors.New("switchover refused")

// switchoverRequest is the body of POST /switchover.
type switchoverRequest struct {
	Leader      string `json:"leader"`
	Candidate   string `json:"candidate,omitempty"`
	ScheduledAt string `json:"scheduled_at,omitempty"`
}

// findCluster asks the members' agents, in the spec's order, for GET
// /cluster and returns the first answer. The errors of members that did not
// answer are returned too.
func findCluster(ctx context.Context, c *spec.Cluster, connect hostConnector) (*clusterStatus, []error) {
	var errs []error
	for _, hn := range c.Postgres.Hosts {
		cs, err := func() (*clusterStatus, error) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			h, err := connect(ctx, hn)
			if err != nil {
				return nil, err
			}
			var cs clusterStatus
			if err := newAPIClient(h, c, hn, c.HA.APIPort).getJSON(ctx, "/cluster", &cs); err != nil {
				return nil, err
			}
			return &cs, nil
		}()
		if err == nil {
			return cs, errs
		}
		errs = append(errs, err)
	}
	return nil, errs
}

// postSwitchover asks the leader's agent for a switchover. It returns the
// agent's answer on success (200 or 202), and an error wrapping
// errSwitchoverRefused with the agent's reason otherwise.
func postSwitchover(ctx context.Context, h statusHost, c *spec.Cluster, leader string, port int, token string, req switchoverRequest) (int, string, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, "", err
	}
	api := newAPIClient(h, c, leader, port)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, api.url("/switchover"), bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Authorization", "Bearer "+token)
	resp, err := api.http.Do(hr)
	if err != nil {
		return 0, "", fmt.Errorf("agent API on %s: %w", leader, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	msg := strings.TrimSpace(string(b))
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted:
		return resp.StatusCode, msg, nil
	}
	return resp.StatusCode, msg, fmt.Errorf("%w by the agent on %s (%s): %s", errSwitchoverRefused, leader, resp.Status, msg)
}

// waitLeader polls the members until one other than old is the leader and
// says it runs as primary with a valid lease. It returns that member.
func waitLeader(ctx context.Context, c *spec.Cluster, connect hostConnector, old, want string) (string, error) {
	for {
		cs, errs := findCluster(ctx, c, connect)
		if cs != nil && cs.Leader != "" && cs.Leader != old && (want == "" || cs.Leader == want) {
			st, err := func() (*memberStatus, error) {
				h, err := connect(ctx, cs.Leader)
				if err != nil {
					return nil, err
				}
				var st memberStatus
				return &st, newAPIClient(h, c, cs.Leader, c.HA.APIPort).getJSON(ctx, "/patroni", &st)
			}()
			if err == nil && st.Role == "primary" && st.Pgherd.IsLeader && st.Pgherd.LeaseValid {
				return cs.Leader, nil
			}
		}
		select {
		case <-ctx.Done():
			what := "no member answered"
			if cs != nil {
				what = fmt.Sprintf("the leader is still %q", cs.Leader)
				if cs.Leader == "" {
					what = "the cluster has no leader"
				}
			} else if len(errs) > 0 {
				what += ": " + errors.Join(errs...).Error()
			}
			return "", fmt.Errorf("waiting for the new leader: %w (%s)", ctx.Err(), what)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (a *app) switchoverCommand() *cobra.Command {
	var f specFlags
	var to, at string
	var autoApprove bool
	var wait time.Duration
	c := &cobra.Command{
		Use:   "switchover [flags] [SPEC...]",
		Short: "Hand the primary role over to a replica, on purpose",
		Long: `switchover asks the cluster's leader to hand its role over to a replica: to
the member named with --to, or to the best replica (the most advanced one that
may be promoted) when --to is not given. It shows the current leader and the
target, asks for confirmation (unless -auto-approve), asks the leader's agent
(through SSH, with the spec's api_token, never printed), and waits for the new
leader, printing how long the switchover took.

With --at TIME (RFC 3339 with a zone, such as 2026-04-14T20:27:00+00:00) the
agents carry it out at that time; pgherd returns once it is scheduled.

Exit codes: 0 done (or scheduled); 1 error or refused (the agent's reason is
shown: a target that is not a streaming replica, a lagging one, ...).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			m, err := a.load(args, &f)
			if err != nil {
				return err
			}
			c := m.Cluster
			if c == nil {
				return errNoCluster("switchover")
			}
			if c.HA.APIToken == "" {
				return errNoToken
			}
			if to != "" && !slices.Contains(c.Postgres.Hosts, to) {
				return fmt.Errorf("--to %s: not a PostgreSQL host of cluster %q (%s)", to, c.Name, strings.Join(c.Postgres.Hosts, ", "))
			}
			var when time.Time
			if at != "" {
				if when, err = time.Parse(time.RFC3339, at); err != nil {
					return fmt.Errorf("--at %q: want RFC 3339 with a zone, such as 2026-04-14T20:27:00+00:00: %w", at, err)
				}
			}
			pool := executors.NewPool(a.logger())
			defer pool.Close()
			connect := poolConnector(m, pool)
			out := maskedWriter{a.env.Stdout, m.Mask}

			cs, errs := findCluster(ctx, c, connect)
			if cs == nil {
				return fmt.Errorf("no agent of cluster %q answered: %w", c.Name, errors.Join(errs...))
			}
			if cs.Leader == "" {
				return errNoLeader
			}
			if to == cs.Leader {
				return fmt.Errorf("--to %s: %s is the leader already", to, to)
			}
			target := to
			if target == "" {
				target = "the best replica (chosen by the agent)"
			}
			fmt.Fprintf(out, "Cluster %s\n  current leader: %s\n  new leader:     %s\n", c.Name, cs.Leader, target)
			if !when.IsZero() {
				fmt.Fprintf(out, "  at:             %s\n", when.Format(time.RFC3339))
			}
			if !autoApprove {
				ok, err := a.confirm()
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(out, "Switchover cancelled.")
					return &exitError{code: exitError1}
				}
			}
			h, err := connect(ctx, cs.Leader)
			if err != nil {
				return err
			}
			req := switchoverRequest{Leader: cs.Leader, Candidate: to}
			if !when.IsZero() {
				req.ScheduledAt = when.Format(time.RFC3339)
			}
			start := time.Now()
			pctx, cancel := context.WithTimeout(ctx, wait)
			defer cancel()
			code, msg, err := postSwitchover(pctx, h, c, cs.Leader, c.HA.APIPort, c.HA.APIToken, req)
			if err != nil {
				return errors.New(m.Mask(err.Error()))
			}
			if code == http.StatusAccepted {
				fmt.Fprintf(out, "Switchover scheduled for %s: %s\n", when.Format(time.RFC3339), msg)
				return nil
			}
			fmt.Fprintf(out, "%s: %s\n", cs.Leader, msg)
			leader, err := waitLeader(pctx, c, connect, cs.Leader, to)
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "Switchover complete: %s is the leader (%s after the request).\n", leader, time.Since(start).Round(10*time.Millisecond))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringVar(&to, "to", "", "the member to hand over to (default: the best replica)")
	c.Flags().StringVar(&at, "at", "", "schedule the switchover at this time (RFC 3339 with a zone)")
	c.Flags().BoolVar(&autoApprove, "auto-approve", false, "do not ask for confirmation")
	c.Flags().DurationVar(&wait, "timeout", 2*time.Minute, "how long to wait for the switchover to complete")
	return c
}
