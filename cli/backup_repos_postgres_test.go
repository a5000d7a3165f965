package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/backup/backuptest"
)

// TestBackupPostgresRepositories: with two repositories, a directory and
// S3, PostgreSQL archives its WAL into both; a backup goes into the second
// (--repo offsite); restore, not told where, finds it there, and the
// restored server replays from the second the WAL the first has lost.
func TestBackupPostgresRepositories(t *testing.T) {
	e := newPGBackupEnv(t)
	ctx := t.Context()
	endpoint := backuptest.S3(t)
	s3, err := backup.NewS3(backup.S3Config{Endpoint: endpoint, Bucket: "pgherd", AccessKey: backuptest.S3AccessKey, SecretKey: backuptest.S3SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := s3.CreateBucket(ctx); err != nil {
		t.Fatal(err)
	}
	p := e.Instance(t, "primary")
	local := e.Mkdir(t, "local")
	config := e.config(t, p, map[string]any{
		"repositories": []any{
			map[string]any{"name": "local", "type": "path", "path": local, "retention": map[string]int{"full": 1}},
			map[string]any{"name": "offsite", "type": "s3", "s3": map[string]string{"endpoint": endpoint, "bucket": "pgherd",
				"prefix": "demo/", "access_key": backuptest.S3AccessKey, "secret_key": backuptest.S3SecretKey}},
		},
		"encryption_passphrase": "one passphrase for both",
		"compression_level":     1, "spool_dir": e.Mkdir(t, "spool"),
	})

	run, step := mustRun, steps(t)
	outer := t
	var c *pgx.Conn
	step("init and archive", func(t *testing.T) {
		out := run(t, "backup", "init", "--config", config)
		for _, want := range []string{`Repository "local" initialized (path repository`, `Repository "offsite" initialized (s3 repository`} {
			if !strings.Contains(out, want) {
				t.Fatalf("backup init does not say %q:\n%s", want, out)
			}
		}
		e.ChownTree(t, local)
		c = e.startArchiving(t, outer, p, config)
	})
	step("backup into the second repository", func(t *testing.T) {
		out := run(t, "backup", "--config", config, "--from", "primary", "--repo", "offsite")
		if !strings.Contains(out, `(full) taken into repository "offsite"`) {
			t.Fatalf("backup --repo offsite: %s", out)
		}
		var list []backupJSON
		if err := json.Unmarshal([]byte(run(t, "backup", "list", "--config", config, "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 1 || list[0].Repository != "offsite" {
			t.Fatalf("list --json = %+v, want the one backup, in offsite", list)
		}
		out = run(t, "backup", "list", "--config", config)
		if !regexpMatch(`(?s)Repository "local" \(path .*\):\nNo backup in the repository\.\n\nRepository "offsite" \(s3 .*\):\nID .*F  full`, out) {
			t.Fatalf("backup list:\n%s", out)
		}
	})
	step("WAL goes to both", func(t *testing.T) {
		backuptest.Exec(t, c, "INSERT INTO t SELECT g, 'after backup' FROM generate_series(1001, 1500) g")
		backuptest.SwitchAndArchive(t, c)
		out := run(t, "backup", "verify", "--config", config)
		if strings.Count(out, ": no problem.") != 2 {
			t.Fatalf("backup verify: %s", out)
		}
		// The first repository loses its WAL: what the restore replays
		// comes from the second.
		if err := os.RemoveAll(filepath.Join(local, "wal")); err != nil {
			t.Fatal(err)
		}
	})
	step("restore from the repository that has a backup", func(t *testing.T) {
		r := e.Instance(t, "restored")
		code, _, errs := pgherdRun(t, "restore", "--config", config, "--data-dir", r.DataDir, "--repo", "local")
		if code != 1 || !strings.Contains(errs, "no backup found") {
			t.Fatalf("restore --repo local, which has no backup: exit %d, %s", code, errs)
		}
		out := run(t, "restore", "--config", config, "--data-dir", r.DataDir,
			"--restore-command", fmt.Sprintf(`%s wal-fetch --config %s %%f "%%p"`, e.exe, config))
		if !strings.Contains(out, `Restoring from repository "offsite"`) {
			t.Errorf("restore does not say it found the backup in offsite:\n%s", out)
		}
		if n := backuptest.QueryString(t, backuptest.StartRestored(t, r), "SELECT count(*)::text FROM t"); n != "1500" {
			t.Fatalf("restored rows = %s, want 1500", n)
		}
	})
	step("a backup into each repository", func(t *testing.T) {
		out := run(t, "backup", "--config", config, "--from", "primary", "--type", "incr", "--all-repos")
		if !strings.Contains(out, `(full) taken into repository "local"`) || !strings.Contains(out, `(incr) taken into repository "offsite"`) {
			t.Fatalf("backup --all-repos: %s", out)
		}
		var list []backupJSON
		if err := json.Unmarshal([]byte(run(t, "backup", "list", "--config", config, "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 || list[0].Repository != "local" || list[2].Repository != "offsite" || list[2].Prior != list[1].ID {
			t.Fatalf("list --json = %+v, want a full backup in local, a full and an incremental in offsite", list)
		}
	})
	step("each repository keeps by its own retention", func(t *testing.T) {
		// local keeps 1 full backup, offsite the section's 2: a second
		// full backup in each expires local's first one only.
		var before []backupJSON
		if err := json.Unmarshal([]byte(run(t, "backup", "list", "--config", config, "--json")), &before); err != nil {
			t.Fatal(err)
		}
		out := run(t, "backup", "--config", config, "--from", "primary", "--all-repos", "--expire")
		if !regexpMatch(`(?s)taken into repository "local".*Expired backup `+before[0].ID+`\.\nExpired 1 backups.*taken into repository "offsite".*Expired 0 backups`, out) {
			t.Fatalf("backup --all-repos --expire: want %s expired from local and nothing from offsite, got:\n%s", before[0].ID, out)
		}
	})
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
