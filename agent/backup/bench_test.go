package backup

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/backup/backuptest"
	"github.com/pgherd/pgherd/agent/pg"
)

// BenchmarkBackup measures full backup throughput (bytes of data directory
// per second) of a real PostgreSQL 15 into a local repository, zstd level
// 3, for 1, 2 and 4 workers, plain and encrypted. The data directory is
// generated with SQL: PGHERD_BENCH_MB (default 256) MiB of mixed data
// (md5 text and integers, compressible like real tables).
//
//	go test -run '^$' -bench Backup -benchtime 3x ./agent/backup/
func BenchmarkBackup(b *testing.B) {
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("PGHERD_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	e := newPGEnv(b)
	p := e.Instance(b, "bench")
	ctx := b.Context()
	if err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"fsync": "off", "shared_buffers": "64MB", "max_wal_size": "4GB", "checkpoint_timeout": "1h"}}); err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c := backuptest.Connect(b, p)
	// ~ 100 bytes per row on disk.
	rows := mb << 20 / 100
	if _, err := c.Exec(ctx, fmt.Sprintf(
		"CREATE TABLE data AS SELECT g AS id, g %% 97 AS k, md5(g::text) AS v FROM generate_series(1, %d) g", rows)); err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, "CHECKPOINT"); err != nil {
		b.Fatal(err)
	}
	size := dirSize(p.DataDir)
	b.Logf("data directory: %d MiB", size>>20)
	for _, enc := range []string{"", "bench"} {
		for _, par := range []int{1, 2, 4} {
			b.Run(fmt.Sprintf("encrypted=%v/parallel=%d", enc != "", par), func(b *testing.B) {
				repoDir := filepath.Join(e.Base, fmt.Sprintf("repo-%v-%d", enc != "", par))
				repo, err := NewLocal(repoDir)
				if err != nil {
					b.Fatal(err)
				}
				st, err := Init(ctx, repo, Options{Passphrase: enc, ScryptN: 1 << 12})
				if err != nil {
					b.Fatal(err)
				}
				b.SetBytes(size)
				var m *Manifest
				for b.Loop() {
					m, err = st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p),
						Type: Full, Parallel: par, ArchiveTimeout: -1})
					if err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(m.Size)/float64(m.StoredSize), "ratio")
				os.RemoveAll(repoDir)
			})
		}
	}
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// BenchmarkRestore measures restore throughput (bytes of data directory
// per second, 2 workers) of a full backup and of an incremental one taken
// after 5% of the rows changed (block deltas over the full backup), from
// a local repository, as for BenchmarkBackup.
//
//	go test -run '^$' -bench Restore -benchtime 3x ./agent/backup/
func BenchmarkRestore(b *testing.B) {
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("PGHERD_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	e := newPGEnv(b)
	p := e.Instance(b, "bench")
	ctx := b.Context()
	if err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"fsync": "off", "shared_buffers": "64MB", "max_wal_size": "4GB", "checkpoint_timeout": "1h", "autovacuum": "off"}}); err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c := backuptest.Connect(b, p)
	rows := mb << 20 / 100
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE data AS SELECT g AS id, g %% 97 AS k, md5(g::text) AS v FROM generate_series(1, %d) g", rows),
		"VACUUM data", "CHECKPOINT"} {
		if _, err := c.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	repo, err := NewLocal(filepath.Join(e.Base, "repo"))
	if err != nil {
		b.Fatal(err)
	}
	st, err := Init(ctx, repo, Options{})
	if err != nil {
		b.Fatal(err)
	}
	full, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Full, ArchiveTimeout: -1})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, fmt.Sprintf("UPDATE data SET k = k + 1 WHERE id > %d AND id <= %d", rows/2, rows/2+rows/20)); err != nil {
		b.Fatal(err)
	}
	incr, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Incr, ArchiveTimeout: -1})
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range []*Manifest{full, incr} {
		b.Run(string(m.Type), func(b *testing.B) {
			b.SetBytes(m.Size)
			for b.Loop() {
				dir := filepath.Join(e.Base, "restore")
				if _, err := st.Restore(ctx, RestoreOptions{BackupID: m.ID, DataDir: dir, Parallel: 2}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
	}
}

// BenchmarkBackupIncr measures incremental backups (bytes of data
// directory per second, 2 workers) after 5% of the rows of a table, a
// contiguous range, changed since the previous backup.
//
//	go test -run '^$' -bench BackupIncr -benchtime 3x ./agent/backup/
func BenchmarkBackupIncr(b *testing.B) {
	mb := 256
	if v, err := strconv.Atoi(os.Getenv("PGHERD_BENCH_MB")); err == nil && v > 0 {
		mb = v
	}
	e := newPGEnv(b)
	p := e.Instance(b, "bench")
	ctx := b.Context()
	if err := p.InitDB(ctx, pg.InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: map[string]string{
		"fsync": "off", "shared_buffers": "64MB", "max_wal_size": "4GB", "checkpoint_timeout": "1h", "autovacuum": "off"}}); err != nil {
		b.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	c := backuptest.Connect(b, p)
	rows := mb << 20 / 100
	for _, q := range []string{
		fmt.Sprintf("CREATE TABLE data AS SELECT g AS id, g %% 97 AS k, md5(g::text) AS v FROM generate_series(1, %d) g", rows),
		"VACUUM data", "CHECKPOINT"} {
		if _, err := c.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	repo, err := NewLocal(filepath.Join(e.Base, "repo"))
	if err != nil {
		b.Fatal(err)
	}
	st, err := Init(ctx, repo, Options{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Full, ArchiveTimeout: -1}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(dirSize(p.DataDir))
	i := 0
	for b.Loop() {
		b.StopTimer()
		lo := rows / 20 * (i % 19)
		i++
		for _, q := range []string{fmt.Sprintf("UPDATE data SET k = k + 1 WHERE id > %d AND id <= %d", lo, lo+rows/20), "CHECKPOINT"} {
			if _, err := c.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		time.Sleep(1100 * time.Millisecond) // a new backup ID
		b.StartTimer()
		if _, err := st.Backup(ctx, BackupOptions{DataDir: p.DataDir, Conn: backuptest.ConnString(p), Type: Incr, ArchiveTimeout: -1}); err != nil {
			b.Fatal(err)
		}
	}
}
