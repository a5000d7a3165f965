package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Sentinel errors of Restore.
var (
	// ErrDataDirNotEmpty: a non-delta restore needs an empty (or absent)
	// data directory.
	ErrDataDirNotEmpty = errors.New("data directory is not empty")
	// ErrServerRunning: the data directory has a postmaster.pid.
	ErrServerRunning = errors.New("data directory has a postmaster.pid (is the server running?)")
)

// RestoreOptions configure Restore.
type RestoreOptions struct {
	// BackupID is the backup to restore; "" picks the latest one that
	// can reach the target.
	BackupID string
	// DataDir is created if absent. When it exists and the process runs
	// as root, restored files take its owner.
	DataDir string
	// TargetTime or TargetLSN stop recovery there (inclusive); neither
	// means "replay all archived WAL".
	TargetTime time.Time
	TargetLSN  LSN
	// TargetTimeline is recovery_target_timeline: the timeline whose
	// history recovery follows; 0 means "latest", the newest timeline in
	// the archive, which may be one a cluster abandoned (an earlier
	// restore's), not the one the target is on.
	TargetTimeline uint32
	// TargetAction is recovery_target_action (default "promote").
	TargetAction string
	// Delta rewrites only the files whose content differs, and removes
	// files the backup does not have.
	Delta bool
	// Parallel is the number of files restored at once (default 2).
	Parallel int
	// RestoreCommand is restore_command (default
	// `pgherd wal-fetch %f "%p"`).
	RestoreCommand string
	// Standby leaves recovery to the caller, which makes the data
	// directory a standby (standby.signal, primary_conninfo and its own
	// restore_command): no recovery.signal and no recovery settings are
	// written, only backup_label and tablespace_map. No target then.
	Standby bool
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	BackupID string
	Written  int // files written
	Skipped  int // files already right (delta)
	Removed  int // files removed (delta)
}

// Restore writes a backup into a data directory, checking every file's
// checksum as it writes, and sets up recovery (recovery.signal and the
// recovery settings in postgresql.auto.conf) so that PostgreSQL replays
// archived WAL up to the target.
func (s *Store) Restore(ctx context.Context, opts RestoreOptions) (*RestoreResult, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.Standby && (!opts.TargetTime.IsZero() || opts.TargetLSN != 0 || opts.TargetTimeline != 0) {
		return nil, errors.New("restore: a standby restore takes no recovery target")
	}
	m, err := s.chooseBackup(ctx, opts)
	if err != nil {
		return nil, err
	}
	res := &RestoreResult{BackupID: m.ID}
	log := s.log.With("backup", m.ID, "datadir", opts.DataDir)
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if _, err := os.Stat(filepath.Join(opts.DataDir, "postmaster.pid")); err == nil {
		return nil, fmt.Errorf("restore %s: %w", opts.DataDir, ErrServerRunning)
	}
	entries, err := os.ReadDir(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	if len(entries) > 0 && !opts.Delta {
		return nil, fmt.Errorf("restore %s: %w (use delta restore)", opts.DataDir, ErrDataDirNotEmpty)
	}
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		if fi, err := os.Stat(opts.DataDir); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				uid, gid = int(st.Uid), int(st.Gid)
			}
		}
	}
	chown := func(p string) error {
		if uid < 0 {
			return nil
		}
		return os.Lchown(p, uid, gid)
	}
	log.Info("restore starting", "delta", opts.Delta, "files", len(m.Files))

	// Tablespaces first: their links must exist before files go through them.
	for _, l := range m.Links {
		if err := os.MkdirAll(l.Target, 0o700); err != nil {
			return nil, fmt.Errorf("restore: tablespace %s: %w", l.Target, err)
		}
		chown(l.Target)
		p := filepath.Join(opts.DataDir, filepath.FromSlash(l.Path))
		os.MkdirAll(filepath.Dir(p), 0o700)
		if cur, err := os.Readlink(p); err != nil || cur != l.Target {
			os.Remove(p)
			if err := os.Symlink(l.Target, p); err != nil {
				return nil, fmt.Errorf("restore: %w", err)
			}
			chown(p)
		}
	}
	for _, d := range m.Dirs {
		p := filepath.Join(opts.DataDir, filepath.FromSlash(d.Path))
		if err := os.MkdirAll(p, fs.FileMode(d.Mode)); err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		os.Chmod(p, fs.FileMode(d.Mode))
		chown(p)
	}
	status := filepath.Join(opts.DataDir, "pg_wal", "archive_status")
	os.MkdirAll(status, 0o700)
	chown(status)

	if opts.Delta {
		n, err := removeExtra(opts.DataDir, m)
		if err != nil {
			return nil, fmt.Errorf("restore: %w", err)
		}
		res.Removed = n
	}

	manifests := &manifestCache{s: s, m: map[string]*Manifest{m.ID: m}}
	var mu sync.Mutex
	var firstErr error
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Big files first, so that the pool does not end on one of them.
	order := make([]int, len(m.Files))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return m.Files[order[a]].Size > m.Files[order[b]].Size })
	runParallel(cctx, opts.Parallel, len(order), func(k int) {
		f := m.Files[order[k]]
		p := filepath.Join(opts.DataDir, filepath.FromSlash(f.Path))
		skipped := false
		err := func() error {
			if opts.Delta {
				if same, _ := fileHasSum(p, f.Size, f.SHA256); same {
					skipped = true
					return nil
				}
			}
			if err := s.restoreFile(cctx, manifests, m, f, p); err != nil {
				return err
			}
			if err := os.Chmod(p, fs.FileMode(f.Mode)); err != nil {
				return err
			}
			if err := chown(p); err != nil {
				return err
			}
			return os.Chtimes(p, f.ModTime, f.ModTime)
		}()
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("restore %s: %w", f.Path, err)
			cancel()
		}
		if skipped {
			res.Skipped++
		} else if err == nil {
			res.Written++
		}
	})
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, firstErr
	}
	if err := s.writeRecovery(opts, m, chown); err != nil {
		return nil, err
	}
	log.Info("restore complete", "written", res.Written, "skipped", res.Skipped, "removed", res.Removed)
	return res, nil
}

