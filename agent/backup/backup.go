package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// BackupOptions configure Backup.
type BackupOptions struct {
	// DataDir is the data directory of the server Conn reaches.
	DataDir string
	// Conn is a pgx connection string to that server, a primary or a
	// standby; its user needs pg_backup_start/stop (superuser or granted).
	Conn string
	// PrimaryConn, for a backup taken from a standby, reaches the primary
	// to switch WAL so that the last segment the backup needs gets
	// archived (optional; without it the archive wait may time out on an
	// idle cluster).
	PrimaryConn string
	// Type is Full or Incr (default Full). Incr falls back to Full when
	// the repository holds no backup.
	Type BackupType
	// Parallel is the number of files copied at once (default 2).
	Parallel int
	// Level overrides the repository's zstd level for this backup.
	Level int
	// ArchiveTimeout bounds the wait for the backup's last WAL segment to
	// be archived (default 60 s; negative = do not wait).
	ArchiveTimeout time.Duration
	// Label is the backup label given to pg_backup_start (default the ID).
	Label string
}

// ErrArchiveTimeout: the WAL needed by the backup did not reach the
// repository in time; the backup is not usable and was not recorded.
var ErrArchiveTimeout = errors.New("WAL needed by the backup was not archived in time")

// Directories whose contents are never backed up (like pg_basebackup and
// pgBackRest): runtime state rebuilt at start, and WAL, which comes from
// the archive.
var excludeContents = map[string]bool{
	"pg_wal": true, "pg_dynshmem": true, "pg_notify": true, "pg_replslot": true,
	"pg_serial": true, "pg_snapshots": true, "pg_stat_tmp": true, "pg_subtrans": true,
}

// Files never backed up.
var excludeFiles = map[string]bool{
	"postmaster.pid": true, "postmaster.opts": true, "backup_label": true, "backup_label.old": true,
	"tablespace_map": true, "recovery.signal": true, "standby.signal": true, "recovery.done": true,
	"postgresql.auto.conf.tmp": true, "current_logfiles.tmp": true,
}

var (
	// reRelation matches a relation's main fork (segments included) in
	// base/, global/ or a tablespace.
	reRelation = regexp.MustCompile(`^(base/[0-9]+|global|pg_tblspc/[0-9]+/[^/]+/[0-9]+)/([0-9]+)(\.[0-9]+)?$`)
	// reRelFile splits a relation file name: relfilenode, fork, segment.
	reRelFile = regexp.MustCompile(`^([0-9]+)(_[a-z]+)?(\.[0-9]+)?$`)
	// reTempRel matches temporary relations (t<backend>_<relfilenode>).
	reTempRel = regexp.MustCompile(`^t[0-9]+_[0-9]+`)
)

type scanFile struct {
	rel, abs string
	info     fs.FileInfo
}

