package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/dcs"
)

// Exit codes of the backup commands, beside exitOK and exitError1.
const (
	// exitWALMissing: wal-fetch found no such file in the archive, which
	// PostgreSQL takes as the end of the archive.
	exitWALMissing = 1
	// exitWALError: wal-fetch failed otherwise; PostgreSQL retries.
	exitWALError = 2
	// exitSkipped: backup did nothing because this host is not where
	// backups are taken from (a primary with --from standby, a standby
	// with --from primary).
	exitSkipped = 3
)

// configFlag registers --config on c.
func configFlag(c *cobra.Command, path *string) {
	c.Flags().StringVar(path, "config", agent.ConfigPath, "the agent's configuration file")
}

// loadBackupConfig reads the agent configuration and checks its backup
// section.
func loadBackupConfig(path string) (*agent.Config, error) {
	cfg, err := agent.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Backup.Check(); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	return cfg, nil
}

// noConfigHint adds what to do to an error of a repository that was never
// initialized.
func noConfigHint(err error) error {
	if errors.Is(err, backup.ErrNoConfig) {
		return fmt.Errorf("%w: run pgherd backup init", err)
	}
	return err
}

func (a *app) walPushCommand() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "wal-push [flags] PATH",
		Short: "Archive one WAL file (PostgreSQL's archive_command)",
		Long: `wal-push archives the WAL file at PATH (relative to the data directory) into
the repository of the agent's configuration, into each when it has several.
It is PostgreSQL's archive_command:

  archive_command = 'pgherd wal-push %p'

Pushing a file archived already with the same content succeeds; a different
file of the same name is refused. With several repositories it succeeds only
when every repository has the file, so that none has a hole: one that cannot
be reached fails the push (the error names it) while the others still get
the file, and PostgreSQL keeps the segment and retries. With a spool_dir in
the configuration, one call also pushes the other files PostgreSQL marked
ready, in parallel.

Exit codes: 0 archived; 1 not archived (PostgreSQL retries).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			fail := func(err error) error {
				fmt.Fprintf(a.env.Stderr, "Error: wal-push %s: %v\n", args[0], err)
				return &exitError{code: exitError1}
			}
			cfg, err := loadBackupConfig(config)
			if err != nil {
				return fail(err)
			}
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return fail(err)
			}
			// The local agent keeps the repository open (agent/walsocket.go).
			err = agent.PushWALVia(ctx, agent.WALSocket(cfg.RunDir), abs)
			if !errors.Is(err, agent.ErrNoWALServer) {
				if err != nil {
					return fail(err)
				}
				return nil
			}
			stores := cfg.Backup.Stores(a.logger())
			defer stores.Close()
			if err := stores.WALPush(ctx, args[0], cfg.Backup.WALPushOptions()); err != nil {
				return fail(noConfigHint(err))
			}
			return nil
		},
	}
	configFlag(c, &config)
	return c
}

// fetchWAL restores the WAL file name to dest: through the local agent,
// which keeps the repository open (agent/walsocket.go), or, when no agent
// answers, from the repository opened here.
func (a *app) fetchWAL(ctx context.Context, config, name, dest string) error {
	cfg, err := loadBackupConfig(config)
	if err != nil {
		return err
	}
	abs, err := filepath.Abs(dest)
	if err != nil {
		return err
	}
	err = agent.FetchWALVia(ctx, agent.WALSocket(cfg.RunDir), name, abs)
	if !errors.Is(err, agent.ErrNoWALServer) {
		return err
	}
	stores := cfg.Backup.Stores(a.logger())
	defer stores.Close()
	return noConfigHint(stores.WALFetch(ctx, name, dest, cfg.Backup.WALFetchOptions()))
}

func (a *app) walFetchCommand() *cobra.Command {
	var config string
	c := &cobra.Command{
		Use:   "wal-fetch [flags] NAME DEST",
		Short: "Restore one archived WAL file (PostgreSQL's restore_command)",
		Long: `wal-fetch restores the archived WAL file NAME to DEST, checking its content
against its checksum. It is PostgreSQL's restore_command:

  restore_command = 'pgherd wal-fetch %f "%p"'

With several repositories it takes the file from the first, in order, that
has it, passing over one that cannot be reached or holds a damaged copy. With
a spool_dir in the configuration it prefetches the following segments.

