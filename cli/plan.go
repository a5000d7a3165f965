package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/planner"
	"github.com/pgherd/pgherd/planner/compile"
	"github.com/pgherd/pgherd/planner/engine"
	"github.com/pgherd/pgherd/planner/render"
	"github.com/pgherd/pgherd/spec"
)

// runFlags are the flags plan and apply share.
type runFlags struct {
	specFlags
	limit       []string
	removeData  []string
	parallelism int
	json        bool
}

func (f *runFlags) register(c *cobra.Command) {
	f.specFlags.register(c)
	c.Flags().StringSliceVar(&f.limit, "limit", nil, "only these hosts (comma-separated names)")
	c.Flags().StringSliceVar(&f.removeData, "remove-data", nil, "delete the PostgreSQL data directory of these hosts as they are detached from the cluster (comma-separated names; kept by default)")
	c.Flags().IntVar(&f.parallelism, "parallelism", 10, "how many hosts are worked on at once")
	c.Flags().BoolVar(&f.json, "json", false, "machine-readable JSON output (see docs/plan-json.md)")
}

// session is one run against the hosts of a spec.
type session struct {
	model  *spec.Model
	prog   *engine.Program
	pool   *executors.Pool
	engine *engine.Engine
	mask   func(string) string
}

func (a *app) newSession(ctx context.Context, paths []string, f *runFlags) (*session, error) {
	m, err := a.load(paths, &f.specFlags)
	if err != nil {
		return nil, err
	}
	log := a.logger()
	pool := executors.NewPool(log)
	opts := compile.Options{Limit: f.limit, RemoveData: f.removeData}
	if m.Cluster != nil {
		if opts.AgentBinary, err = modules.NewAgentBinary(); err != nil {
			pool.Close()
			return nil, err
		}
		// The rolling procedure takes the leader last. A cluster that does
		// not answer yet has nothing to roll.
		if cs, _ := findCluster(ctx, m.Cluster, poolConnector(m, pool)); cs != nil {
			opts.Leader = cs.Leader
		}
	}
	prog, err := compile.Compile(m, opts)
	if err != nil {
		pool.Close()
		return nil, err
	}
	mask := m.Mask
	return &session{
		model: m,
		prog:  prog,
		pool:  pool,
		mask:  mask,
		engine: &engine.Engine{
			Connect:     connector(m, pool),
			Parallelism: f.parallelism,
			Log:         log,
			Mask:        mask,
		},
	}, nil
}

func (s *session) close() { s.pool.Close() }

