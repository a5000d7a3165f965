package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/ha"
)

// A standby that promotes asks restore_command for timeline history
// files: the next timelines', until one is missing (so that it picks an
// unused timeline), then its own (copied into the new one's). Each is a
// wal-fetch, a repository lookup and a download on the promotion's path:
// 80 to 150 ms apiece were measured on the lab during a switchover. The
// target of a switchover looks them up ahead, while the old primary
// stops, and the WAL socket answers those requests from what it found.

// historyTTL bounds how long a looked-up history file (or its absence)
// answers for the repository: a file present never changes; a file absent
// could appear only by another promotion, which the leader key rules out
// during the switchover.
const historyTTL = 10 * time.Second

// historyAhead holds the timeline history files looked up ahead.
type historyAhead struct {
	mu      sync.Mutex
	files   map[string]historyFile // by name
	fetched uint32                 // the timeline last looked up ahead from
	at      time.Time              // when
}

type historyFile struct {
	data    []byte // nil: not in the archive
	fetched time.Time
}

// lookup returns the file name as looked up ahead, if fresh.
func (h *historyAhead) lookup(name string) (historyFile, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f, ok := h.files[name]
	if !ok || time.Since(f.fetched) > historyTTL {
		return historyFile{}, false
	}
	return f, true
}

// historyName is the history file name of timeline tli.
func historyName(tli uint32) string { return fmt.Sprintf("%08X.history", tli) }

// serveHistory writes the history file name to dest from what was looked
// up ahead; ok is false when there is nothing fresh for it.
func (s *walServer) serveHistory(name, dest string) (ok bool, err error) {
	if !strings.HasSuffix(name, ".history") {
		return false, nil
	}
	f, ok := s.history.lookup(name)
	if !ok {
		return false, nil
	}
	if f.data == nil {
		return true, fmt.Errorf("wal-fetch %s (looked up ahead): %w", name, backup.ErrNotFound)
	}
	tmp := dest + ".pgherd-tmp"
	if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
		return true, err
	}
	return true, os.Rename(tmp, dest)
}

// lookUpHistory fetches, into the cache, the history file of timeline tli
// (when tli > 1) and those of the timelines after it, up to the first
// that is not archived. A failure leaves the cache as it was: the
// promotion then asks the repository itself.
func (s *walServer) lookUpHistory(ctx context.Context, tli uint32, tmpDir string) {
	ss, b, err := s.kept()
	if err != nil {
		return
	}
	found := map[string]historyFile{}
	first := max(tli, 2)
	for t := first; t < first+16; t++ {
		name := historyName(t)
		tmp := filepath.Join(tmpDir, name+".ahead")
		err := ss.WALFetch(ctx, name, tmp, b.WALFetchOptions())
		if errors.Is(err, backup.ErrNotFound) {
			found[name] = historyFile{fetched: time.Now()}
			if t > tli {
				break
			}
			continue
		}
		if err != nil {
			s.log.Warn("looking up timeline history ahead of a promotion", "wal", name, "err", err)
			return
		}
		data, err := os.ReadFile(tmp)
		os.Remove(tmp)
		if err != nil {
			return
		}
		found[name] = historyFile{data: data, fetched: time.Now()}
	}
	s.history.mu.Lock()
	defer s.history.mu.Unlock()
	if s.history.fetched != tli {
		return // forgotten meanwhile: a promotion ran
	}
	if s.history.files == nil {
		s.history.files = map[string]historyFile{}
	}
	for n, f := range found {
		s.history.files[n] = f
	}
	s.log.Info("timeline history looked up ahead of a promotion", "timeline", tli, "files", len(found))
}

// lookUpHistoryAhead starts lookUpHistory on a replica that a switchover
// may promote next (the requested target, or any replica when none is
// named), once per timeline, and again when what it found is no longer
// fresh (a switchover requested again after one that did not happen).
func (a *Agent) lookUpHistoryAhead(v ha.View) {
	if a.wal == nil || v.DCS == nil || v.DCS.Switchover == nil || v.Self.Role != ha.RoleReplica || v.Self.Timeline == 0 {
		return
	}
	if to := v.DCS.Switchover.To; to != "" && to != a.cfg.Name {
		return
	}
	h := &a.wal.history
	h.mu.Lock()
	if h.fetched == v.Self.Timeline && time.Since(h.at) < historyTTL/2 {
		h.mu.Unlock()
		return
	}
	h.fetched, h.at = v.Self.Timeline, time.Now()
	h.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), historyTTL)
		defer cancel()
		a.wal.lookUpHistory(ctx, v.Self.Timeline, a.cfg.RunDir)
	}()
}

// promotable returns what a promotion from timeline tli needs, when the
// lookup ahead found it fresh: the next timeline's history file is not
// archived, and this timeline's (for tli > 1) is, with its content. ok is
// false otherwise, and the promotion asks the archive itself.
func (h *historyAhead) promotable(tli uint32) (history map[string][]byte, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fetched != tli {
		return nil, false
	}
	fresh := func(name string) (historyFile, bool) {
		f, ok := h.files[name]
		return f, ok && time.Since(f.fetched) <= historyTTL
	}
	if next, ok := fresh(historyName(tli + 1)); !ok || next.data != nil {
		return nil, false
	}
	history = map[string][]byte{}
	if tli > 1 {
		own, ok := fresh(historyName(tli))
		if !ok || own.data == nil {
			return nil, false
		}
		history[historyName(tli)] = own.data
	}
	return history, true
}

// forget drops what was looked up ahead: after a promotion, the absence
// of the new timeline's history file is no longer true.
func (h *historyAhead) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.files, h.fetched = nil, 0
}