Exit codes: 0 restored; 1 not in the archive (PostgreSQL takes it as the end
of the archive); 2 any other error (PostgreSQL retries).`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			name := args[0]
			err := a.fetchWAL(ctx, config, name, args[1])
			switch {
			case err == nil:
				return nil
			case errors.Is(err, backup.ErrNotFound):
				// Not an error for PostgreSQL: the end of the archive, or
				// a timeline history file that does not exist. Silent
				// unless asked, since recovery asks for these routinely.
				a.logger().Info("WAL file not in the archive", "wal", name)
				return &exitError{code: exitWALMissing}
			default:
				fmt.Fprintf(a.env.Stderr, "Error: wal-fetch %s: %v\n", name, err)
				return &exitError{code: exitWALError}
			}
		},
	}
	configFlag(c, &config)
	return c
}

// backupFlags are the flags of pgherd backup.
type backupFlags struct {
	config   string
	typ      string
	from     string
	parallel int
	repo     string
	allRepos bool
	expire   bool
}

func (a *app) backupCommand() *cobra.Command {
	var f backupFlags
	c := &cobra.Command{
		Use:   "backup [flags]",
		Short: "Take a base backup of this host's PostgreSQL into a repository",
		Long: `backup takes a base backup of the PostgreSQL of this host (connecting over its
unix socket as the superuser of the agent's configuration) into a
repository: full, or incremental on the latest backup (a full one when the
repository has none). From a standby, it asks the primary (the leader in
etcd) to switch WAL so that the backup's last segment gets archived.

With several repositories, the backup goes into the first one, or the one
--repo names; --all-repos takes one backup into each, in turn (a failure in
one does not stop the others; the exit code is then 1).

--from says where backups are taken (default: the configuration's, itself
"standby" by default). On a host that is not such a server, backup does
nothing and exits 3, so that a timer can run it on every host.

--expire applies the retention (as pgherd backup expire does) to each
repository once a backup into it has been taken; the scheduled backups run
with it. A backup that fails expires nothing.

Progress goes to stderr: a line updated every second on a terminal, a log
line every 10 seconds otherwise.

Exit codes: 0 backup taken; 1 error; 3 skipped (not the server --from asks for).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.runBackup(cmd.Context(), &f)
		},
	}
	configFlag(c, &f.config)
	c.Flags().StringVar(&f.typ, "type", "full", "full or incr")
	c.Flags().StringVar(&f.from, "from", "", "standby or primary (default: the configuration's)")
	c.Flags().IntVar(&f.parallel, "parallel", 0, "files copied at once (default: the configuration's)")
	repoFlag(c, &f.repo, "the repository to back up into (default: the first)")
	c.Flags().BoolVar(&f.allRepos, "all-repos", false, "take one backup into each repository, in turn")
	c.Flags().BoolVar(&f.expire, "expire", false, "then apply the retention to each repository backed up into")
	c.AddCommand(a.backupListCommand(), a.backupVerifyCommand(), a.backupExpireCommand(), a.backupInitCommand())
	return c
}

