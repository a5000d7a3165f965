package backup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrVerifyFailed: Verify found problems (listed in its report).
var ErrVerifyFailed = errors.New("repository verification failed")

// VerifyReport is what Verify checked and found.
type VerifyReport struct {
	Backups  int
	Files    int
	WAL      int
	Problems []string
}

// Verify reads back every object of every backup and every archived WAL
// file, checks each against its recorded checksum, and checks that the
// WAL each backup needs (start to stop segment) is archived. It returns
// ErrVerifyFailed when anything is wrong; the report lists what.
func (s *Store) Verify(ctx context.Context, parallel int) (*VerifyReport, error) {
	if parallel <= 0 {
		parallel = 4
	}
	rep := &VerifyReport{}
	var mu sync.Mutex
	problem := func(format string, args ...any) {
		mu.Lock()
		rep.Problems = append(rep.Problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	ids, incomplete, err := s.backupIDs(ctx)
	if err != nil {
		return nil, err
	}
	for _, id := range incomplete {
		problem("backup %s: incomplete (no manifest); the next backup removes it", id)
	}
	wal, err := s.walObjects(ctx, "wal/")
	if err != nil {
		return nil, err
	}
	archived := map[string]bool{}
	for _, w := range wal {
		archived[w.Name] = true
	}
	type check struct{ key, sum, what string }
	var checks []check
	for _, id := range ids {
		m, err := s.LoadManifest(ctx, id)
		if err != nil {
			problem("backup %s: %v", id, err)
			continue
		}
		rep.Backups++
		for _, f := range m.Files {
			if f.Ref != "" && !slicesContains(ids, f.Ref) {
				problem("backup %s: %s refers to missing backup %s", id, f.Path, f.Ref)
			}
			if f.DeltaBase != "" && !slicesContains(ids, f.DeltaBase) {
				problem("backup %s: %s has missing delta base %s", id, f.Path, f.DeltaBase)
			}
			if f.Ref != "" || f.Key == "" {
				continue // checked with the backup that stored it
			}
			sum := f.SHA256
			if f.StoredSHA256 != "" {
				sum = f.StoredSHA256
			}
			checks = append(checks, check{f.Key, sum, "backup " + id + ": " + f.Path})
		}
		// The WAL from start to stop must be archived.
		if _, startNo, err := parseSegment(m.StartWAL, m.WALSegmentSize); err == nil {
			tli, stopNo, _ := parseSegment(m.StopWAL, m.WALSegmentSize)
			for n := startNo; n <= stopNo; n++ {
				if name := segmentName(tli, n, m.WALSegmentSize); !archived[name] {
					problem("backup %s: needed WAL segment %s is not archived", id, name)
				}
			}
		}
	}
	rep.Files = len(checks)
	for _, w := range wal {
		checks = append(checks, check{w.Key, w.SHA256, "WAL " + w.Name})
	}
	rep.WAL = len(wal)
	runParallel(ctx, parallel, len(checks), func(i int) {
		c := checks[i]
		if err := s.checkObject(ctx, c.key, c.sum); err != nil {
			problem("%s: %v", c.what, err)
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sort.Strings(rep.Problems)
	if len(rep.Problems) > 0 {
		return rep, fmt.Errorf("backup: verify: %w: %d problems, first: %s", ErrVerifyFailed, len(rep.Problems), rep.Problems[0])
	}
	return rep, nil
}

// checkObject decodes key and compares the checksum of its content.
func (s *Store) checkObject(ctx context.Context, key, sum string) error {
	rc, err := s.get(ctx, key)
	if err != nil {
		return err
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return err
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		return fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	return nil
}

// Retention says which backups Expire keeps.
type Retention struct {
	// Full is how many full backups to keep (with their incrementals).
	Full int
	// Age also keeps every full backup that finished within Age.
	Age time.Duration
}

// ExpireResult lists what Expire removed.
type ExpireResult struct {
	Backups []string
	WAL     int
}

// Expire removes the backups the retention does not keep, and the archived
// WAL older than the oldest kept backup's start segment (timeline history
// files stay). The newest full backup is always kept. An incremental goes
// with the full backup it is based on.
func (s *Store) Expire(ctx context.Context, ret Retention) (*ExpireResult, error) {
	ids, _, err := s.backupIDs(ctx)
	if err != nil {
		return nil, err
	}
	res := &ExpireResult{}
	if len(ids) == 0 {
		return res, nil
	}
	full := func(id string) string { f, _, _ := strings.Cut(id, "_"); return f }
	var fulls []string
	for _, id := range ids {
		if full(id) == id {
			fulls = append(fulls, id)
		}
	}
	keepFull := map[string]bool{}
	for i := len(fulls) - 1; i >= 0; i-- {
		id := fulls[i]
		if len(fulls)-i <= max(ret.Full, 1) {
			keepFull[id] = true
			continue
		}
		if ret.Age > 0 {
			m, err := s.LoadManifest(ctx, id)
			if err != nil {
				return nil, err
			}
			if time.Since(m.StopTime) <= ret.Age {
				keepFull[id] = true
			}
		}
	}
	var oldestKept *Manifest
	for _, id := range ids {
		if keepFull[full(id)] {
			if oldestKept == nil {
				if oldestKept, err = s.LoadManifest(ctx, id); err != nil {
					return nil, err
				}
			}
			continue
		}
		s.log.Info("expiring backup", "backup", id)
		// Manifest first: the backup disappears at once, then its data.
		if err := s.repo.Delete(ctx, s.manifestKey(id)); err != nil {
			return nil, err
		}
		if err := s.deletePrefix(ctx, backupPrefix+id+"/"); err != nil {
			return nil, err
		}
		res.Backups = append(res.Backups, id)
	}
	if oldestKept == nil {
		return res, nil
	}
	_, keepFrom, err := parseSegment(oldestKept.StartWAL, oldestKept.WALSegmentSize)
	if err != nil {
		return nil, err
	}
	wal, err := s.walObjects(ctx, "wal/")
	if err != nil {
		return nil, err
	}
	for _, w := range wal {
		if strings.HasSuffix(w.Name, ".history") {
			continue
		}
		if _, n, err := parseSegment(w.Name[:24], oldestKept.WALSegmentSize); err == nil && n < keepFrom {
			if err := s.repo.Delete(ctx, w.Key); err != nil {
				return nil, err
			}
			res.WAL++
		}
	}
	s.log.Info("expire done", "backups", len(res.Backups), "wal", res.WAL)
	return res, nil
}