func (a *app) planCommand() *cobra.Command {
	var f runFlags
	var detailed bool
	var out string
	c := &cobra.Command{
		Use:   "plan [flags] [SPEC...]",
		Short: "Show what apply would change on each host",
		Long: `plan reads the spec (files, or directories of *.hcl files; default the current
directory), reads the live state of every host over SSH, and prints what apply
would change, Terraform style: + create, ~ update, - delete, with the reason.
It changes nothing on any host.

Exit codes: 0 success; 1 error; with -detailed-exitcode, 2 when there are
changes (drift).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := a.newSession(cmd.Context(), args, &f)
			if err != nil {
				return err
			}
			defer s.close()
			plan, err := s.engine.Plan(cmd.Context(), s.prog)
			if err != nil {
				return err
			}
			if err := a.printPlan(s, plan, f.json); err != nil {
				return err
			}
			if out != "" {
				if err := savePlan(out, plan); err != nil {
					return err
				}
				if !f.json {
					fmt.Fprintf(a.env.Stdout, "\nSaved the plan to %s. To carry it out exactly: pgherd apply -plan %s\n", out, out)
				}
			}
			switch {
			case len(plan.HostErrors) > 0:
				return &exitError{code: exitError1}
			case detailed && plan.HasChanges():
				return &exitError{code: exitChanges}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&detailed, "detailed-exitcode", false, "exit 2 when there are changes, 0 when none, 1 on error")
	c.Flags().StringVar(&out, "out", "", "save the plan to this file, for apply -plan")
	return c
}

func (a *app) printPlan(s *session, plan *planner.Plan, asJSON bool) error {
	var buf bytes.Buffer
	var err error
	if asJSON {
		err = render.JSON(&buf, plan)
	} else {
		err = render.Text(&buf, plan, render.TextOptions{Color: a.color(a.env.Stdout)})
	}
	if err != nil {
		return err
	}
	if _, err := fmt.Fprint(a.env.Stdout, s.mask(buf.String())); err != nil {
		return err
	}
	for _, e := range plan.HostErrors {
		fmt.Fprintf(a.env.Stderr, "Error: %s: %s\n", e.Host, s.mask(e.Error))
	}
	return nil
}

func savePlan(path string, plan *planner.Plan) error {
	var buf bytes.Buffer
	if err := engine.SavePlan(&buf, plan); err != nil {
		return err
	}
	// The plan can name sensitive resources; keep it private like a state file.
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		return fmt.Errorf("saving the plan: %w", err)
	}
	return nil
}

func loadPlan(path string) (*planner.Plan, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading the saved plan: %w", err)
	}
	defer f.Close()
	p, err := engine.LoadPlan(f)
	if err != nil {
		return nil, fmt.Errorf("reading the saved plan %s: %w", path, err)
	}
	return p, nil
}

func (a *app) applyCommand() *cobra.Command {
	var f runFlags
	var autoApprove bool
	var planFile string
	c := &cobra.Command{
		Use:   "apply [flags] [SPEC...]",
		Short: "Change the hosts to match the spec",
		Long: `apply makes a fresh plan, shows it, asks for confirmation (unless
-auto-approve), and carries it out host by host, showing progress and a recap.

With -plan FILE it carries out a plan saved by 'plan -out FILE' without asking,
after checking that neither the spec nor the hosts changed since; if they did,
it refuses and changes nothing. The plan approved at the prompt is held to the
same check. With -auto-approve it converges on what it finds when it runs.

Interrupting apply (Ctrl-C) lets the running step finish and starts no other;
the next apply finishes the job. A second Ctrl-C ends pgherd at once.
Two applies on the same hosts cannot run at once: each host is locked.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			s, err := a.newSession(cmd.Context(), args, &f)
			if err != nil {
				return err
			}
			defer s.close()
			var saved *planner.Plan
			if planFile != "" {
				if saved, err = loadPlan(planFile); err != nil {
					return err
				}
			} else {
				plan, err := s.engine.Plan(ctx, s.prog)
				if err != nil {
					return err
				}
				if err := a.printPlan(s, plan, f.json); err != nil {
					return err
				}
				if len(plan.HostErrors) > 0 {
					fmt.Fprintln(a.env.Stderr, "Nothing was changed: every host must be reachable for apply; -limit restricts the run to the hosts named.")
					return &exitError{code: exitError1}
				}
				if !plan.HasChanges() {
					return nil
				}
				if !autoApprove {
					ok, err := a.confirm()
					if err != nil {
						return err
					}
					if !ok {
						fmt.Fprintln(a.env.Stdout, "Apply cancelled.")
						return &exitError{code: exitError1}
					}
					// What was approved is what runs: a plan that no
					// longer holds is refused.
					saved = plan
				}
				// With -auto-approve nobody approved this plan in
				// particular: the apply plans again and converges on
				// what it finds (the agents change the cluster on their
				// own: a new leader creates the roles, for one).
			}
			go func() {
				<-ctx.Done()
				if a.stopSignals != nil {
					a.stopSignals()
				}
				fmt.Fprintln(a.env.Stderr, "\nInterrupt received: finishing the running steps; press Ctrl-C again to stop at once.")
			}()
			if !f.json {
				s.engine.Progress = render.Progress(maskedWriter{a.env.Stdout, s.mask})
			}
			recap, err := s.engine.Apply(ctx, s.prog, saved)
			if recap != nil && !f.json {
				var buf bytes.Buffer
				if rerr := render.Recap(&buf, recap); rerr == nil {
					fmt.Fprint(a.env.Stdout, s.mask(buf.String()))
				}
			}
			if err != nil {
				fmt.Fprintf(a.env.Stderr, "Error: %s\n", s.mask(err.Error()))
				return &exitError{code: exitError1}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&autoApprove, "auto-approve", false, "do not ask for confirmation")
	c.Flags().StringVar(&planFile, "plan", "", "carry out a plan saved with 'plan -out FILE'")
	return c
}

// confirm asks the user to type yes.
func (a *app) confirm() (bool, error) {
	fmt.Fprint(a.env.Stdout, "\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ")
	line, err := bufio.NewReader(a.env.Stdin).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("no answer on standard input (use -auto-approve when not interactive): %w", err)
	}
	return strings.TrimSpace(line) == "yes", nil
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