// chooseBackup picks the backup to restore.
func (s *Store) chooseBackup(ctx context.Context, opts RestoreOptions) (*Manifest, error) {
	if opts.BackupID != "" {
		return s.LoadManifest(ctx, opts.BackupID)
	}
	infos, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := len(infos) - 1; i >= 0; i-- {
		b := infos[i]
		if !opts.TargetTime.IsZero() && !b.StopTime.Before(opts.TargetTime) {
			continue
		}
		if opts.TargetLSN != 0 && b.StopLSN > opts.TargetLSN {
			continue
		}
		// A backup of a later timeline is not in the target's history.
		if opts.TargetTimeline != 0 && b.Timeline > opts.TargetTimeline {
			continue
		}
		return s.LoadManifest(ctx, b.ID)
	}
	return nil, fmt.Errorf("restore: %w before the target", ErrNoBackup)
}

type manifestCache struct {
	s  *Store
	mu sync.Mutex
	m  map[string]*Manifest
}

func (c *manifestCache) get(ctx context.Context, id string) (*Manifest, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m, ok := c.m[id]; ok {
		return m, nil
	}
	m, err := c.s.LoadManifest(ctx, id)
	if err != nil {
		return nil, err
	}
	c.m[id] = m
	return m, nil
}

// restoreFile writes f to p in one pass (a block delta is merged with its
// base version on the fly) and checks the result's size and SHA-256.
func (s *Store) restoreFile(ctx context.Context, mc *manifestCache, m *Manifest, f ManifestFile, p string) error {
	rc, err := s.openFile(ctx, mc, f)
	if err != nil {
		return err
	}
	defer rc.Close()
	tmp := p + ".pgherd-tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	h := sha256.New()
	wb := newWritebackWriter(out)
	n, err := io.CopyBuffer(io.MultiWriter(wb, h), struct{ io.Reader }{rc}, make([]byte, 256<<10))
	wb.flush()
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if n != f.Size || hex.EncodeToString(h.Sum(nil)) != f.SHA256 {
		os.Remove(tmp)
		return fmt.Errorf("%w: %s: checksum mismatch (size %d, want %d)", ErrCorrupt, f.Path, n, f.Size)
	}
	return os.Rename(tmp, p)
}

// fileHasSum reports whether the file at p has that size and checksum.
func fileHasSum(p string, size int64, sum string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size() != size || !fi.Mode().IsRegular() {
		return false, err
	}
	got, _, err := fileSHA256(f)
	return got == sum, err
}

