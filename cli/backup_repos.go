package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/backup"
)

// repoFlag registers --repo on c: the name of one of the configuration's
// repositories.
func repoFlag(c *cobra.Command, name *string, usage string) {
	c.Flags().StringVar(name, "repo", "", usage)
}

// selectRepos are the repositories a command with --repo name works on:
// that one, or every one when name is "".
func selectRepos(b *agent.BackupConfig, name string) ([]agent.BackupRepository, error) {
	if name == "" {
		return b.Repositories, nil
	}
	r, err := b.Repository(name)
	if err != nil {
		return nil, err
	}
	return []agent.BackupRepository{*r}, nil
}

// forEachRepo runs fn on the store of the repository named name, or of
// every repository in turn when name is "", opening one at a time. With
// several, fn gets a heading to print before its output, and a repository
// that fails does not stop the others: its error goes to stderr, naming
// it, and the exit code is 1.
func (a *app) forEachRepo(ctx context.Context, cfg *agent.Config, name string,
	fn func(st *backup.Store, r *agent.BackupRepository, heading string) error) error {
	repos, err := selectRepos(cfg.Backup, name)
	if err != nil {
		return err
	}
	run := func(r *agent.BackupRepository, heading string) error {
		st, err := cfg.Backup.Open(ctx, a.logger(), r.Name)
		if err != nil {
			return noConfigHint(err)
		}
		defer st.Close()
		return fn(st, r, heading)
	}
	if len(repos) == 1 {
		return run(&repos[0], "")
	}
	failed := false
	for i := range repos {
		r := &repos[i]
		heading := fmt.Sprintf("Repository %q (%s):\n", r.Name, r.Location())
		if i > 0 {
			heading = "\n" + heading
		}
		if err := run(r, heading); err != nil {
			fmt.Fprintf(a.env.Stderr, "Error: %s: %v\n", r, err)
			failed = true
		}
	}
	if failed {
		return &exitError{code: exitError1}
	}
	return nil
}

// inRepo names a repository that has a name in a message: ` in repository
// "x"`, else "".
func inRepo(r *agent.BackupRepository) string {
	if r.Name == "" {
		return ""
	}
	return " in " + r.String()
}

// initRepos initializes the repository named name, or every repository.
func (a *app) initRepos(ctx context.Context, config, name string) error {
	cfg, err := loadBackupConfig(config)
	if err != nil {
		return err
	}
	repos, err := selectRepos(cfg.Backup, name)
	if err != nil {
		return err
	}
	failed := false
	for i := range repos {
		r := &repos[i]
		st, err := cfg.Backup.Init(ctx, a.logger(), r.Name)
		if err != nil && len(repos) == 1 {
			return err
		}
		if err != nil {
			fmt.Fprintf(a.env.Stderr, "Error: %s: %v\n", r, err)
			failed = true
			continue
		}
		enc := "not encrypted"
		if st.Encrypted() {
			enc = "encrypted"
		}
		st.Close()
		what := "Repository"
		if r.Name != "" {
			what = "Repository " + fmt.Sprintf("%q", r.Name)
		}
		fmt.Fprintf(a.env.Stdout, "%s initialized (%s repository, zstd level %d, %s).\n", what, r.Type, st.Config().Level, enc)
	}
	if failed {
		return &exitError{code: exitError1}
	}
	return nil
}