func (a *app) runBackup(ctx context.Context, f *backupFlags) error {
	typ := backup.BackupType(f.typ)
	if typ != backup.Full && typ != backup.Incr {
		return fmt.Errorf("--type must be full or incr, not %q", f.typ)
	}
	if f.from != "" && f.from != agent.FromStandby && f.from != agent.FromPrimary {
		return fmt.Errorf("--from must be standby or primary, not %q", f.from)
	}
	if f.repo != "" && f.allRepos {
		return errors.New("give --repo or --all-repos, not both")
	}
	cfg, err := loadBackupConfig(f.config)
	if err != nil {
		return err
	}
	b := cfg.Backup
	repos := b.Repositories[:1]
	if f.repo != "" || f.allRepos {
		if repos, err = selectRepos(b, f.repo); err != nil {
			return err
		}
	}
	from := b.From
	if f.from != "" {
		from = f.from
	}
	parallel := b.Parallel
	if f.parallel > 0 {
		parallel = f.parallel
	}
	log := a.logger()
	conn := localConnString(cfg)
	inRecovery, err := isInRecovery(ctx, conn)
	if err != nil {
		return err
	}
	switch {
	case from == agent.FromStandby && !inRecovery:
		fmt.Fprintf(a.env.Stderr, "Skipped: this host's PostgreSQL is the primary, and backups are taken from a standby (--from primary to take one here).\n")
		return &exitError{code: exitSkipped}
	case from == agent.FromPrimary && inRecovery:
		fmt.Fprintf(a.env.Stderr, "Skipped: this host's PostgreSQL is a standby, and backups are taken from the primary (--from standby to take one here).\n")
		return &exitError{code: exitSkipped}
	}
	opts := backup.BackupOptions{DataDir: cfg.Postgres.DataDir, Conn: conn, Type: typ, Parallel: parallel,
		ArchiveTimeout: b.ArchiveTimeout.Duration}
	if inRecovery {
		pc, err := primaryConnString(ctx, cfg, log)
		if err != nil {
			log.Warn("cannot find the primary to switch WAL; the backup may wait for the archive", "err", err)
		}
		opts.PrimaryConn = pc
	}
	if len(repos) == 1 {
		return a.backupInto(ctx, b, &repos[0], opts, f.expire)
	}
	failed := false
	for i := range repos {
		if err := a.backupInto(ctx, b, &repos[i], opts, f.expire); err != nil {
			fmt.Fprintf(a.env.Stderr, "Error: backup into %s: %v\n", &repos[i], err)
			failed = true
		}
	}
	if failed {
		return &exitError{code: exitError1}
	}
	return nil
}

// backupInto takes a backup into the repository r, then, with expire,
// applies the retention there.
func (a *app) backupInto(ctx context.Context, b *agent.BackupConfig, r *agent.BackupRepository, opts backup.BackupOptions, expire bool) error {
	repo, err := r.Connect(ctx)
	if err != nil {
		return err
	}
	counted := &countingRepo{Repository: repo}
	defer closeRepo(repo)
	st, err := backup.Open(ctx, counted, b.StoreOptions(a.logger(), r))
	if err != nil {
		return noConfigHint(err)
	}
	p := a.startProgress(ctx, "backup", func() string {
		n, bytes := counted.put()
		return fmt.Sprintf("%d files, %s stored", n, humanBytes(bytes))
	})
	m, err := st.Backup(ctx, opts)
	p.stop()
	if err != nil {
		return err
	}
	into := ""
	if r.Name != "" {
		into = " into " + r.String()
	}
	fmt.Fprintf(a.env.Stdout, "Backup %s (%s) taken%s: %d files, %s, %s stored, WAL %s to %s.\n",
		m.ID, m.Type, into, len(m.Files), humanBytes(m.Size), humanBytes(m.StoredSize), m.StartWAL, m.StopWAL)
	if !expire {
		return nil
	}
	if err := a.expire(ctx, st, b, r); err != nil {
		return fmt.Errorf("expire%s after backup %s: %w", into, m.ID, err)
	}
	return nil
}

// expire applies the retention of the repository r to its store st and
// says what it deleted.
func (a *app) expire(ctx context.Context, st *backup.Store, b *agent.BackupConfig, r *agent.BackupRepository) error {
	res, err := st.Expire(ctx, b.RetentionPolicy(r))
	if err != nil {
		return err
	}
	for _, id := range res.Backups {
		fmt.Fprintf(a.env.Stdout, "Expired backup %s.\n", id)
	}
	fmt.Fprintf(a.env.Stdout, "Expired %d backups and %d WAL files.\n", len(res.Backups), res.WAL)
	return nil
}

// localConnString reaches this host's PostgreSQL over its unix socket as
// the superuser.
func localConnString(cfg *agent.Config) string {
	return connString(map[string]string{
		"host": cfg.Postgres.SocketDir, "port": strconv.Itoa(cfg.Postgres.Port), "dbname": "postgres",
		"user": cfg.Postgres.Superuser.User, "password": cfg.Postgres.Superuser.Password,
		"application_name": "pgherd backup",
	})
}

// connString writes libpq keyword/value pairs, quoted.
func connString(kv map[string]string) string {
	var b strings.Builder
	for _, k := range []string{"host", "port", "dbname", "user", "password", "application_name", "connect_timeout"} {
		v, ok := kv[k]
		if !ok || v == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		v = strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v)
		fmt.Fprintf(&b, "%s='%s'", k, v)
	}
	return b.String()
}

