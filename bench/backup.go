package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/backup"
)

// Flags of the backup suite (registered here so that main.go only needs
// the suite's case).
var (
	backupGB   = flag.Float64("backup-gb", 4, "backup suite: size of the generated database in GB")
	backupRuns = flag.Int("backup-runs", 5, "backup suite: measured runs per full-backup and restore figure (median and best)")
)

// pgBinDir is where Debian installs PostgreSQL 15's server binaries.
const pgBinDir = "/usr/lib/postgresql/15/bin"

// backupParallel is the number of processes or threads every tool gets
// (pg_basebackup has one).
const backupParallel = 2

// pgbackrestStanza is the stanza name in the generated pgbackrest.conf.
const pgbackrestStanza = "bench"

// reBackrestLabel matches pgBackRest's backup set labels.
var reBackrestLabel = regexp.MustCompile(`^[0-9]{8}-[0-9]{6}F(_[0-9]{8}-[0-9]{6}[DI])?$`)

// backupBench is the state of one run of the backup suite: a PostgreSQL 15
// server on loopback with its data directory, and the work directory that
// holds it and every repository. Everything lives under dir, removed at
// the end.
type backupBench struct {
	log      *slog.Logger
	dir      string // the suite's temporary directory (owned by postgres)
	data     string // PGDATA
	port     int
	uid, gid int    // the postgres OS user
	conn     string // pgx connection string
	dbSize   int64  // bytes a backup copies (data directory without pg_wal)
	runs     int
}

// backupResult is one measured operation.
type backupResult struct {
	times  []time.Duration
	stored int64 // bytes in the repository (last run)
}

func (r *backupResult) median() time.Duration { return median(r.times) }

// best is the shortest run: the one least disturbed by other load.
func (r *backupResult) best() time.Duration { return slices.Min(r.times) }

// cell formats a result as throughput over size: the median, and the best
// run when there were several.
func (r *backupResult) cell(size int64) string {
	if len(r.times) < 2 {
		return mbps(size, r.median())
	}
	return fmt.Sprintf("%s; best %.0f MB/s", mbps(size, r.median()), float64(size)/1e6/r.best().Seconds())
}

// backupSuite runs the backup comparison and returns its RESULTS.md
// section. Every process it starts and every file it writes is gone when
// it returns, error or not (Ctrl-C included).
func backupSuite(ctx context.Context, log *slog.Logger, gb float64, runs int) (section string, err error) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if runs < 1 {
		runs = 1
	}
	for _, bin := range []string{filepath.Join(pgBinDir, "postgres"), "pgbackrest", filepath.Join(pgBinDir, "pgbench"), filepath.Join(pgBinDir, "pg_basebackup"), "runuser"} {
		if _, err := exec.LookPath(bin); err != nil {
			return "", fmt.Errorf("backup suite: %s is missing (apt-get install postgresql-15 pgbackrest): %w", bin, err)
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return "", fmt.Errorf("backup suite: %w", err)
	}
	b := &backupBench{log: log, runs: runs}
	b.uid, _ = strconv.Atoi(u.Uid)
	b.gid, _ = strconv.Atoi(u.Gid)
	if b.dir, err = os.MkdirTemp("", "pgherd-bench-backup-"); err != nil {
		return "", err
	}
	defer func() {
		if rerr := os.RemoveAll(b.dir); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := b.mkdir(b.dir); err != nil {
		return "", err
	}
	if err := b.startServer(ctx); err != nil {
		return "", err
	}
	defer func() {
		if serr := b.stopServer(); serr != nil && err == nil {
			err = serr
		}
	}()
	if err := b.generate(ctx, gb); err != nil {
		return "", err
	}
	return b.measure(ctx)
}

// mkdir creates dir (if needed) owned by postgres.
func (b *backupBench) mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.Chown(dir, b.uid, b.gid)
}

// asPostgres runs a command as the postgres OS user.
func (b *backupBench) asPostgres(ctx context.Context, name string, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, "runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	c.Dir = b.dir
	c.WaitDelay = 10 * time.Second
	return c
}