// scanDataDir lists what a backup copies.
func scanDataDir(dataDir string) (dirs []ManifestDir, links []ManifestLink, files []scanFile, err error) {
	var walk func(root, prefix string) error
	walk = func(root, prefix string) error {
		return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p != root {
					return nil // removed while we walked
				}
				return err
			}
			r, _ := filepath.Rel(root, p)
			rel := path.Join(prefix, filepath.ToSlash(r))
			if rel == "." || rel == "" {
				return nil
			}
			name := d.Name()
			if strings.HasPrefix(name, "pgsql_tmp") || strings.HasPrefix(name, tempPrefix) {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			parent := path.Dir(rel)
			if d.Type()&fs.ModeSymlink != 0 {
				target, err := os.Readlink(p)
				if err != nil {
					return err
				}
				if parent == "pg_tblspc" {
					links = append(links, ManifestLink{Path: rel, Target: target})
					return walk(target, rel)
				}
				if fi, err := os.Stat(p); err == nil && fi.IsDir() { // pg_wal on another disk
					dirs = append(dirs, ManifestDir{Path: rel, Mode: uint32(fi.Mode().Perm())})
					return nil
				}
				return nil // other links are not data
			}
			info, err := d.Info()
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, ManifestDir{Path: rel, Mode: uint32(info.Mode().Perm())})
				if excludeContents[rel] {
					return fs.SkipDir
				}
				return nil
			}
			if !info.Mode().IsRegular() || (parent == "." && excludeFiles[rel]) ||
				name == "pg_internal.init" || reTempRel.MatchString(name) {
				return nil
			}
			files = append(files, scanFile{rel: rel, abs: p, info: info})
			return nil
		})
	}
	if err := walk(dataDir, ""); err != nil {
		return nil, nil, nil, fmt.Errorf("backup: scan %s: %w", dataDir, err)
	}
	// Unlogged relations: keep only the init fork (PostgreSQL resets them
	// from it at the end of recovery).
	unlogged := map[string]bool{}
	for _, f := range files {
		if m := reRelFile.FindStringSubmatch(path.Base(f.rel)); m != nil && m[2] == "_init" {
			unlogged[path.Dir(f.rel)+"/"+m[1]] = true
		}
	}
	if len(unlogged) > 0 {
		kept := files[:0]
		for _, f := range files {
			m := reRelFile.FindStringSubmatch(path.Base(f.rel))
			if m != nil && m[2] != "_init" && unlogged[path.Dir(f.rel)+"/"+m[1]] {
				continue
			}
			kept = append(kept, f)
		}
		files = kept
	}
	return dirs, links, files, nil
}

// Backup takes a base backup of a running server: pg_backup_start
// (non-exclusive), a parallel copy of the data directory, pg_backup_stop,
// a wait for the WAL the backup needs to reach the repository, then the
// manifest, written last. Objects left by an interrupted earlier backup
// are removed first. Backups of one repository must not run concurrently.
func (s *Store) Backup(ctx context.Context, opts BackupOptions) (*Manifest, error) {
	st := *s
	if opts.Level != 0 {
		st.level = opts.Level
	}
	return st.backup(ctx, opts)
}