func isInRecovery(ctx context.Context, conn string) (bool, error) {
	c, err := pgx.Connect(ctx, conn)
	if err != nil {
		return false, fmt.Errorf("connect to the local PostgreSQL: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var r bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&r); err != nil {
		return false, fmt.Errorf("local PostgreSQL: %w", err)
	}
	return r, nil
}

// primaryConnString reads the leader from etcd and reaches it as the
// superuser.
func primaryConnString(ctx context.Context, cfg *agent.Config, log *slog.Logger) (string, error) {
	cli, err := dcs.New(ctx, dcs.Options{Endpoints: cfg.Etcd.Endpoints, Cluster: cfg.Cluster, TLS: cfg.TLS.Client(), Logger: log.With("component", "dcs")})
	if err != nil {
		return "", err
	}
	defer cli.Close()
	st, err := cli.Read(ctx)
	if err != nil {
		return "", err
	}
	return leaderConnString(st, cfg)
}

// leaderConnString builds the conninfo of the leader member of st: its
// ConnURL's host and port, the superuser's credentials.
func leaderConnString(st *dcs.ClusterState, cfg *agent.Config) (string, error) {
	if st.Leader == nil {
		return "", errors.New("the cluster has no leader")
	}
	m, ok := st.Member(st.Leader.Name)
	if !ok || m.ConnURL == "" {
		return "", fmt.Errorf("the leader %q has no member key", st.Leader.Name)
	}
	u, err := url.Parse(m.ConnURL)
	if err != nil || u.Hostname() == "" {
		return "", fmt.Errorf("the leader %q has a bad conn_url %q", st.Leader.Name, m.ConnURL)
	}
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	return connString(map[string]string{
		"host": u.Hostname(), "port": port, "dbname": "postgres",
		"user": cfg.Postgres.Superuser.User, "password": cfg.Postgres.Superuser.Password,
		"application_name": "pgherd backup", "connect_timeout": "5",
	}), nil
}

func (a *app) backupListCommand() *cobra.Command {
	var config, repo string
	var asJSON bool
	c := &cobra.Command{
		Use:   "list [flags]",
		Short: "List the complete backups of each repository, oldest first",
		Long: `list shows the complete backups of the repository, oldest first: ID, type, the
backup an incremental is based on, start and stop time, WAL range, size and
stored size; with several repositories, those of each in turn (or of the one
--repo names). --json prints a JSON array instead, with the fields id, type,
prior, start_time, stop_time, start_lsn, stop_lsn, start_wal, stop_wal,
timeline, size and stored_size, and repository (its name) when it has one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := loadBackupConfig(config)
			if err != nil {
				return err
			}
			var all []backupJSON
			err = a.forEachRepo(ctx, cfg, repo, func(st *backup.Store, r *agent.BackupRepository, heading string) error {
				list, err := st.List(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					all = append(all, backupsJSON(r.Name, list)...)
					return nil
				}
				fmt.Fprint(a.env.Stdout, heading)
				if len(list) == 0 {
					fmt.Fprintln(a.env.Stdout, "No backup in the repository.")
					return nil
				}
				tw := tabwriter.NewWriter(a.env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTYPE\tPRIOR\tSTART\tSTOP\tWAL\tSIZE\tSTORED")
				for _, b := range list {
					prior := b.Prior
					if prior == "" {
						prior = "-"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s-%s\t%s\t%s\n", b.ID, b.Type, prior,
						b.StartTime.UTC().Format(time.DateTime), b.StopTime.UTC().Format(time.DateTime),
						b.StartWAL, b.StopWAL, humanBytes(b.Size), humanBytes(b.StoredSize))
				}
				return tw.Flush()
			})
			if asJSON {
				if jerr := writeBackupsJSON(a.env.Stdout, all); jerr != nil {
					return jerr
				}
			}
			return err
		},
	}
	configFlag(c, &config)
	repoFlag(c, &repo, "list only this repository")
	c.Flags().BoolVar(&asJSON, "json", false, "machine-readable JSON output")
	return c
}

// backupJSON is a backup as backup list --json prints it.
type backupJSON struct {
	Repository string    `json:"repository,omitempty"`
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	Prior      string    `json:"prior,omitempty"`
	StartTime  time.Time `json:"start_time"`
	StopTime   time.Time `json:"stop_time"`
	StartLSN   string    `json:"start_lsn"`
	StopLSN    string    `json:"stop_lsn"`
	StartWAL   string    `json:"start_wal"`
	StopWAL    string    `json:"stop_wal"`
	Timeline   uint32    `json:"timeline"`
	Size       int64     `json:"size"`
	StoredSize int64     `json:"stored_size"`
}

// backupsJSON are the backups of the repository repo as list --json
// prints them.
func backupsJSON(repo string, list []backup.BackupInfo) []backupJSON {
	out := make([]backupJSON, 0, len(list))
	for _, b := range list {
		out = append(out, backupJSON{Repository: repo, ID: b.ID, Type: string(b.Type), Prior: b.Prior, StartTime: b.StartTime, StopTime: b.StopTime,
			StartLSN: b.StartLSN.String(), StopLSN: b.StopLSN.String(), StartWAL: b.StartWAL, StopWAL: b.StopWAL,
			Timeline: b.Timeline, Size: b.Size, StoredSize: b.StoredSize})
	}
	return out
}

// writeBackupsJSON writes list indented, [] when empty.
func writeBackupsJSON(w io.Writer, list []backupJSON) error {
	if list == nil {
		list = []backupJSON{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(list)
}

func (a *app) backupVerifyCommand() *cobra.Command {
	var config, repo string
	c := &cobra.Command{
		Use:   "verify [flags]",
		Short: "Read back every backup and archived WAL file and check them",
		Long: `verify reads back every object of every backup and every archived WAL file and
checks it against its checksum, and checks that each backup's WAL range is
archived: in each repository in turn, or in the one --repo names.

Exit codes: 0 everything checked out; 1 problems found (listed on stderr) or
an error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := loadBackupConfig(config)
			if err != nil {
				return err
			}
			return a.forEachRepo(ctx, cfg, repo, func(st *backup.Store, r *agent.BackupRepository, heading string) error {
				fmt.Fprint(a.env.Stdout, heading)
				rep, err := st.Verify(ctx, cfg.Backup.Parallel)
				if rep != nil {
					for _, p := range rep.Problems {
						fmt.Fprintf(a.env.Stderr, "Problem%s: %s\n", inRepo(r), p)
					}
				}
				if errors.Is(err, backup.ErrVerifyFailed) {
					return fmt.Errorf("%d problems in %d backups, %d files, %d WAL files", len(rep.Problems), rep.Backups, rep.Files, rep.WAL)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.env.Stdout, "Verified %d backups, %d files, %d WAL files: no problem.\n", rep.Backups, rep.Files, rep.WAL)
				return nil
			})
		},
	}
	configFlag(c, &config)
	repoFlag(c, &repo, "verify only this repository")
	return c
}

