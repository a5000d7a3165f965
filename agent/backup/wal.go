package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Sentinel errors of the WAL archive.
var (
	// ErrWALMismatch: a WAL file of that name is archived already with
	// different content. PostgreSQL keeps retrying; an operator must look
	// (two clusters archiving into one repository, usually).
	ErrWALMismatch = errors.New("WAL file already archived with different content")
	// ErrBadWALName: the name is not a WAL segment, history, partial or
	// backup history file name.
	ErrBadWALName = errors.New("not a WAL file name")
)

// DefaultSegmentSize is PostgreSQL's default WAL segment size.
const DefaultSegmentSize = 16 << 20

var (
	reSegment = regexp.MustCompile(`^[0-9A-F]{24}$`)
	reWALFile = regexp.MustCompile(`^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$`)
)

// walDir is the repository directory of a WAL file: wal/<timeline+log>/
// for segments (and their .partial and .backup files), wal/ for timeline
// history files.
func walDir(name string) string {
	if strings.HasSuffix(name, ".history") {
		return "wal"
	}
	return "wal/" + name[:16]
}

// walKeyPrefix is the start of the key of name: the checksum and suffix
// follow.
func walKeyPrefix(name string) string { return walDir(name) + "/" + name + "-" }

// walObject is one archived WAL file.
type walObject struct {
	Name   string
	SHA256 string
	Key    string
	Size   int64
}

// parseWALKey splits wal/<dir>/<name>-<sha256>.zst[.enc].
func parseWALKey(key string) (walObject, bool) {
	base := path.Base(key)
	i := strings.LastIndexByte(base, '-')
	if i < 0 || !strings.HasPrefix(key, "wal/") {
		return walObject{}, false
	}
	name, rest := base[:i], base[i+1:]
	if !reWALFile.MatchString(name) || len(rest) < 64 {
		return walObject{}, false
	}
	if _, err := hex.DecodeString(rest[:64]); err != nil {
		return walObject{}, false
	}
	return walObject{Name: name, SHA256: rest[:64], Key: key}, true
}

// walObjects lists the archived WAL files under prefix (a key prefix).
func (s *Store) walObjects(ctx context.Context, prefix string) ([]walObject, error) {
	objs, err := s.repo.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []walObject
	for _, o := range objs {
		if w, ok := parseWALKey(o.Key); ok {
			w.Size = o.Size
			out = append(out, w)
		}
	}
	return out, nil
}

// findWAL returns the archived copy of name; the error wraps ErrNotFound.
func (s *Store) findWAL(ctx context.Context, name string) (walObject, error) {
	objs, err := s.walObjects(ctx, walKeyPrefix(name))
	if err != nil {
		return walObject{}, err
	}
	for _, o := range objs {
		if o.Name == name {
			return o, nil
		}
	}
	return walObject{}, fmt.Errorf("backup: WAL %s: %w", name, ErrNotFound)
}

// WALPushOptions configure WALPush.
type WALPushOptions struct {
	// Async pushes, beside the requested file, the other files PostgreSQL
	// marked ready (archive_status/*.ready), in parallel, and records them
	// in SpoolDir so that the archive_command calls for them return at
	// once.
	Async bool
	// SpoolDir holds the records of files pushed ahead (required for
	// Async); it must be local and private to this data directory.
	SpoolDir string
	// Parallel is the number of concurrent uploads (default 4).
	Parallel int
	// MaxAhead bounds how many ready files one call pushes (default 64).
	MaxAhead int
	// SpoolTag names the repositories a file is pushed to (Async): the
	// record of a file pushed ahead holds it, and a later call trusts
	// only a record of its own tag, since a repository added in between
	// did not get the file.
	SpoolTag string
}

// WALPush archives the WAL file at walPath (archive_command's %p,
// relative to the data directory, which is the working directory). It is
// idempotent: pushing a file archived already with the same content
// succeeds; with different content it fails with ErrWALMismatch.
func (s *Store) WALPush(ctx context.Context, walPath string, opts WALPushOptions) error {
	if done, err := pushedAhead(walPath, opts, s.log); done || err != nil {
		return err
	}
	return walPush(ctx, s.log, []target{s.run}, walPath, opts)
}