func (s *Store) backup(ctx context.Context, opts BackupOptions) (*Manifest, error) {
	log := s.log.With("datadir", opts.DataDir)
	if opts.Parallel <= 0 {
		opts.Parallel = 2
	}
	if opts.ArchiveTimeout == 0 {
		opts.ArchiveTimeout = 60 * time.Second
	}
	complete, incomplete, err := s.backupIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	for _, id := range incomplete {
		log.Warn("removing interrupted backup", "backup", id)
		if err := s.deletePrefix(ctx, backupPrefix+id+"/"); err != nil {
			return nil, fmt.Errorf("backup: clean interrupted backup %s: %w", id, err)
		}
	}
	var prior *Manifest
	typ := opts.Type
	if typ == "" {
		typ = Full
	}
	if typ == Incr {
		if len(complete) == 0 {
			log.Info("no prior backup: taking a full backup")
			typ = Full
		} else if prior, err = s.LoadManifest(ctx, complete[len(complete)-1]); err != nil {
			return nil, fmt.Errorf("backup: prior backup: %w", err)
		}
	} else if typ != Full {
		return nil, fmt.Errorf("backup: unknown backup type %q", typ)
	}

	conn, err := pgx.Connect(ctx, opts.Conn)
	if err != nil {
		return nil, fmt.Errorf("backup: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	m := &Manifest{Version: 1, Type: typ}
	var blockSize, segSize, checksums string
	if err := conn.QueryRow(ctx, `SELECT current_setting('block_size'),
		(SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'),
		current_setting('data_checksums'), pg_is_in_recovery()`).Scan(&blockSize, &segSize, &checksums, &m.FromStandby); err != nil {
		return nil, fmt.Errorf("backup: read settings: %w", err)
	}
	m.BlockSize, _ = strconv.Atoi(blockSize)
	m.WALSegmentSize, _ = strconv.ParseInt(segSize, 10, 64)
	if m.BlockSize <= 0 || m.WALSegmentSize <= 0 {
		return nil, fmt.Errorf("backup: odd block_size %q or wal_segment_size %q", blockSize, segSize)
	}
	if v, err := os.ReadFile(filepath.Join(opts.DataDir, "PG_VERSION")); err == nil {
		m.PGVersion = strings.TrimSpace(string(v))
	} else {
		return nil, fmt.Errorf("backup: %s is not a data directory: %w", opts.DataDir, err)
	}
	// Block-level increments rely on every page change moving the page's
	// LSN, which hint bits only do with checksums (or wal_log_hints).
	blockIncr := prior != nil && checksums == "on" && prior.BlockSize == m.BlockSize

	now := time.Now().UTC()
	for {
		m.ID = now.Format("20060102-150405") + "F"
		if prior != nil {
			full, _, _ := strings.Cut(prior.ID, "_")
			m.ID = full + "_" + now.Format("20060102-150405") + "I"
		}
		if !slicesContains(complete, m.ID) && (prior == nil || idTime(prior.ID) < idTime(m.ID)) {
			break
		}
		time.Sleep(time.Until(now.Truncate(time.Second).Add(time.Second)))
		now = time.Now().UTC()
	}
	if prior != nil {
		m.Prior = prior.ID
	}
	m.Label = opts.Label
	if m.Label == "" {
		m.Label = "pgherd " + m.ID
	}
	log = log.With("backup", m.ID)
	log.Info("backup starting", "type", typ, "prior", m.Prior, "block_incremental", blockIncr)

	m.StartTime = time.Now().UTC()
	var startLSN string
	if err := conn.QueryRow(ctx, "SELECT pg_backup_start($1, true)::text", m.Label).Scan(&startLSN); err != nil {
		return nil, fmt.Errorf("backup: pg_backup_start: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped { // abort: end the backup mode of this session
			conn.Exec(context.WithoutCancel(ctx), "SELECT pg_backup_stop(false)")
		}
	}()
	if m.StartLSN, err = ParseLSN(startLSN); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}

	dirs, links, files, err := scanDataDir(opts.DataDir)
	if err != nil {
		return nil, err
	}
	m.Dirs, m.Links = dirs, links
	results := make([]*ManifestFile, len(files))
	var firstErr error
	var errOnce sync.Once
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Big files first, so that the pool does not end on one of them.
	order := make([]int, len(files))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return files[order[a]].info.Size() > files[order[b]].info.Size() })
	runParallel(cctx, opts.Parallel, len(order), func(k int) {
		i := order[k]
		f, err := s.copyFile(cctx, m, prior, blockIncr, files[i])
		if err != nil {
			errOnce.Do(func() { firstErr = err; cancel() })
			return
		}
		if f != nil && f.Ref != "" {
			f.StoredSize = 0 // stored by an earlier backup
		}
		results[i] = f
	})
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, fmt.Errorf("backup %s: %w", m.ID, firstErr)
	}
	for _, f := range results {
		if f != nil {
			m.Files = append(m.Files, *f)
			m.Size += f.Size
			m.StoredSize += f.StoredSize
		}
	}

	var stopLSN string
	if err := conn.QueryRow(ctx, "SELECT lsn::text, labelfile, coalesce(spcmapfile, '') FROM pg_backup_stop(true)").
		Scan(&stopLSN, &m.BackupLabel, &m.TablespaceMap); err != nil {
		return nil, fmt.Errorf("backup: pg_backup_stop: %w", err)
	}
	stopped = true
	m.StopTime = time.Now().UTC()
	if m.StopLSN, err = ParseLSN(stopLSN); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := m.parseLabel(); err != nil {
		return nil, err
	}
	m.StopWAL = segmentName(m.Timeline, uint64(m.StopLSN-1)/uint64(m.WALSegmentSize), m.WALSegmentSize)
	if opts.ArchiveTimeout > 0 {
		if err := s.waitArchived(ctx, m, opts, log); err != nil {
			return nil, err
		}
	}
	if err := s.putManifest(ctx, m); err != nil {
		return nil, fmt.Errorf("backup %s: manifest: %w", m.ID, err)
	}
	log.Info("backup complete", "files", len(m.Files), "size", m.Size, "stored", m.StoredSize,
		"start_lsn", m.StartLSN, "stop_lsn", m.StopLSN, "took", m.StopTime.Sub(m.StartTime).Round(time.Millisecond))
	return m, nil
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// parseLabel reads the start segment and timeline from the backup label.
func (m *Manifest) parseLabel() error {
	for _, line := range strings.Split(m.BackupLabel, "\n") {
		if rest, ok := strings.CutPrefix(line, "START WAL LOCATION: "); ok {
			if i := strings.Index(rest, "(file "); i >= 0 {
				m.StartWAL = strings.TrimSuffix(strings.TrimSpace(rest[i+6:]), ")")
			}
		}
		if rest, ok := strings.CutPrefix(line, "START TIMELINE: "); ok {
			tli, err := strconv.ParseUint(strings.TrimSpace(rest), 10, 32)
			if err != nil {
				return fmt.Errorf("backup: backup label timeline %q: %w", rest, err)
			}
			m.Timeline = uint32(tli)
		}
	}
	if !reSegment.MatchString(m.StartWAL) || m.Timeline == 0 {
		return fmt.Errorf("backup: cannot read the backup label: %q", m.BackupLabel)
	}
	return nil
}