func (a *app) backupExpireCommand() *cobra.Command {
	var config, repo string
	c := &cobra.Command{
		Use:   "expire [flags]",
		Short: "Delete the backups and WAL the retention does not keep",
		Long: `expire applies the configuration's retention: it keeps the newest
retention.full full backups (with their incrementals) and every full backup
younger than retention.age, and deletes the others and the WAL older than the
oldest kept backup. It is the only command that deletes backups. With several
repositories, the one retention applies to each in turn (or to the one --repo
names), on its own backups; a repository with a retention of its own keeps
by that one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			cfg, err := loadBackupConfig(config)
			if err != nil {
				return err
			}
			return a.forEachRepo(ctx, cfg, repo, func(st *backup.Store, r *agent.BackupRepository, heading string) error {
				fmt.Fprint(a.env.Stdout, heading)
				return a.expire(ctx, st, cfg.Backup, r)
			})
		},
	}
	repoFlag(c, &repo, "expire only in this repository")
	configFlag(c, &config)
	return c
}

func (a *app) backupInitCommand() *cobra.Command {
	var config, repo string
	c := &cobra.Command{
		Use:   "init [flags]",
		Short: "Create the repository's configuration",
		Long: `init creates the repository's configuration (config.json): its compression
level and, when the configuration has an encryption_passphrase, its
encryption key (each repository has its own key, under the one passphrase).
It refuses a repository that has one already. With several repositories, it
initializes each in turn, or the one --repo names.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.initRepos(cmd.Context(), config, repo)
		},
	}
	repoFlag(c, &repo, "initialize only this repository")
	configFlag(c, &config)
	return c
}