// A target runs op on one store: a Store itself (Store.run), or a
// repository of Stores, opened when first needed.
type target func(op func(*Store) error) error

func (s *Store) run(op func(*Store) error) error { return op(s) }

// pushedAhead checks walPath's name and, in async mode, consumes the
// record an earlier call left when it pushed the file ahead (to every
// repository of opts.SpoolTag): true when there was one.
func pushedAhead(walPath string, opts WALPushOptions, log *slog.Logger) (bool, error) {
	name := filepath.Base(walPath)
	if !reWALFile.MatchString(name) {
		return false, fmt.Errorf("backup: wal-push %s: %w", walPath, ErrBadWALName)
	}
	if !opts.Async {
		return false, nil
	}
	if opts.SpoolDir == "" {
		return false, errors.New("backup: wal-push: async needs a spool directory")
	}
	done := filepath.Join(opts.SpoolDir, "pushed")
	if err := os.MkdirAll(done, 0o700); err != nil {
		return false, fmt.Errorf("backup: wal-push: %w", err)
	}
	marker := filepath.Join(done, name+".ok")
	tag, err := os.ReadFile(marker)
	if err != nil {
		return false, nil
	}
	os.Remove(marker)
	if string(tag) != opts.SpoolTag {
		// Pushed ahead to other repositories (the configuration
		// changed since): push again, to every repository.
		return false, nil
	}
	log.Debug("WAL pushed ahead", "wal", name)
	return true, nil
}

// walPush archives the file at walPath into every target (and, in async
// mode, the other files PostgreSQL marked ready); the caller has checked
// its name and its record (pushedAhead). It returns the requested file's
// error: those of every target that failed, joined.
func walPush(ctx context.Context, log *slog.Logger, targets []target, walPath string, opts WALPushOptions) error {
	name := filepath.Base(walPath)
	if !opts.Async {
		return pushWAL(ctx, targets, walPath)
	}
	done := filepath.Join(opts.SpoolDir, "pushed")
	// Push name and the other ready files, oldest first.
	walDirPath := filepath.Dir(walPath)
	todo := []string{name}
	maxAhead := opts.MaxAhead
	if maxAhead <= 0 {
		maxAhead = 64
	}
	ready, _ := filepath.Glob(filepath.Join(walDirPath, "archive_status", "*.ready"))
	sort.Strings(ready)
	for _, r := range ready {
		n := strings.TrimSuffix(filepath.Base(r), ".ready")
		if n == name || !reWALFile.MatchString(n) || len(todo) > maxAhead {
			continue
		}
		if _, err := os.Stat(filepath.Join(done, n+".ok")); err == nil {
			continue
		}
		todo = append(todo, n)
	}
	par := opts.Parallel
	if par <= 0 {
		par = 4
	}
	errs := make([]error, len(todo))
	runParallel(ctx, par, len(todo), func(i int) {
		errs[i] = pushWAL(ctx, targets, filepath.Join(walDirPath, todo[i]))
		if errs[i] == nil && i > 0 {
			if err := os.WriteFile(filepath.Join(done, todo[i]+".ok"), []byte(opts.SpoolTag), 0o600); err != nil {
				log.Warn("cannot record pushed WAL", "wal", todo[i], "err", err)
			}
		}
	})
	log.Info("WAL pushed", "wal", name, "ahead", len(todo)-1)
	return errs[0]
}

