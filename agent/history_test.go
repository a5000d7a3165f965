package agent

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
)

// TestHistoryAhead: the target of a switchover looks up its timeline's
// history file and the next one's absence in a real (directory)
// repository, and the WAL socket's fetch answers from that, for the
// history files only, until a promotion makes it forget.
func TestHistoryAhead(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	cfg := &BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: filepath.Join(dir, "repo")}}}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Init(ctx, nil, ""); err != nil {
		t.Fatal(err)
	}
	hist := filepath.Join(dir, "00000002.history")
	if err := os.WriteFile(hist, []byte("1\t0/3000000\tno recovery target specified\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	push := cfg.Stores(log)
	if err := push.WALPush(ctx, hist, cfg.WALPushOptions()); err != nil {
		t.Fatal(err)
	}
	push.Close()

	a := &Agent{cfg: &Config{Name: "node2", RunDir: dir}, log: log}
	a.backupCfg.Store(cfg)
	a.wal = &walServer{log: log, cfg: a.backupCfg.Load}
	defer a.wal.close()
	view := func(to string) ha.View {
		return ha.View{Self: ha.Self{Name: "node2", Role: ha.RoleReplica, Timeline: 2},
			DCS: &dcs.ClusterState{Switchover: &dcs.Switchover{To: to}}}
	}
	a.lookUpHistoryAhead(view("node3")) // not the target: nothing
	if _, ok := a.wal.history.lookup("00000002.history"); ok {
		t.Fatal("a replica that is not the switchover's target looked up history")
	}
	// The lookup runs in its own goroutine; run it here instead.
	a.wal.history.fetched = 2
	a.wal.lookUpHistory(ctx, 2, dir)

	// The repository changes behind the cache: the answers come from
	// what was looked up.
	if err := os.RemoveAll(filepath.Join(dir, "repo", "wal")); err != nil {
		t.Fatal(err)
	}
	got := filepath.Join(dir, "got")
	if err := a.wal.fetch(ctx, "00000002.history", got); err != nil {
		t.Fatalf("fetch of the history file looked up: %v", err)
	}
	if b, _ := os.ReadFile(got); string(b) != "1\t0/3000000\tno recovery target specified\n" {
		t.Fatalf("served history file = %q", b)
	}
	if err := a.wal.fetch(ctx, "00000003.history", got); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("fetch of the next timeline's history = %v, want not found", err)
	}
	// Not looked up: asked of the repository, which no longer has it.
	if err := a.wal.fetch(ctx, "000000020000000000000003", got); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("fetch of a segment = %v, want not found from the repository", err)
	}
	// What a promotion from timeline 2 needs is there; from another
	// timeline, it is not.
	if h, ok := a.wal.history.promotable(2); !ok || string(h["00000002.history"]) != "1\t0/3000000\tno recovery target specified\n" || len(h) != 1 {
		t.Fatalf("promotable(2) = %q, %v", h, ok)
	}
	if _, ok := a.wal.history.promotable(3); ok {
		t.Fatal("promotable(3) after looking up from timeline 2")
	}
	a.wal.history.forget()
	if _, ok := a.wal.history.promotable(2); ok {
		t.Fatal("promotable(2) after forget")
	}
	if err := a.wal.fetch(ctx, "00000002.history", got+"2"); !errors.Is(err, backup.ErrNotFound) {
		t.Fatalf("fetch after forget = %v, want the repository's answer (not found)", err)
	}
}