// restoreFlags are the flags of pgherd restore, in its two forms: on a
// database host (--data-dir) and from the operator's machine (--host).
type restoreFlags struct {
	config, dataDir, backupID, targetTime, targetLSN, targetTimeline, restoreCommand string
	delta                                                                            bool
	parallel                                                                         int
	repo                                                                             string

	host        string
	spec        specFlags
	autoApprove bool
	timeout     time.Duration
}

func (a *app) restoreCommand() *cobra.Command {
	var f restoreFlags
	c := &cobra.Command{
		Use:   "restore [flags] (--data-dir DIR | --host H [SPEC...])",
		Short: "Restore a backup: into a data directory, or the whole cluster to a point in time",
		Long: `restore has two forms.

With --data-dir, on a database host, it writes a backup into a data directory,
checking every file's checksum, and sets up recovery (recovery.signal and the
recovery settings) so that PostgreSQL, once started, replays the archived WAL
up to the target and promotes. Without --backup (or with --backup latest) it
picks the latest backup that can reach the target. The data directory must be
empty or absent, unless --delta is given: then files that already match are
kept, others are rewritten, and files the backup does not have are removed. A
data directory with a postmaster.pid (a running server) is refused.

With --host H, from the operator's machine, it rolls the whole HA cluster of
the spec back to the target, H (one of its PostgreSQL hosts) becoming the
primary: it shows the steps and asks for confirmation (unless -auto-approve),
archives the WAL written so far, stops every member's agent (replicas first),
moves the data directories aside (never deleting them; on H, with --delta, it
restores over H's instead), restores and recovers on H with no client let in,
clears the cluster's state in etcd (keeping its system identifier), starts H's
agent and waits until H is the primary, then starts the others, which copy it
(or restore a new full backup, taken first, with create_replica_from_backup),
and waits until they stream. What the long steps (the restore, the recovery,
the full backup) print on the host's stderr, their progress every ten
seconds, is shown on stderr as it comes, each line prefixed with the host. It
records its progress beside H's data directory: run the same command again
after an interruption and it resumes.
docs/runbooks/restore.md has the details and the manual fallback.

Exit codes: 0 restored; 1 error or cancelled.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRestoreFlags(&f, args, cmd.Flags().Changed); err != nil {
				return err
			}
			if f.host != "" {
				return a.runClusterRestore(cmd.Context(), &f, args)
			}
			return a.runRestore(cmd.Context(), &f)
		},
	}
	configFlag(c, &f.config)
	c.Flags().StringVar(&f.dataDir, "data-dir", "", "the data directory to restore into (the form run on a database host)")
	c.Flags().StringVar(&f.host, "host", "", "roll the whole cluster back, this PostgreSQL host becoming the primary (the form run with the spec)")
	c.Flags().StringVar(&f.backupID, "backup", "latest", "the backup ID, or latest")
	repoFlag(c, &f.repo, "the repository to restore from (default: the first that has a backup that reaches the target)")
	c.Flags().StringVar(&f.targetTime, "target-time", "", "recover up to this time, such as \"2026-11-22 00:50:00+00\" or RFC 3339")
	c.Flags().StringVar(&f.targetLSN, "target-lsn", "", "recover up to this WAL location, such as 0/3000060")
	c.Flags().StringVar(&f.targetTimeline, "target-timeline", "latest", "--data-dir: the timeline whose history recovery follows, or latest")
	c.Flags().BoolVar(&f.delta, "delta", false, "restore over an existing (stopped) data directory, rewriting only what differs")
	c.Flags().IntVar(&f.parallel, "parallel", 0, "files restored at once (default: the configuration's)")
	c.Flags().StringVar(&f.restoreCommand, "restore-command", "", "--data-dir: restore_command to configure (default: this pgherd's wal-fetch with this --config)")
	f.spec.register(c)
	c.Flags().BoolVar(&f.autoApprove, "auto-approve", false, "--host: do not ask for confirmation")
	c.Flags().DurationVar(&f.timeout, "timeout", 30*time.Minute, "--host: how long to wait for the new primary, and then for the other members to stream")
	c.AddCommand(a.restoreRecoverCommand(), a.restoreResetEtcdCommand())
	return c
}

// checkRestoreFlags checks that the flags make one form of restore, and
// parses the target; changed tells whether a flag was given.
func checkRestoreFlags(f *restoreFlags, args []string, changed func(string) bool) error {
	switch {
	case f.host == "" && f.dataDir == "":
		return errors.New("give --data-dir DIR (on a database host) or --host H (from the operator's machine, with the spec)")
	case f.host != "" && f.dataDir != "":
		return errors.New("--data-dir and --host exclude each other: --data-dir restores one data directory on this host, --host the whole cluster of the spec")
	}
	if f.targetTime != "" && f.targetLSN != "" {
		return errors.New("give --target-time or --target-lsn, not both")
	}
	if f.targetTime != "" {
		if _, err := parseTargetTime(f.targetTime); err != nil {
			return err
		}
	}
	if f.targetLSN != "" {
		if _, err := backup.ParseLSN(f.targetLSN); err != nil {
			return fmt.Errorf("--target-lsn: %w", err)
		}
	}
	if f.parallel < 0 {
		return fmt.Errorf("--parallel %d: want a positive number of files", f.parallel)
	}
	var only []string
	if f.host != "" {
		for _, n := range []string{"config", "restore-command", "target-timeline"} {
			if changed(n) {
				only = append(only, "--"+n)
			}
		}
		if len(only) > 0 {
			return fmt.Errorf("%s: only with --data-dir, on a database host (with --host, pgherd uses the agent's configuration and the cluster's timeline)", strings.Join(only, ", "))
		}
		if f.timeout <= 0 {
			return fmt.Errorf("--timeout %s: want a positive duration", f.timeout)
		}
		return nil
	}
	if len(args) > 0 {
		return fmt.Errorf("unexpected arguments %q: SPEC arguments go with --host", args)
	}
	for _, n := range []string{"var", "var-file", "auto-approve", "timeout"} {
		if changed(n) {
			only = append(only, "--"+n)
		}
	}
	if len(only) > 0 {
		return fmt.Errorf("%s: only with --host, from the operator's machine", strings.Join(only, ", "))
	}
	if _, err := parseTimeline(f.targetTimeline); err != nil {
		return err
	}
	return nil
}

// parseTimeline reads --target-timeline: latest (0) or a timeline ID.
func parseTimeline(s string) (uint32, error) {
	if s == "" || s == "latest" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("--target-timeline %q: want latest or a timeline ID (1, 2, ...)", s)
	}
	return uint32(n), nil
}

// timeLayouts are the --target-time formats, PostgreSQL's first.
var timeLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999Z07", "2006-01-02 15:04:05.999999999",
	time.RFC3339Nano,
}

func parseTargetTime(s string) (time.Time, error) {
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if y := t.UTC().Year(); y < 1 || y > 9999 {
				return time.Time{}, fmt.Errorf("--target-time %q: in UTC, the year %d is out of 1 to 9999", s, y)
			}
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--target-time %q: use \"2006-01-02 15:04:05+00\" or RFC 3339 (a time without zone is UTC)", s)
}

func (a *app) runRestore(ctx context.Context, f *restoreFlags) error {
	opts := backup.RestoreOptions{DataDir: f.dataDir, Delta: f.delta, RestoreCommand: f.restoreCommand}
	if f.backupID != "latest" {
		opts.BackupID = f.backupID
	}
	tli, err := parseTimeline(f.targetTimeline)
	if err != nil {
		return err
	}
	opts.TargetTimeline = tli
	if f.targetTime != "" {
		t, err := parseTargetTime(f.targetTime)
		if err != nil {
			return err
		}
		opts.TargetTime = t
	}
	if f.targetLSN != "" {
		l, err := backup.ParseLSN(f.targetLSN)
		if err != nil {
			return fmt.Errorf("--target-lsn: %w", err)
		}
		opts.TargetLSN = l
	}
	if !filepath.IsAbs(opts.DataDir) {
		abs, err := filepath.Abs(opts.DataDir)
		if err != nil {
			return err
		}
		opts.DataDir = abs
	}
	if _, err := os.Stat(filepath.Join(opts.DataDir, "postmaster.pid")); err == nil {
		return fmt.Errorf("%s: %w; stop it first", opts.DataDir, backup.ErrServerRunning)
	}
	cfg, err := loadBackupConfig(f.config)
	if err != nil {
		return err
	}
	opts.Parallel = cfg.Backup.Parallel
	if f.parallel > 0 {
		opts.Parallel = f.parallel
	}
	if opts.RestoreCommand == "" {
		opts.RestoreCommand = defaultRestoreCommand(f.config)
	}
	if err := prepareDataDir(opts.DataDir, cfg); err != nil {
		return err
	}
	log := a.logger()
	var counted countingRepo
	st, err := cfg.Backup.OpenForRestore(ctx, log, f.repo, opts, counted.wrap)
	if err != nil {
		return err
	}
	defer st.Close()
	if st.Name() != "" {
		fmt.Fprintf(a.env.Stdout, "Restoring from repository %q.\n", st.Name())
	}
	total := restoreTotal(ctx, st, opts)
	p := a.startProgress(ctx, "restore", func() string {
		n := counted.got()
		if total > 0 {
			return fmt.Sprintf("%d%% (%s of %s)", min(99, n*100/total), humanBytes(n), humanBytes(total))
		}
		return humanBytes(n) + " read"
	})
	res, err := st.Restore(ctx, opts)
	p.stop()
	if err != nil {
		return err
	}
	fmt.Fprintf(a.env.Stdout, "Restored backup %s into %s: %d files written, %d kept, %d removed.\n",
		res.BackupID, opts.DataDir, res.Written, res.Skipped, res.Removed)
	target := "the end of the archive"
	switch {
	case !opts.TargetTime.IsZero():
		target = opts.TargetTime.Format("2006-01-02 15:04:05.999999Z07:00")
	case opts.TargetLSN != 0:
		target = opts.TargetLSN.String()
	}
	fmt.Fprintf(a.env.Stdout, `Next: start PostgreSQL on this data directory. It replays the archived WAL
(restore_command = '%s') up to %s, then promotes.
For the cluster's own data directory, do not start the agent on it: run
pgherd restore recover first (docs/runbooks/restore.md), or restore the whole
cluster with pgherd restore --host from the operator's machine.
`, opts.RestoreCommand, target)
	return nil
}

// defaultRestoreCommand is restore_command calling this pgherd: by its
// absolute path when the running binary is pgherd, since PostgreSQL's
// PATH may not hold it.
func defaultRestoreCommand(config string) string {
	exe := "pgherd"
	if p, err := os.Executable(); err == nil && filepath.Base(p) == "pgherd" {
		exe = p
	}
	cmd := exe + " wal-fetch"
	if config != agent.ConfigPath {
		cmd += " --config " + shellQuote(config)
	}
	return cmd + ` %f "%p"`
}

// shellQuote quotes s for sh when it needs it. The result goes into a
// single-quoted postgresql.conf string, where the library doubles quotes.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=:,@") == "" {
		return s
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "$", `\$`, "`", "\\`").Replace(s) + `"`
}

// prepareDataDir creates an absent data directory, owned by PostgreSQL's
// OS user when running as root, so that the restored files (which take
// the directory's owner) belong to it.
func prepareDataDir(dir string, cfg *agent.Config) error {
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return nil
	}
	name := cfg.Postgres.OSUser
	if name == "" {
		name = "postgres"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("owner of the data directory: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return os.Chown(dir, uid, gid)
}

// restoreTotal estimates the stored bytes a restore reads, for progress:
// the stored size of every file of the backup it will restore (0 when that
// is not known before the library picks it).
func restoreTotal(ctx context.Context, st *backup.Store, opts backup.RestoreOptions) int64 {
	id := opts.BackupID
	if id == "" {
		if !opts.TargetTime.IsZero() || opts.TargetLSN != 0 {
			return 0
		}
		list, err := st.List(ctx)
		if err != nil || len(list) == 0 {
			return 0
		}
		id = list[len(list)-1].ID
	}
	m, err := st.LoadManifest(ctx, id)
	if err != nil {
		return 0
	}
	var n int64
	for _, f := range m.Files {
		n += f.StoredSize
	}
	return n
}

func closeRepo(r backup.Repository) {
	if c, ok := r.(io.Closer); ok {
		c.Close()
	}
}

// humanBytes writes n in binary units, as PostgreSQL does (1kB = 1024 B).
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f := float64(n)
	for _, u := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		if f < unit {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return fmt.Sprintf("%.1f PB", f/unit)
}