// runParallel calls fn(0..n-1) on at most par goroutines and returns when
// all calls have returned. Calls not started when ctx ends are skipped.
func runParallel(ctx context.Context, par, n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(par, n) {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
}

// pushWAL archives the file at p into every target, all at once. The file
// is read once to name it by its checksum, then once for each target to
// store it, rather than held in memory: the agent pushes all day and must
// stay small. A target that fails does not stop the others, so that no
// repository falls behind because another is down, and a slow one (an
// offsite bucket) adds its own time only, not its time to the others'.
func pushWAL(ctx context.Context, targets []target, p string) error {
	name := filepath.Base(p)
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("backup: wal-push: %w", err)
	}
	defer f.Close()
	sha, size, err := fileSHA256(f)
	if err != nil {
		return fmt.Errorf("backup: wal-push %s: %w", name, err)
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() {
			errs[i] = t(func(s *Store) error { return s.pushWALFile(ctx, io.NewSectionReader(f, 0, size), name, sha, size) })
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// pushWALFile stores f, the WAL file name of checksum sha, unless this
// repository has it already.
func (s *Store) pushWALFile(ctx context.Context, f io.ReadSeeker, name, sha string, size int64) error {
	existing, err := s.findWAL(ctx, name)
	switch {
	case err == nil && existing.SHA256 == sha:
		s.log.Info("WAL already archived with the same content", "wal", name)
		return nil
	case err == nil && strings.HasSuffix(name, ".partial"):
		// Every member promoted from the same timeline writes the
		// same .partial name, with what it had received: two
		// promotions (one fenced before it took writes) leave two
		// contents. Recovery never reads .partial files; refusing the
		// second would block this server's archiving for good, so it
		// is kept beside the first (the key holds the checksum).
		s.log.Warn("a .partial WAL file of another promotion is archived already: keeping both", "wal", name, "archived_sha256", existing.SHA256, "sha256", sha)
	case err == nil:
		return fmt.Errorf("backup: wal-push %s%s: %w (archived sha256 %s, local %s)", name, s.in(), ErrWALMismatch, existing.SHA256, sha)
	case !errors.Is(err, ErrNotFound):
		return fmt.Errorf("backup: wal-push %s%s: %w", name, s.in(), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("backup: wal-push %s: %w", name, err)
	}
	_, err = s.putEncoded(ctx, walKeyPrefix(name)+sha+s.suffix(), size <= smallObject, func(w io.Writer) error {
		h := sha256.New()
		if _, err := io.CopyBuffer(io.MultiWriter(w, h), struct{ io.Reader }{f}, make([]byte, 256<<10)); err != nil {
			return err
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != sha {
			return fmt.Errorf("the file changed while it was archived (sha256 %s, then %s)", sha, got)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("backup: wal-push %s%s: %w", name, s.in(), err)
	}
	return nil
}

// fileSHA256 reads r to its end and returns its hex SHA-256 and size.
func fileSHA256(r io.Reader) (string, int64, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, struct{ io.Reader }{r}, make([]byte, 256<<10))
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// WALFetchOptions configure WALFetch.
type WALFetchOptions struct {
	// Prefetch is how many following segments to keep ready in SpoolDir
	// (0 = none). PostgreSQL's restore_command asks for segments one by
	// one; with prefetch most calls are served from the local spool.
	Prefetch int
	// SpoolDir holds prefetched segments (required for Prefetch > 0).
	SpoolDir string
	// SegmentSize is the cluster's WAL segment size (default 16 MiB).
	SegmentSize int64
	// Parallel bounds concurrent downloads (default 4).
	Parallel int
}

// WALFetch restores the archived WAL file name to dest (restore_command's
// %f and %p). The content is checked against its archived checksum. When
// the archive has no such file the error wraps ErrNotFound (the CLI then
// exits 1, which PostgreSQL takes as "not archived").
func (s *Store) WALFetch(ctx context.Context, name, dest string, opts WALFetchOptions) error {
	if !reWALFile.MatchString(name) {
		return fmt.Errorf("backup: wal-fetch %s: %w", name, ErrBadWALName)
	}
	if opts.Prefetch <= 0 || opts.SpoolDir == "" || !reSegment.MatchString(name) {
		return s.fetchWAL(ctx, name, "", dest)
	}
	spool := filepath.Join(opts.SpoolDir, "fetched")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return fmt.Errorf("backup: wal-fetch: %w", err)
	}
	// Segments before name will not be asked for again.
	entries, _ := os.ReadDir(spool)
	ahead := 0
	for _, e := range entries {
		n := e.Name()
		if reSegment.MatchString(n) && n < name {
			os.Remove(filepath.Join(spool, n))
		} else if reSegment.MatchString(n) && n > name {
			ahead++
		}
	}
	served := false
	if err := moveFile(filepath.Join(spool, name), dest); err == nil {
		served = true
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: wal-fetch: %w", err)
	}
	if served && ahead >= opts.Prefetch/2 {
		return nil
	}
	// Refill the spool (and fetch name itself when it was not there).
	segSize := opts.SegmentSize
	if segSize == 0 {
		segSize = DefaultSegmentSize
	}
	want := []string{}
	if !served {
		want = append(want, name)
	}
	n := name
	for range opts.Prefetch {
		var err error
		if n, err = nextSegment(n, segSize); err != nil {
			break
		}
		if _, err := os.Stat(filepath.Join(spool, n)); err != nil {
			want = append(want, n)
		}
	}
	index := map[string]walObject{}
	listed := map[string]bool{}
	for _, w := range want {
		dir := walDir(w)
		if listed[dir] {
			continue
		}
		listed[dir] = true
		objs, err := s.walObjects(ctx, dir+"/")
		if err != nil {
			return fmt.Errorf("backup: wal-fetch %s%s: %w", name, s.in(), err)
		}
		for _, o := range objs {
			index[o.Name] = o
		}
	}
	par := opts.Parallel
	if par <= 0 {
		par = 4
	}
	errs := make([]error, len(want))
	runParallel(ctx, par, len(want), func(i int) {
		o, ok := index[want[i]]
		if !ok {
			errs[i] = fmt.Errorf("backup: WAL %s: %w", want[i], ErrNotFound)
			return
		}
		to := filepath.Join(spool, want[i])
		if want[i] == name {
			to = dest
		}
		errs[i] = s.fetchWAL(ctx, want[i], o.Key, to)
	})
	if !served {
		return errs[0]
	}
	return nil
}

// fetchWAL downloads name (from key, or found by name when key is "") to
// dest through a temporary file, checking its checksum.
func (s *Store) fetchWAL(ctx context.Context, name, key, dest string) error {
	var sha string
	if key == "" {
		o, err := s.findWAL(ctx, name)
		if errors.Is(err, ErrNotFound) {
			return err
		}
		if err != nil {
			return fmt.Errorf("backup: wal-fetch %s%s: %w", name, s.in(), err)
		}
		key, sha = o.Key, o.SHA256
	} else {
		o, _ := parseWALKey(key)
		sha = o.SHA256
	}
	rc, err := s.getSized(ctx, key, true)
	if err != nil {
		return fmt.Errorf("backup: wal-fetch %s%s: %w", name, s.in(), err)
	}
	defer rc.Close()
	tmp := dest + ".pgherd-tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: wal-fetch %s: %w", name, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), rc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && hex.EncodeToString(h.Sum(nil)) != sha {
		err = fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	if err == nil {
		err = os.Rename(tmp, dest)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("backup: wal-fetch %s%s: %w", name, s.in(), err)
	}
	return nil
}

// moveFile renames src to dst, copying when they are on different file
// systems.
func moveFile(src, dst string) error {
	err := os.Rename(src, dst)
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".pgherd-tmp"
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Remove(src)
}

// parseSegment splits a segment name into timeline and segment number.
func parseSegment(name string, segSize int64) (tli uint32, segno uint64, err error) {
	if !reSegment.MatchString(name) {
		return 0, 0, fmt.Errorf("%w: %q", ErrBadWALName, name)
	}
	t, _ := strconv.ParseUint(name[:8], 16, 32)
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:], 16, 32)
	perLog := uint64(0x100000000) / uint64(segSize)
	return uint32(t), log*perLog + seg, nil
}

// segmentName is the file name of segment segno on timeline tli.
func segmentName(tli uint32, segno uint64, segSize int64) string {
	perLog := uint64(0x100000000) / uint64(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/perLog, segno%perLog)
}

// nextSegment is the segment after name on the same timeline.
func nextSegment(name string, segSize int64) (string, error) {
	tli, segno, err := parseSegment(name, segSize)
	if err != nil {
		return "", err
	}
	return segmentName(tli, segno+1, segSize), nil
}