// removeExtra removes, for a delta restore, the files and directories the
// backup does not have (tablespace contents are reached through links).
func removeExtra(dataDir string, m *Manifest) (int, error) {
	keep := map[string]bool{"pg_wal/archive_status": true}
	for _, d := range m.Dirs {
		keep[d.Path] = true
	}
	for _, l := range m.Links {
		keep[l.Path] = true
	}
	for _, f := range m.Files {
		keep[f.Path] = true
	}
	var extra []string
	err := filepath.WalkDir(dataDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dataDir, p)
		rel = filepath.ToSlash(rel)
		if rel == "." {
			return nil
		}
		if !keep[rel] {
			extra = append(extra, p)
			if d.IsDir() {
				return fs.SkipDir
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, p := range extra {
		if err := os.RemoveAll(p); err != nil {
			return 0, err
		}
	}
	return len(extra), nil
}

// recoveryKeys are the settings writeRecovery owns in postgresql.auto.conf.
var recoveryKeys = []string{"restore_command", "recovery_target", "recovery_target_time", "recovery_target_lsn",
	"recovery_target_xid", "recovery_target_name", "recovery_target_inclusive", "recovery_target_action",
	"recovery_target_timeline"}

func (s *Store) writeRecovery(opts RestoreOptions, m *Manifest, chown func(string) error) error {
	autoConf := filepath.Join(opts.DataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(autoConf)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("restore: %w", err)
	}
	var b bytes.Buffer
	b.WriteString(withoutRecovery(string(old)))
	if opts.Standby {
		return s.writeLabel(opts, m, autoConf, b.Bytes(), chown)
	}
	cmd := opts.RestoreCommand
	if cmd == "" {
		cmd = `pgherd wal-fetch %f "%p"`
	}
	action := opts.TargetAction
	if action == "" {
		action = "promote"
	}
	// A line break would end the quoted value and start a setting of its own.
	if strings.ContainsAny(cmd, "\r\n\x00") {
		return fmt.Errorf("restore: the restore command %q holds a line break or NUL", cmd)
	}
	if !slicesContains([]string{"pause", "promote", "shutdown"}, action) {
		return fmt.Errorf("restore: target action %q: want pause, promote or shutdown", action)
	}
	q := func(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
	fmt.Fprintf(&b, "%s restore of backup %s\n", recoveryComment, m.ID)
	fmt.Fprintf(&b, "restore_command = %s\n", q(cmd))
	tli := "latest"
	if opts.TargetTimeline != 0 {
		tli = strconv.FormatUint(uint64(opts.TargetTimeline), 10)
	}
	fmt.Fprintf(&b, "recovery_target_timeline = %s\n", q(tli))
	switch {
	case !opts.TargetTime.IsZero():
		fmt.Fprintf(&b, "recovery_target_time = %s\n", q(opts.TargetTime.UTC().Format("2006-01-02 15:04:05.999999-07")))
		fmt.Fprintf(&b, "recovery_target_action = %s\n", q(action))
	case opts.TargetLSN != 0:
		fmt.Fprintf(&b, "recovery_target_lsn = %s\n", q(opts.TargetLSN.String()))
		fmt.Fprintf(&b, "recovery_target_action = %s\n", q(action))
	}
	if err := s.writeLabel(opts, m, autoConf, b.Bytes(), chown); err != nil {
		return err
	}
	sig := filepath.Join(opts.DataDir, "recovery.signal")
	if err := os.WriteFile(sig, nil, 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := chown(sig); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	return nil
}

// withoutRecovery is postgresql.auto.conf's content without the recovery
// settings (and their comment) that writeRecovery writes.
func withoutRecovery(conf string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(conf, "\n") {
		key := strings.TrimSpace(strings.SplitN(line, "=", 2)[0])
		if line == "" || slicesContains(recoveryKeys, key) || strings.HasPrefix(line, recoveryComment) {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// recoveryComment starts the comment line writeRecovery puts before its
// settings.
const recoveryComment = "# recovery settings written by pgherd"

// ClearRecoverySettings removes from dataDir's postgresql.auto.conf the
// recovery settings a restore wrote (restore_command and the
// recovery_target ones), once recovery is over and the server promoted.
// Left there, they would apply again whenever the server next starts in
// recovery: a member made a standby later (after a failover) would stop
// replaying at the old target and promote itself. The file keeps its
// owner and mode. It reports whether it changed anything.
func ClearRecoverySettings(dataDir string) (bool, error) {
	p := filepath.Join(dataDir, "postgresql.auto.conf")
	old, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("clear recovery settings: %w", err)
	}
	conf := withoutRecovery(string(old))
	if conf == string(old) {
		return false, nil
	}
	fi, err := os.Stat(p)
	if err != nil {
		return false, fmt.Errorf("clear recovery settings: %w", err)
	}
	tmp := p + ".pgherd-tmp"
	if err := os.WriteFile(tmp, []byte(conf), fi.Mode().Perm()); err != nil {
		return false, fmt.Errorf("clear recovery settings: %w", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && os.Geteuid() == 0 {
		if err := os.Lchown(tmp, int(st.Uid), int(st.Gid)); err != nil {
			os.Remove(tmp)
			return false, fmt.Errorf("clear recovery settings: %w", err)
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return false, fmt.Errorf("clear recovery settings: %w", err)
	}
	return true, nil
}

// writeLabel writes postgresql.auto.conf (autoConf, its new content), and
// the backup's backup_label and tablespace_map.
func (s *Store) writeLabel(opts RestoreOptions, m *Manifest, autoConf string, conf []byte, chown func(string) error) error {
	if err := os.WriteFile(autoConf, conf, 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	label := filepath.Join(opts.DataDir, "backup_label")
	if err := os.WriteFile(label, []byte(m.BackupLabel), 0o600); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	files := []string{autoConf, label}
	if m.TablespaceMap != "" {
		tm := filepath.Join(opts.DataDir, "tablespace_map")
		if err := os.WriteFile(tm, []byte(m.TablespaceMap), 0o600); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		files = append(files, tm)
	}
	for _, f := range files {
		if err := chown(f); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
	}
	return nil
}
