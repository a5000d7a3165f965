package backup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

const testSegSize = 1 << 20

// fakeWAL writes n segments (1 MiB each, distinct content) and their
// .ready files into a pg_wal-like directory.
func fakeWAL(t *testing.T, n int) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pg_wal")
	os.MkdirAll(filepath.Join(dir, "archive_status"), 0o700)
	var names []string
	for i := range n {
		name := segmentName(1, uint64(i+0xFE), testSegSize) // crosses a log boundary at 0x100
		data := bytes.Repeat([]byte(fmt.Sprintf("segment %d ", i)), testSegSize/8)
		os.WriteFile(filepath.Join(dir, name), data[:testSegSize], 0o600)
		os.WriteFile(filepath.Join(dir, "archive_status", name+".ready"), nil, 0o600)
		names = append(names, name)
	}
	return dir, names
}

func TestSegmentNames(t *testing.T) {
	for _, c := range []struct {
		name string
		size int64
		want string
	}{
		{"000000010000000000000001", DefaultSegmentSize, "000000010000000000000002"},
		{"0000000100000000000000FF", DefaultSegmentSize, "000000010000000100000000"},
		{"000000020000000A00000FFF", 1 << 20, "000000020000000B00000000"},
	} {
		got, err := nextSegment(c.name, c.size)
		if err != nil || got != c.want {
			t.Errorf("nextSegment(%s) = %s, %v; want %s", c.name, got, err, c.want)
		}
	}
}

func TestWALPushFetch(t *testing.T) {
	ctx := t.Context()
	for _, pass := range []string{"", "wal secret"} {
		t.Run("encrypted="+boolStr(pass != ""), func(t *testing.T) {
			st, repo := newTestStore(t, pass)
			dir, names := fakeWAL(t, 6)
			spool := t.TempDir()
			// Async: the first call pushes every ready file.
			if err := st.WALPush(ctx, filepath.Join(dir, names[0]), WALPushOptions{Async: true, SpoolDir: spool}); err != nil {
				t.Fatal(err)
			}
			objs, _ := st.walObjects(ctx, "wal/")
			if len(objs) != 6 {
				t.Fatalf("after async push: %d objects, want 6", len(objs))
			}
			// The following calls are served from the spool's records.
			for _, n := range names[1:] {
				if err := st.WALPush(ctx, filepath.Join(dir, n), WALPushOptions{Async: true, SpoolDir: spool}); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(spool, "pushed", n+".ok")); err == nil {
					t.Fatalf("record of %s not consumed", n)
				}
			}
			// Idempotent re-push; a different content is refused.
			if err := st.WALPush(ctx, filepath.Join(dir, names[2]), WALPushOptions{}); err != nil {
				t.Fatalf("re-push: %v", err)
			}
			os.WriteFile(filepath.Join(dir, names[2]), []byte("other"), 0o600)
			if err := st.WALPush(ctx, filepath.Join(dir, names[2]), WALPushOptions{}); !errors.Is(err, ErrWALMismatch) {
				t.Fatalf("push of different content: %v, want ErrWALMismatch", err)
			}
			// History and backup history files.
			for _, n := range []string{"00000002.history", names[1] + ".00000028.backup", names[5] + ".partial"} {
				os.WriteFile(filepath.Join(dir, n), []byte("content of "+n), 0o600)
				if err := st.WALPush(ctx, filepath.Join(dir, n), WALPushOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			// A .partial of another promotion from the same timeline,
			// with other content, is kept beside the first.
			partial := filepath.Join(dir, names[5]+".partial")
			os.WriteFile(partial, []byte("what another promoted member had"), 0o600)
			if err := st.WALPush(ctx, partial, WALPushOptions{}); err != nil {
				t.Fatalf("a second .partial: %v", err)
			}
			if objs, _ := st.walObjects(ctx, walKeyPrefix(names[5]+".partial")); len(objs) != 2 {
				t.Fatalf("%d objects for the two .partial files, want 2", len(objs))
			}
			if err := st.WALPush(ctx, filepath.Join(dir, "postmaster.pid"), WALPushOptions{}); !errors.Is(err, ErrBadWALName) {
				t.Fatalf("bad name: %v", err)
			}

			// Fetch with prefetch: every segment comes back intact.
			out := t.TempDir()
			fspool := t.TempDir()
			opts := WALFetchOptions{Prefetch: 3, SpoolDir: fspool, SegmentSize: testSegSize}
			for i, n := range names {
				dest := filepath.Join(out, "RECOVERYXLOG")
				if err := st.WALFetch(ctx, n, dest, opts); err != nil {
					t.Fatalf("fetch %s: %v", n, err)
				}
				got, _ := os.ReadFile(dest)
				want := bytes.Repeat([]byte(fmt.Sprintf("segment %d ", i)), testSegSize/8)[:testSegSize]
				if !bytes.Equal(got, want) {
					t.Fatalf("fetched %s differs", n)
				}
			}
			next, _ := nextSegment(names[5], testSegSize)
			if err := st.WALFetch(ctx, next, filepath.Join(out, "x"), opts); !errors.Is(err, ErrNotFound) {
				t.Fatalf("fetch past the end: %v, want ErrNotFound", err)
			}
			if err := st.WALFetch(ctx, "00000003.history", filepath.Join(out, "x"), opts); !errors.Is(err, ErrNotFound) {
				t.Fatalf("fetch absent history: %v, want ErrNotFound", err)
			}
			if err := st.WALFetch(ctx, "00000002.history", filepath.Join(out, "h"), opts); err != nil {
				t.Fatal(err)
			}
			// A corrupted archived segment is detected.
			o, _ := st.findWAL(ctx, names[0])
			p := filepath.Join(repo.Root(), o.Key)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 0xff
			os.WriteFile(p, b, 0o600)
			if err := st.WALFetch(ctx, names[0], filepath.Join(out, "c"), WALFetchOptions{}); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("fetch of corrupted segment: %v, want ErrCorrupt", err)
			}
			if _, err := os.Stat(filepath.Join(out, "c")); err == nil {
				t.Fatal("corrupted segment was written to dest")
			}
		})
	}
}