// waitArchived waits for the backup's last WAL segment in the repository.
func (s *Store) waitArchived(ctx context.Context, m *Manifest, opts BackupOptions, log interface {
	Info(string, ...any)
}) error {
	if m.FromStandby && opts.PrimaryConn != "" {
		if c, err := pgx.Connect(ctx, opts.PrimaryConn); err == nil {
			c.Exec(ctx, "SELECT pg_switch_wal()")
			c.Close(ctx)
		}
	}
	deadline := time.Now().Add(opts.ArchiveTimeout)
	for {
		_, err := s.findWAL(ctx, m.StopWAL)
		if err == nil {
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("backup %s: %w", m.ID, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("backup %s: segment %s: %w", m.ID, m.StopWAL, ErrArchiveTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// copyFile backs up one file; nil when the file vanished.
func (s *Store) copyFile(ctx context.Context, m, prior *Manifest, blockIncr bool, sf scanFile) (*ManifestFile, error) {
	mf := &ManifestFile{Path: sf.rel, Mode: uint32(sf.info.Mode().Perm()), ModTime: sf.info.ModTime().UTC(), Size: sf.info.Size()}
	var prev ManifestFile
	hasPrev := false
	if prior != nil {
		prev, hasPrev = prior.file(sf.rel)
	}
	// Unchanged by size and mtime, unless it was modified around the prior
	// backup's start, when a same-tick change could hide behind its mtime.
	if hasPrev && prev.Size == mf.Size && prev.ModTime.Equal(mf.ModTime) && prev.ModTime.Before(prior.StartTime.Add(-time.Second)) {
		ref := prev
		ref.Ref = prev.owner(prior)
		return &ref, nil
	}
	f, err := os.Open(sf.abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // dropped during the backup; WAL replay agrees
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	var size int64
	if hasPrev && blockIncr && reRelation.MatchString(sf.rel) && prev.Size%int64(m.BlockSize) == 0 {
		key := s.fileKey(m.ID, sf.rel, ".delta")
		sh := sha256.New()
		n, err := s.putFunc(ctx, key, func(w io.Writer) error {
			var err error
			size, err = copyChangedBlocks(io.MultiWriter(w, sh), bufio.NewReaderSize(f, 256<<10), h, m.BlockSize, prev.Size/int64(m.BlockSize), prior.StartLSN)
			return err
		})
		if err != nil {
			return nil, err
		}
		mf.Size, mf.SHA256, mf.Key, mf.StoredSize = size, hex.EncodeToString(h.Sum(nil)), key, n
		mf.DeltaBase, mf.StoredSHA256 = prior.ID, hex.EncodeToString(sh.Sum(nil))
		return mf, nil
	}
	if mf.Size == 0 {
		// Most likely still empty; read to be sure.
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, err
		}
		if len(b) == 0 {
			mf.SHA256 = hex.EncodeToString(h.Sum(nil))
			return mf, nil
		}
		f.Seek(0, io.SeekStart)
	}
	if hasPrev && prev.Size == mf.Size {
		// Touched, perhaps not changed (its mtime moved): read it first
		// and keep the prior copy when it is the same, rather than
		// storing it again and deleting the copy. Besides the upload
		// saved, a backup then deletes nothing, and a repository that
		// prunes a directory emptied by a delete (an S3 gateway on a
		// file system) cannot race a concurrent store into it.
		sum, n, err := fileSHA256(f)
		if err != nil {
			return nil, err
		}
		if n == prev.Size && sum == prev.SHA256 {
			ref := prev
			ref.Ref, ref.ModTime, ref.Mode = prev.owner(prior), mf.ModTime, mf.Mode
			return &ref, nil
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
	}
	key := s.fileKey(m.ID, sf.rel, "")
	n, err := s.putFunc(ctx, key, func(w io.Writer) error {
		buf := make([]byte, 256<<10)
		var err error
		size, err = io.CopyBuffer(io.MultiWriter(w, h), struct{ io.Reader }{f}, buf)
		return err
	})
	if err != nil {
		return nil, err
	}
	mf.Size, mf.SHA256, mf.Key, mf.StoredSize = size, hex.EncodeToString(h.Sum(nil)), key, n
	if hasPrev && prev.SHA256 == mf.SHA256 && prev.Size == mf.Size {
		// Same content (touched only): keep the prior copy.
		if err := s.repo.Delete(ctx, key); err != nil {
			return nil, err
		}
		ref := prev
		ref.Ref, ref.ModTime, ref.Mode = prev.owner(prior), mf.ModTime, mf.Mode
		return &ref, nil
	}
	return mf, nil
}

// copyChangedBlocks reads f block by block, hashing everything into h, and
// writes to w a record (block number, uint32 little-endian, then the
// block) for each block that may have changed since the LSN since: pages
// past the prior size, new (zero-LSN) pages, pages with LSN >= since. A
// short last block (a file being extended) is stored zero-padded; the
// manifest's size cuts it.
func copyChangedBlocks(w io.Writer, f io.Reader, h hash.Hash, bs int, priorBlocks int64, since LSN) (int64, error) {
	// Read many blocks at a time and hash them at once; each block is
	// written with its number just before it, in place.
	const batch = 32
	buf := make([]byte, 4+batch*bs)
	var size int64
	var blk int64
	for {
		n, err := io.ReadFull(f, buf[4:])
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return size, err
		}
		if n == 0 {
			return size, nil
		}
		h.Write(buf[4 : 4+n])
		size += int64(n)
		short := n%bs != 0
		if rem := n % bs; short {
			// A short last block (a file being extended): stored
			// zero-padded; the manifest's size cuts it.
			clear(buf[4+n : 4+n+bs-rem])
			n += bs - rem
		}
		var hdr [4]byte
		for off := 0; off < n; off, blk = off+bs, blk+1 {
			block := buf[4+off : 4+off+bs]
			lsn := LSN(uint64(binary.LittleEndian.Uint32(block[0:4]))<<32 | uint64(binary.LittleEndian.Uint32(block[4:8])))
			if blk >= priorBlocks || lsn == 0 || lsn >= since || (short && off+bs == n) {
				// The record header goes in the 4 bytes before the block
				// (the end of the previous block, saved and put back).
				rec := buf[off : 4+off+bs]
				copy(hdr[:], rec[:4])
				binary.LittleEndian.PutUint32(rec[:4], uint32(blk))
				_, werr := w.Write(rec)
				copy(rec[:4], hdr[:])
				if werr != nil {
					return size, werr
				}
			}
		}
		if err != nil { // short read: the end of the file
			return size, nil
		}
	}
}

// deletePrefix deletes every object under prefix.
func (s *Store) deletePrefix(ctx context.Context, prefix string) error {
	objs, err := s.repo.List(ctx, prefix)
	if err != nil {
		return err
	}
	errs := make([]error, len(objs))
	runParallel(ctx, 8, len(objs), func(i int) { errs[i] = s.repo.Delete(ctx, objs[i].Key) })
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ctx.Err()
}
