package backup

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzWALName gives wal-fetch and wal-push (PostgreSQL's %f, or whatever a
// caller passes) arbitrary names: anything but a WAL file name is refused
// with ErrBadWALName before the repository or the file system is touched,
// and nothing is ever written beside the repository and the destination.
func FuzzWALName(f *testing.F) {
	for _, s := range []string{
		"000000010000000000000001", "000000010000000000000001.partial", "00000002.history",
		"000000010000000000000002.00000028.backup", "../../etc/passwd", "00000001000000000000000/",
		"0000000100000000000000011", "00000002.history/../x", "", ".", "..", "a\x00b", "000000010000000000000001\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		st, repo := newTestStore(t, "")
		work := t.TempDir()
		dest := filepath.Join(work, "dest", "RECOVERYXLOG")
		os.MkdirAll(filepath.Dir(dest), 0o700)
		before := listTree(t, filepath.Dir(repo.Root()), filepath.Join(work, "spool"))
		valid := reWALFile.MatchString(name)

		err := st.WALFetch(t.Context(), name, dest, WALFetchOptions{Prefetch: 2, SpoolDir: filepath.Join(work, "spool")})
		switch {
		case !valid && !errors.Is(err, ErrBadWALName):
			t.Fatalf("wal-fetch %q: %v, want ErrBadWALName", name, err)
		case !valid && !strings.Contains(err.Error(), name):
			t.Fatalf("wal-fetch %q: the error does not name it: %v", name, err)
		case valid && !errors.Is(err, ErrNotFound):
			t.Fatalf("wal-fetch %q from an empty repository: %v, want ErrNotFound", name, err)
		}
		// wal-push takes %p, a path: its base name must be a WAL file name.
		walPath := filepath.Join(work, "pg_wal", name)
		err = st.WALPush(t.Context(), walPath, WALPushOptions{})
		if !reWALFile.MatchString(filepath.Base(walPath)) && !errors.Is(err, ErrBadWALName) {
			t.Fatalf("wal-push %q: %v, want ErrBadWALName", walPath, err)
		}
		if err == nil {
			t.Fatalf("wal-push of a missing file %q succeeded", walPath)
		}
		// Only the spool may have come to be (for a valid name).
		if after := listTree(t, filepath.Dir(repo.Root()), filepath.Join(work, "spool")); after != before {
			t.Fatalf("name %q changed the files around the repository:\nbefore %s\nafter  %s", name, before, after)
		}
	})
}

// listTree lists every path under dir but skip, one a line.
func listTree(t *testing.T, dir, skip string) string {
	t.Helper()
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, _ os.DirEntry, err error) error {
		if p == skip {
			return filepath.SkipDir
		}
		b.WriteString(p + "\n")
		return nil
	})
	return b.String()
}

// FuzzManifest feeds parseManifest arbitrary manifests: an accepted one
// never makes Restore write outside the data directory, nor set more than
// permission bits, nor base a file on its own backup; a refused one says
// it is corrupt.
func FuzzManifest(f *testing.F) {
	valid := `{"version":1,"id":"20261122-010000F","type":"full","dirs":[{"path":"base","mode":448}],` +
		`"links":[{"path":"pg_tblspc/16385","target":"/srv/ts1"}],` +
		`"files":[{"path":"base/1/1259","size":8192,"mode":384,"key":"backup/20261122-010000F/base/1/1259"}]}`
	f.Add("20261122-010000F", valid)
	for _, s := range []struct{ old, new string }{
		{`"path":"base/1/1259"`, `"path":"../../etc/cron.d/x"`},
		{`"path":"base/1/1259"`, `"path":"/etc/passwd"`},
		{`"path":"base","mode":448`, `"path":"base/../..","mode":448`},
		{`"mode":384`, `"mode":2541`},
		{`"pg_tblspc/16385"`, `"base/evil"`},
		{`"/srv/ts1"`, `"../ts"`},
		{`"key"`, `"delta_base":"20261122-010000F","key"`},
		{`"size":8192`, `"size":-1`},
	} {
		f.Add("20261122-010000F", strings.Replace(valid, s.old, s.new, 1))
	}
	f.Add("other", valid)
	f.Add("x", "{")
	f.Fuzz(func(t *testing.T, id, data string) {
		m, err := parseManifest(id, []byte(data))
		if err != nil {
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "backup "+id+": manifest") {
				t.Fatalf("refused manifest: %v; want ErrCorrupt naming the backup", err)
			}
			return
		}
		root := "/data"
		inside := func(p string) {
			j := filepath.Join(root, filepath.FromSlash(p))
			if !strings.HasPrefix(j, root+"/") {
				t.Fatalf("accepted path %q lands at %s", p, j)
			}
		}
		for _, d := range m.Dirs {
			inside(d.Path)
			if d.Mode > 0o777 {
				t.Fatalf("accepted mode %o", d.Mode)
			}
		}
		for _, l := range m.Links {
			inside(l.Path)
			if !filepath.IsAbs(l.Target) {
				t.Fatalf("accepted link target %q", l.Target)
			}
		}
		for _, f := range m.Files {
			inside(f.Path)
			if f.Mode > 0o777 || f.Ref == m.ID || f.DeltaBase == m.ID {
				t.Fatalf("accepted file %+v", f)
			}
		}
	})
}

var reLSN = regexp.MustCompile(`^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$`)

// FuzzParseLSN: restore's --target-lsn takes exactly PostgreSQL's form,
// refuses anything else saying so, and what it takes prints back the same.
func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/3000060", "16/B374D848", "FFFFFFFF/FFFFFFFF", "0/3000060junk", " 0/1", "+1/2", "0x1/2", "1/", "/1", "100000000/0", "1/2/3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			if reLSN.MatchString(s) {
				t.Fatalf("ParseLSN(%q) refused: %v", s, err)
			}
			if !strings.Contains(err.Error(), "such as 0/3000060") {
				t.Fatalf("ParseLSN(%q): the error does not say what is wanted: %v", s, err)
			}
			return
		}
		if !reLSN.MatchString(s) {
			t.Fatalf("ParseLSN(%q) = %s, want an error", s, l)
		}
		if back, err := ParseLSN(l.String()); err != nil || back != l {
			t.Fatalf("ParseLSN(%q) = %s, which parses back to %s, %v", s, l, back, err)
		}
	})
}
