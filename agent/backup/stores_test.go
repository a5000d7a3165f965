package backup

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// testStores are a directory and an SFTP server as the repositories
// "local" and "offsite", both encrypted with one passphrase.
type testStores struct {
	local *LocalRepo
	sftp  SFTPConfig
	// dialed are the SFTP connections opened, in order.
	dialed []*SFTPRepo
}

func newTestStores(t *testing.T) *testStores {
	t.Helper()
	addr, signer, hostKey := startSSHD(t)
	ts := &testStores{sftp: SFTPConfig{Addr: addr, User: "root", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKey, Root: t.TempDir()}}
	var err error
	if ts.local, err = NewLocal(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	ts.local.NoSync = true
	if _, err := Init(t.Context(), ts.local, ts.options("local")); err != nil {
		t.Fatal(err)
	}
	st, err := ts.openSFTP(t.Context(), backupInit)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	return ts
}

func (ts *testStores) options(name string) Options {
	return Options{Passphrase: "one passphrase", ScryptN: 1 << 10, Name: name}
}

const (
	backupOpen = iota
	backupInit
)

func (ts *testStores) openSFTP(ctx context.Context, how int) (*Store, error) {
	repo, err := DialSFTP(ctx, ts.sftp)
	if err != nil {
		return nil, err
	}
	ts.dialed = append(ts.dialed, repo)
	fn := Open
	if how == backupInit {
		fn = Init
	}
	st, err := fn(ctx, repo, ts.options("offsite"))
	if err != nil {
		repo.Close()
	}
	return st, err
}

// stores are the repositories in the order given: "local", "offsite".
func (ts *testStores) stores(t *testing.T, names ...string) *Stores {
	ss := NewStores(names, func(ctx context.Context, i int) (*Store, error) {
		if names[i] == "local" {
			return Open(ctx, ts.local, ts.options("local"))
		}
		return ts.openSFTP(ctx, backupOpen)
	}, nil)
	t.Cleanup(ss.Close)
	return ss
}

// archived lists the WAL files a repository holds.
func archived(t *testing.T, ss *Stores, i int) []string {
	t.Helper()
	var names []string
	err := ss.with(t.Context(), i, func(st *Store) error {
		objs, err := st.walObjects(t.Context(), "wal/")
		for _, o := range objs {
			names = append(names, o.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestStoresWAL: with two repositories, a directory and an SFTP server,
// wal-push archives every segment into both, and wal-fetch takes a segment
// from the second when the first lacks it or holds a damaged copy.
func TestStoresWAL(t *testing.T) {
	ctx := t.Context()
	ts := newTestStores(t)
	ss := ts.stores(t, "local", "offsite")
	dir, names := fakeWAL(t, 4)
	spool := t.TempDir()
	push := WALPushOptions{Async: true, SpoolDir: spool, SpoolTag: "local+offsite"}
	for _, n := range names {
		if err := ss.WALPush(ctx, filepath.Join(dir, n), push); err != nil {
			t.Fatal(err)
		}
	}
	for i, repo := range []string{"local", "offsite"} {
		if got := archived(t, ss, i); len(got) != len(names) {
			t.Fatalf("%s holds %v, want the %d segments", repo, got, len(names))
		}
	}
	// Pushed again (PostgreSQL retries a push that succeeded): fine.
	if err := ss.WALPush(ctx, filepath.Join(dir, names[0]), WALPushOptions{}); err != nil {
		t.Fatal(err)
	}

	// The first repository loses a segment and another is damaged there.
	st, _, err := ss.store(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	gone, _ := st.findWAL(ctx, names[1])
	os.Remove(filepath.Join(ts.local.Root(), gone.Key))
	bad, _ := st.findWAL(ctx, names[2])
	p := filepath.Join(ts.local.Root(), bad.Key)
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o600)
	out := t.TempDir()
	for _, opts := range []WALFetchOptions{{}, {Prefetch: 2, SpoolDir: t.TempDir(), SegmentSize: testSegSize}} {
		for _, n := range names {
			dest := filepath.Join(out, "RECOVERYXLOG")
			if err := ss.WALFetch(ctx, n, dest, opts); err != nil {
				t.Fatalf("fetch %s (prefetch %d): %v", n, opts.Prefetch, err)
			}
			got, _ := os.ReadFile(dest)
			want, _ := os.ReadFile(filepath.Join(dir, n))
			if !bytes.Equal(got, want) {
				t.Fatalf("fetched %s differs", n)
			}
		}
	}
	next, _ := nextSegment(names[3], testSegSize)
	if err := ss.WALFetch(ctx, next, filepath.Join(out, "x"), WALFetchOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of a segment no repository has: %v, want ErrNotFound", err)
	}
	if err := ss.WALFetch(ctx, "pg_control", filepath.Join(out, "x"), WALFetchOptions{}); !errors.Is(err, ErrBadWALName) {
		t.Fatalf("fetch of a bad name: %v, want ErrBadWALName", err)
	}

	// A kept connection that broke is opened again, once.
	n := len(ts.dialed)
	ts.dialed[n-1].Close()
	if err := ss.WALFetch(ctx, names[1], filepath.Join(out, "y"), WALFetchOptions{}); err != nil {
		t.Fatalf("fetch after the kept SFTP connection broke: %v", err)
	}
	if len(ts.dialed) != n+1 {
		t.Fatalf("%d SFTP connections opened for the fetch, want 1", len(ts.dialed)-n)
	}
}

// TestStoresUnreachable: while one repository cannot be reached, wal-push
// fails naming it (PostgreSQL keeps the segment and retries) yet archives
// into the others, and records nothing as pushed ahead; wal-fetch passes
// over it. Once it is back, the retried push fills its hole.
func TestStoresUnreachable(t *testing.T) {
	ctx := t.Context()
	ts := newTestStores(t)
	good := ts.sftp
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.sftp.Addr = l.Addr().String()
	l.Close() // nothing listens there now

	ss := ts.stores(t, "offsite", "local")
	dir, names := fakeWAL(t, 3)
	spool := t.TempDir()
	push := WALPushOptions{Async: true, SpoolDir: spool, SpoolTag: "offsite+local"}
	err = ss.WALPush(ctx, filepath.Join(dir, names[0]), push)
	if err == nil || !strings.Contains(err.Error(), `repository "offsite"`) || !strings.Contains(err.Error(), names[0]) {
		t.Fatalf("push with offsite unreachable: %v; want an error naming the repository and the file", err)
	}
	t.Logf("push with offsite unreachable: %v", err)
	if got := archived(t, ss, 1); len(got) != 1 || got[0] != names[0] {
		t.Fatalf("local holds %v, want only %s (no push ahead while a repository is down)", got, names[0])
	}
	if recs, _ := filepath.Glob(filepath.Join(spool, "pushed", "*.ok")); len(recs) != 0 {
		t.Fatalf("records of files pushed ahead while a repository is down: %v", recs)
	}
	dest := filepath.Join(t.TempDir(), "seg")
	if err := ss.WALFetch(ctx, names[0], dest, WALFetchOptions{}); err != nil {
		t.Fatalf("fetch with the first repository unreachable: %v", err)
	}
	// Not in the reachable one: an error, not "not found", which
	// PostgreSQL would take for the end of the archive.
	if err := ss.WALFetch(ctx, names[1], dest, WALFetchOptions{}); err == nil || errors.Is(err, ErrNotFound) {
		t.Fatalf("fetch of a segment only the unreachable repository may have: %v", err)
	}

	ts.sftp = good
	if err := ss.WALPush(ctx, filepath.Join(dir, names[0]), push); err != nil {
		t.Fatalf("retry once the repository is back: %v", err)
	}
	for i, repo := range []string{"offsite", "local"} {
		if got := archived(t, ss, i); len(got) != len(names) {
			t.Fatalf("%s holds %v after the retry, want the %d segments", repo, got, len(names))
		}
	}
}

// TestStoresSpoolTag: a file pushed ahead into one set of repositories is
// pushed again when PostgreSQL asks for it after a repository was added.
func TestStoresSpoolTag(t *testing.T) {
	ctx := t.Context()
	ts := newTestStores(t)
	dir, names := fakeWAL(t, 2)
	spool := t.TempDir()
	one := ts.stores(t, "local")
	if err := one.WALPush(ctx, filepath.Join(dir, names[0]), WALPushOptions{Async: true, SpoolDir: spool, SpoolTag: "local"}); err != nil {
		t.Fatal(err)
	}
	two := ts.stores(t, "local", "offsite")
	if err := two.WALPush(ctx, filepath.Join(dir, names[1]), WALPushOptions{Async: true, SpoolDir: spool, SpoolTag: "local+offsite"}); err != nil {
		t.Fatal(err)
	}
	if got := archived(t, two, 1); !slicesContains(got, names[1]) {
		t.Fatalf("offsite holds %v, without %s: recorded as pushed ahead into local only, it was not pushed again", got, names[1])
	}
}

// TestStoresUninitialized: Uninitialized names the repositories without a
// config.json, reports a repository that fails otherwise (a wrong key) as
// an error, keeps open those that open and none that failed; once
// initialized, a repository is no longer named.
func TestStoresUninitialized(t *testing.T) {
	ctx := t.Context()
	opts := Options{Passphrase: "one passphrase", ScryptN: 1 << 10}
	names := []string{"local", "new", "wrong-key"}
	repos := make([]*LocalRepo, len(names))
	for i := range repos {
		var err error
		if repos[i], err = NewLocal(t.TempDir()); err != nil {
			t.Fatal(err)
		}
		repos[i].NoSync = true
	}
	for _, i := range []int{0, 2} {
		if _, err := Init(ctx, repos[i], opts); err != nil {
			t.Fatal(err)
		}
	}
	ss := NewStores(names, func(ctx context.Context, i int) (*Store, error) {
		o := opts
		if names[i] == "wrong-key" {
			o.Passphrase = "another passphrase"
		}
		return Open(ctx, repos[i], o)
	}, nil)
	t.Cleanup(ss.Close)

	got, err := ss.Uninitialized(ctx)
	if len(got) != 1 || got[0] != `repository "new"` {
		t.Fatalf("uninitialized %q, want only new", got)
	}
	if err == nil || errors.Is(err, ErrNoConfig) || !strings.Contains(err.Error(), `repository "wrong-key"`) {
		t.Fatalf("error %v, want one naming wrong-key only", err)
	}
	if ss.stores[0] == nil || ss.stores[1] != nil || ss.stores[2] != nil {
		t.Fatalf("kept open: %v, want local only", ss.stores)
	}

	if _, err := Init(ctx, repos[1], opts); err != nil {
		t.Fatal(err)
	}
	if got, err := ss.Uninitialized(ctx); len(got) != 0 || err == nil {
		t.Fatalf("once initialized: %q, %v; want none, and the wrong key's error", got, err)
	}
	if ss.stores[1] == nil {
		t.Fatal("the repository initialized since is not kept open")
	}
}