func (b *backupBench) run(ctx context.Context, name string, args ...string) error {
	_, err := timed(b.asPostgres(ctx, name, args...))
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startServer initdbs a data directory with checksums and starts it on a
// free loopback port. WAL archiving is on with archive_command = /bin/true:
// the comparison is about base backups, so no tool pays for archiving.
func (b *backupBench) startServer(ctx context.Context) error {
	var err error
	if b.port, err = freePort(); err != nil {
		return err
	}
	b.data = filepath.Join(b.dir, "pgdata")
	b.log.Info("backup: initdb", "datadir", b.data, "port", b.port)
	if err := b.run(ctx, filepath.Join(pgBinDir, "initdb"), "-D", b.data, "--data-checksums", "-A", "trust",
		"-U", "postgres", "-E", "UTF8", "--locale=C", "--no-instructions"); err != nil {
		return err
	}
	conf := fmt.Sprintf(`
# pgherd backup bench
listen_addresses = '127.0.0.1'
port = %d
unix_socket_directories = '%s'
wal_level = replica
archive_mode = on
archive_command = '/bin/true'
max_wal_senders = 4
shared_buffers = 256MB
maintenance_work_mem = 256MB
max_wal_size = 16GB
checkpoint_timeout = 1h
autovacuum = off
synchronous_commit = off
`, b.port, b.dir)
	f, err := os.OpenFile(filepath.Join(b.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(conf); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := b.run(ctx, filepath.Join(pgBinDir, "pg_ctl"), "-D", b.data, "-l", filepath.Join(b.dir, "postgres.log"), "-w", "-t", "60", "start"); err != nil {
		return err
	}
	b.conn = fmt.Sprintf("host=127.0.0.1 port=%d user=postgres dbname=postgres sslmode=disable", b.port)
	return nil
}

// stopServer stops the server; it is used in cleanup, so it does not take
// the (possibly cancelled) suite context.
func (b *backupBench) stopServer() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return b.run(ctx, filepath.Join(pgBinDir, "pg_ctl"), "-D", b.data, "-m", "fast", "-w", "stop")
}

// The generated database: about a third pgbench (very compressible: its
// filler columns are blanks) and two thirds an events table of random
// text, numbers and times (compresses like real data, ~2×).
const (
	pgbenchShare  = 0.35
	pgbenchMBper  = 14.1  // on-disk MB per pgbench scale unit, index included
	eventsRowSize = 173.0 // on-disk bytes per events row, index included
)

const eventsTable = `CREATE TABLE events (
	id         bigint NOT NULL,
	account_id integer NOT NULL,
	kind       text NOT NULL,
	amount     numeric(14,2) NOT NULL,
	score      double precision NOT NULL,
	created_at timestamptz NOT NULL,
	reference  text NOT NULL,
	note       text NOT NULL
)`

// eventsInsert fills ids $1..$2.
const eventsInsert = `INSERT INTO events
SELECT g,
	(random() * 1e7)::int,
	(ARRAY['deposit','withdrawal','transfer','fee','refund','interest'])[1 + (g % 6)],
	round((random() * 20000 - 5000)::numeric, 2),
	random(),
	timestamptz '2024-01-01' + random() * interval '700 days',
	upper(substr(md5(g::text), 1, 12)),
	md5(random()::text) || ' ' || substr(md5(random()::text), 1, 1 + (g % 24)::int)
FROM generate_series($1::bigint, $2::bigint) g`

// generate fills the database with about gb GB: pgbench -i at a scale
// giving pgbenchShare of it, and the events table for the rest (loaded by
// two sessions at once), then vacuums (hint bits set, like a settled
// database) and checkpoints.
func (b *backupBench) generate(ctx context.Context, gb float64) error {
	total := gb * 1e9
	scale := max(1, int(total*pgbenchShare/(pgbenchMBper*1e6)))
	rows := int64(total * (1 - pgbenchShare) / eventsRowSize)
	b.log.Info("backup: generating the database", "gb", gb, "pgbench_scale", scale, "events_rows", rows)
	start := time.Now()
	if err := b.run(ctx, filepath.Join(pgBinDir, "pgbench"), "-i", "-I", "dtGvp", "-q", "-s", strconv.Itoa(scale),
		"-h", "127.0.0.1", "-p", strconv.Itoa(b.port), "-U", "postgres", "postgres"); err != nil {
		return err
	}
	if err := b.exec(ctx, eventsTable); err != nil {
		return err
	}
	const loaders = 2
	errs := make(chan error, loaders)
	for i := range int64(loaders) {
		lo, hi := i*rows/loaders+1, (i+1)*rows/loaders
		go func() { errs <- b.exec(ctx, eventsInsert, lo, hi) }()
	}
	var err error
	for range loaders {
		err = errors.Join(err, <-errs)
	}
	if err != nil {
		return err
	}
	for _, q := range []string{"ALTER TABLE events ADD PRIMARY KEY (id)", "VACUUM (ANALYZE) events", "CHECKPOINT"} {
		if err := b.exec(ctx, q); err != nil {
			return err
		}
	}
	if b.dbSize, err = backedUpSize(b.data); err != nil {
		return err
	}
	b.log.Info("backup: database ready", "bytes", b.dbSize, "took", time.Since(start).Round(time.Second))
	return nil
}

// settle runs, untimed, before each backup: a CHECKPOINT, so that no
// tool pays for the previous one's dirty buffers, then sync(2), so that
// none pays for writing out what an earlier step left in the page cache.
func (b *backupBench) settle(ctx context.Context) error {
	if err := b.exec(ctx, "CHECKPOINT"); err != nil {
		return err
	}
	syscall.Sync()
	return nil
}

// exec runs one statement on a new connection.
func (b *backupBench) exec(ctx context.Context, sql string, args ...any) error {
	c, err := pgx.Connect(ctx, b.conn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%.60s: %w", sql, err)
	}
	return nil
}

// updateFraction is the share of rows the incremental step updates.
const updateFraction = 0.05

// update changes 5% of the rows of every pgbench table and of events: a
// contiguous key range of each big table (recent, "hot" rows, as in most
// OLTP workloads), every branch and teller.
func (b *backupBench) update(ctx context.Context) error {
	c, err := pgx.Connect(ctx, b.conn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	var accounts, events int64
	if err := c.QueryRow(ctx, "SELECT (SELECT max(aid) FROM pgbench_accounts), (SELECT max(id) FROM events)").Scan(&accounts, &events); err != nil {
		return err
	}
	// The ranges sit at 60% of each table: neither its first nor its last
	// file segment.
	span := func(n int64) (int64, int64) {
		lo := n * 6 / 10
		return lo, lo + int64(float64(n)*updateFraction)
	}
	alo, ahi := span(accounts)
	elo, ehi := span(events)
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"UPDATE pgbench_accounts SET abalance = abalance + (random() * 1000)::int WHERE aid > $1 AND aid <= $2", []any{alo, ahi}},
		{"UPDATE events SET amount = amount + 1, score = random(), note = md5(random()::text) WHERE id > $1 AND id <= $2", []any{elo, ehi}},
		{"UPDATE pgbench_branches SET bbalance = bbalance + 1", nil},
		{"UPDATE pgbench_tellers SET tbalance = tbalance + 1", nil},
		{"CHECKPOINT", nil},
	} {
		if _, err := c.Exec(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("%.60s: %w", q.sql, err)
		}
	}
	return nil
}

// backedUpSize is the size of what a base backup copies: the data
// directory without pg_wal.
func backedUpSize(dataDir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "pg_wal" {
			return fs.SkipDir
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// treeSize is the total size of the regular files under dir.
func treeSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	return n, err
}

// pgherdRepo opens (initializing it) a pgherd path repository in dir.
func (b *backupBench) pgherdRepo(ctx context.Context, dir string) (*backup.Store, error) {
	repo, err := backup.NewLocal(dir)
	if err != nil {
		return nil, err
	}
	return backup.Init(ctx, repo, backup.Options{Level: 3, Log: b.log.With("tool", "pgherd")})
}

// pgherdBackup takes one backup and returns its wall time, manifest and
// stored size (the backup's directory in the repository).
func (b *backupBench) pgherdBackup(ctx context.Context, st *backup.Store, repoDir string, typ backup.BackupType) (time.Duration, *backup.Manifest, int64, error) {
	if err := b.settle(ctx); err != nil {
		return 0, nil, 0, err
	}
	start := time.Now()
	m, err := st.Backup(ctx, backup.BackupOptions{DataDir: b.data, Conn: b.conn, Type: typ,
		Parallel: backupParallel, Level: 3, ArchiveTimeout: -1})
	d := time.Since(start)
	if err != nil {
		return 0, nil, 0, err
	}
	n, err := treeSize(filepath.Join(repoDir, "backup", m.ID))
	return d, m, n, err
}

// pgherdRestore restores backup id into a new directory, then syncs (the
// library does not fsync restored files; pgBackRest does, so the sync is
// part of the time), checks it and removes it.
func (b *backupBench) pgherdRestore(ctx context.Context, st *backup.Store, id string) (time.Duration, error) {
	dir := filepath.Join(b.dir, "restore-pgherd")
	if err := b.mkdir(dir); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	syscall.Sync()
	start := time.Now()
	if _, err := st.Restore(ctx, backup.RestoreOptions{BackupID: id, DataDir: dir, Parallel: backupParallel,
		RestoreCommand: "/bin/false"}); err != nil {
		return 0, err
	}
	syscall.Sync()
	d := time.Since(start)
	return d, b.checkRestored(dir)
}

// checkRestored sanity-checks a restored data directory: about the
// database's size, with a backup_label.
func (b *backupBench) checkRestored(dir string) error {
	if _, err := os.Stat(filepath.Join(dir, "backup_label")); err != nil {
		return fmt.Errorf("restored %s: %w", dir, err)
	}
	n, err := backedUpSize(dir)
	if err != nil {
		return err
	}
	if n < b.dbSize*9/10 {
		return fmt.Errorf("restored %s holds %d bytes, the database %d", dir, n, b.dbSize)
	}
	return nil
}

// pgbackrest is a pgBackRest configuration: a stanza for the bench server
// with repo1 in repoDir.
type pgbackrest struct {
	b       *backupBench
	conf    string
	repoDir string
}

func (b *backupBench) newPgbackrest(ctx context.Context, name string) (*pgbackrest, error) {
	p := &pgbackrest{b: b, conf: filepath.Join(b.dir, name+".conf"), repoDir: filepath.Join(b.dir, name)}
	for _, d := range []string{p.repoDir, p.repoDir + "-lock", p.repoDir + "-log"} {
		if err := b.mkdir(d); err != nil {
			return nil, err
		}
	}
	conf := fmt.Sprintf(`[global]
repo1-path=%s
repo1-retention-full=99
process-max=%d
compress-type=zst
compress-level=3
start-fast=y
archive-check=n
lock-path=%s-lock
log-path=%s-log
log-level-console=warn
log-level-file=off

[%s]
pg1-path=%s
pg1-port=%d
pg1-socket-path=%s
pg1-user=postgres
`, p.repoDir, backupParallel, p.repoDir, p.repoDir, pgbackrestStanza, b.data, b.port, b.dir)
	if err := os.WriteFile(p.conf, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := b.run(ctx, "pgbackrest", "--config="+p.conf, "--stanza="+pgbackrestStanza, "stanza-create"); err != nil {
		return nil, err
	}
	return p, nil
}

// labels lists the backup sets in the repository, oldest first.
func (p *pgbackrest) labels() ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(p.repoDir, "backup", pgbackrestStanza))
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && reBackrestLabel.MatchString(e.Name()) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// backup takes one backup of type typ ("full", "incr") and returns its
// wall time, label and stored size.
func (p *pgbackrest) backup(ctx context.Context, typ string) (time.Duration, string, int64, error) {
	if err := p.b.settle(ctx); err != nil {
		return 0, "", 0, err
	}
	before, err := p.labels()
	if err != nil {
		return 0, "", 0, err
	}
	d, err := timed(p.b.asPostgres(ctx, "pgbackrest", "--config="+p.conf, "--stanza="+pgbackrestStanza, "--type="+typ, "backup"))
	if err != nil {
		return 0, "", 0, err
	}
	after, err := p.labels()
	if err != nil {
		return 0, "", 0, err
	}
	if len(after) != len(before)+1 {
		return 0, "", 0, fmt.Errorf("pgbackrest backup: expected one new backup set, have %q", after)
	}
	label := after[len(after)-1]
	n, err := treeSize(filepath.Join(p.repoDir, "backup", pgbackrestStanza, label))
	return d, label, n, err
}

// restore restores set label into a new directory (process-max=2),
// checks it and removes it.
func (p *pgbackrest) restore(ctx context.Context, label string) (time.Duration, error) {
	dir := filepath.Join(p.b.dir, "restore-pgbackrest")
	if err := p.b.mkdir(dir); err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	syscall.Sync()
	d, err := timed(p.b.asPostgres(ctx, "pgbackrest", "--config="+p.conf, "--stanza="+pgbackrestStanza,
		"--set="+label, "--pg1-path="+dir, "--process-max="+strconv.Itoa(backupParallel), "restore"))
	if err != nil {
		return 0, err
	}
	return d, p.b.checkRestored(dir)
}

// basebackup runs pg_basebackup (tar format, client-side zstd-3, WAL
// streamed) into a new directory and returns its wall time and size.
func (b *backupBench) basebackup(ctx context.Context) (time.Duration, int64, error) {
	dir := filepath.Join(b.dir, "basebackup")
	os.RemoveAll(dir)
	if err := b.settle(ctx); err != nil {
		return 0, 0, err
	}
	d, err := timed(b.asPostgres(ctx, filepath.Join(pgBinDir, "pg_basebackup"), "-D", dir, "-Ft", "--compress=client-zstd:3", "-X", "stream",
		"-c", "fast", "-h", "127.0.0.1", "-p", strconv.Itoa(b.port), "-U", "postgres"))
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	n, err := treeSize(dir)
	return d, n, err
}

// measure runs the comparison; the three tools take turns in every round
// so that load from elsewhere on the machine spreads over all of them.
func (b *backupBench) measure(ctx context.Context) (string, error) {
	var (
		hFull, rFull, bFull backupResult
		hIncr, rIncr        backupResult
		hRest, rRest        backupResult
		hRestI, rRestI      backupResult
		hStore              *backup.Store
		hRepo               string
		hFullID, hIncrID    string
		pbr                 *pgbackrest
		rFullLabel          string
		rIncrLabel          string
		hRatio              float64
	)
	for i := range b.runs {
		// Fresh repositories each round; the last round's are kept for the
		// incremental and restore steps.
		if hRepo != "" {
			os.RemoveAll(hRepo)
			os.RemoveAll(pbr.repoDir)
		}
		hRepo = filepath.Join(b.dir, fmt.Sprintf("repo-pgherd-%d", i))
		var err error
		if hStore, err = b.pgherdRepo(ctx, hRepo); err != nil {
			return "", err
		}
		if pbr, err = b.newPgbackrest(ctx, fmt.Sprintf("repo-pgbackrest-%d", i)); err != nil {
			return "", err
		}

		steps := []func() error{
			func() error {
				b.log.Info("backup: pgherd full backup", "round", i+1)
				d, m, n, err := b.pgherdBackup(ctx, hStore, hRepo, backup.Full)
				if err != nil {
					return fmt.Errorf("pgherd full backup: %w", err)
				}
				hFull.times, hFull.stored, hFullID = append(hFull.times, d), n, m.ID
				hRatio = float64(m.Size) / float64(max(1, m.StoredSize))
				return nil
			},
			func() error {
				b.log.Info("backup: pgBackRest full backup", "round", i+1)
				d, label, n, err := pbr.backup(ctx, "full")
				if err != nil {
					return fmt.Errorf("pgbackrest full backup: %w", err)
				}
				rFull.times, rFull.stored, rFullLabel = append(rFull.times, d), n, label
				return nil
			},
			func() error {
				b.log.Info("backup: pg_basebackup", "round", i+1)
				d, n, err := b.basebackup(ctx)
				if err != nil {
					return fmt.Errorf("pg_basebackup: %w", err)
				}
				bFull.times, bFull.stored = append(bFull.times, d), n
				return nil
			},
		}
		// Each round starts with another tool.
		for k := range steps {
			if err := steps[(i+k)%len(steps)](); err != nil {
				return "", err
			}
		}
	}

	b.log.Info("backup: updating 5% of the rows")
	if err := b.update(ctx); err != nil {
		return "", fmt.Errorf("update: %w", err)
	}
	dbAfter, err := backedUpSize(b.data)
	if err != nil {
		return "", err
	}
	b.log.Info("backup: pgherd incremental backup")
	d, m, n, err := b.pgherdBackup(ctx, hStore, hRepo, backup.Incr)
	if err != nil {
		return "", fmt.Errorf("pgherd incremental backup: %w", err)
	}
	if m.Type != backup.Incr {
		return "", fmt.Errorf("pgherd incremental backup: got a %s backup", m.Type)
	}
	hIncr.times, hIncr.stored, hIncrID = []time.Duration{d}, n, m.ID
	b.log.Info("backup: pgBackRest incremental backup")
	d, rIncrLabel, n, err = pbr.backup(ctx, "incr")
	if err != nil {
		return "", fmt.Errorf("pgbackrest incremental backup: %w", err)
	}
	rIncr.times, rIncr.stored = []time.Duration{d}, n

	for i := range b.runs {
		b.log.Info("backup: restores", "round", i+1)
		restores := []struct {
			res *backupResult
			run func() (time.Duration, error)
		}{
			{&hRest, func() (time.Duration, error) { return b.pgherdRestore(ctx, hStore, hFullID) }},
			{&rRest, func() (time.Duration, error) { return pbr.restore(ctx, rFullLabel) }},
			{&hRestI, func() (time.Duration, error) { return b.pgherdRestore(ctx, hStore, hIncrID) }},
			{&rRestI, func() (time.Duration, error) { return pbr.restore(ctx, rIncrLabel) }},
		}
		for k := range restores {
			r := restores[(i+k)%len(restores)]
			d, err := r.run()
			if err != nil {
				return "", fmt.Errorf("restore: %w", err)
			}
			r.res.times = append(r.res.times, d)
		}
	}

	versions := toolVersions(ctx)
	rows := []backupRow{
		{"full backup", b.dbSize, &hFull, &rFull, &bFull, true},
		{"incremental backup (5% of rows updated)", dbAfter, &hIncr, &rIncr, nil, true},
		{"restore of the full backup", b.dbSize, &hRest, &rRest, nil, false},
		{"restore of the incremental backup", dbAfter, &hRestI, &rRestI, nil, false},
	}
	return renderBackup(b.dbSize, hRatio, b.runs, versions, rows), nil
}

// backupRow is a line of the results table: one operation by each tool
// (bb is nil where pg_basebackup has no equivalent).
type backupRow struct {
	name         string
	size         int64 // database bytes the throughput is computed on
	h, r, bb     *backupResult
	storedColumn bool
}

func toolVersions(ctx context.Context) map[string]string {
	out := map[string]string{}
	for name, args := range map[string][]string{
		"pgbackrest":    {"pgbackrest", "version"},
		"pg_basebackup": {filepath.Join(pgBinDir, "pg_basebackup"), "--version"},
	} {
		b, err := exec.CommandContext(ctx, args[0], args[1:]...).Output()
		if err == nil {
			out[name] = strings.TrimSpace(string(b))
		}
	}
	return out
}

func mbps(size int64, d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.0f MB/s (%.1f s)", float64(size)/1e6/d.Seconds(), d.Seconds())
}

func gbytes(n int64) string {
	if n < 1e9 {
		return fmt.Sprintf("%.0f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f GB", float64(n)/1e9)
}

// renderBackup formats the section: the table, then how it was measured.
func renderBackup(dbSize int64, ratio float64, runs int, versions map[string]string, rows []backupRow) string {
	var s strings.Builder
	s.WriteString("## Backup and restore: pgherd vs pgBackRest vs pg_basebackup\n\n")
	fmt.Fprintf(&s, "Machine: %s; shared with other work, so figures move by ±20%% between runs.\n", machine())
	fmt.Fprintf(&s, "Database: PostgreSQL 15 on loopback, data checksums on, %s to back up (the data directory without pg_wal): ", gbytes(dbSize))
	fmt.Fprintf(&s, "about %.0f%% pgbench tables (scale-sized, very compressible) and the rest an `events` table of random numbers, times and md5 text; ", pgbenchShare*100)
	fmt.Fprintf(&s, "zstd-3 compresses it %.1f× (pgherd's stored size).\n", ratio)
	fmt.Fprintf(&s, "Throughput is database size / wall time, MB = 10⁶ bytes. Full backups and restores: %d runs, the tools taking turns (each round starting with another one), median (and best run: the machine is shared, and the best run is the least disturbed); incrementals: 1 run.\n\n", runs)
	s.WriteString("| operation | pgherd | pgBackRest | pg_basebackup | pgherd / pgBackRest |\n")
	s.WriteString("|---|---:|---:|---:|---:|\n")
	for _, r := range rows {
		bb := "—"
		if r.bb != nil {
			bb = r.bb.cell(r.size)
		}
		ratio := fmt.Sprintf("%.2f×", r.r.median().Seconds()/r.h.median().Seconds())
		if len(r.h.times) > 1 {
			ratio += fmt.Sprintf("; best %.2f×", r.r.best().Seconds()/r.h.best().Seconds())
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %s |\n", r.name, r.h.cell(r.size), r.r.cell(r.size), bb, ratio)
		if r.storedColumn {
			bbs := "—"
			if r.bb != nil {
				bbs = gbytes(r.bb.stored)
			}
			fmt.Fprintf(&s, "| … stored in the repository | %s | %s | %s | %.2f× |\n", gbytes(r.h.stored), gbytes(r.r.stored), bbs,
				float64(r.r.stored)/float64(max(1, r.h.stored)))
		}
	}
	if len(rows) >= 2 {
		fmt.Fprintf(&s, "\npgherd's incremental backup took %.1f× less time than its full backup (pgBackRest: %.1f×).\n",
			rows[0].h.median().Seconds()/rows[1].h.median().Seconds(), rows[0].r.median().Seconds()/rows[1].r.median().Seconds())
	}
	s.WriteString("\nHow it is measured (`go run ./bench -suites backup -backup-gb 4`, bench/backup.go):\n\n")
	fmt.Fprintf(&s, "- Versions: pgherd (this tree, library `agent/backup`, in process); %s; %s.\n", versions["pgbackrest"], versions["pg_basebackup"])
	fmt.Fprintf(&s, "- Same resources: %d workers for pgherd (`Parallel`), `process-max=%d` for pgBackRest (backup and restore); pg_basebackup has one process (plus the server's walsender). zstd level 3 everywhere (pgherd: klauspost/compress at its zstd-3 equivalent).\n", backupParallel, backupParallel)
	s.WriteString("- Repositories and restore targets on the same disk as the data directory; the data is in the page cache (23 GB RAM), for every tool alike. Each tool fsyncs what it writes: pgherd and pgBackRest their repository files, pg_basebackup its output; pgherd's restore does not fsync (it starts the kernel's writeback as it writes), so a sync(2) after it is included in its time; pgBackRest fsyncs restored files itself.\n")
	s.WriteString("- WAL archiving is on with `archive_command = '/bin/true'`: this compares base backups only, so no tool archives WAL or waits for it (pgherd `ArchiveTimeout: -1`, pgBackRest `archive-check=n`); pg_basebackup streams the WAL of the backup into its output (`-X stream`), which is in its time and size. `start-fast`/`-c fast` everywhere; a CHECKPOINT and a sync(2) run, untimed, before each backup and restore.\n")
	s.WriteString("- Incremental: after the full backups, 5% of the rows of pgbench_accounts and of events (a contiguous key range of each, at 60% of the table, like hot recent rows), every branch and teller are updated, then `pgherd` Incr and `pgbackrest --type=incr` run once each on top of their full backup. pgherd stores changed 8 KiB pages (by page LSN); pgBackRest 2.45 copies every changed file whole (its 1 GB segments). Updating rows scattered over every page would make every page change, and pgherd's incremental as big as a full one.\n")
	s.WriteString("- Restores go into an empty directory, with checksum checks (both tools check every file); restoring the incremental backup rebuilds files from the full backup plus the changes in both tools. Neither restored directory is started (no WAL archive here).\n")
	s.WriteString("\nTarget (issue 5): pgherd ≥ pgBackRest on every row; incremental several times faster than full.\n")
	return s.String()
}
