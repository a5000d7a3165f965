package backup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testRepository is the contract every Repository implementation passes.
func testRepository(t *testing.T, repo Repository) {
	ctx := t.Context()
	get := func(t *testing.T, key string) []byte {
		t.Helper()
		rc, err := repo.Get(ctx, key)
		if err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		return b
	}
	t.Run("absent", func(t *testing.T) {
		if _, err := repo.Get(ctx, "nope/x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("get absent: %v, want ErrNotFound", err)
		}
		if _, err := repo.Stat(ctx, "nope/x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat absent: %v, want ErrNotFound", err)
		}
		if err := repo.Delete(ctx, "nope/x"); err != nil {
			t.Fatalf("delete absent: %v", err)
		}
		if l, err := repo.List(ctx, "nope/"); err != nil || len(l) != 0 {
			t.Fatalf("list absent = %v, %v", l, err)
		}
	})
	t.Run("put get stat replace", func(t *testing.T) {
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: multipart on S3
		for _, c := range []struct {
			key  string
			data []byte
		}{{"a/b/c.txt", []byte("hello")}, {"a/empty", nil}, {"a/b/c.txt", []byte("replaced")}, {"big/obj", big}} {
			if err := repo.Put(ctx, c.key, bytes.NewReader(c.data)); err != nil {
				t.Fatalf("put %s: %v", c.key, err)
			}
			if got := get(t, c.key); !bytes.Equal(got, c.data) {
				t.Fatalf("get %s: %d bytes, want %d", c.key, len(got), len(c.data))
			}
			fi, err := repo.Stat(ctx, c.key)
			if err != nil || fi.Size != int64(len(c.data)) || fi.Key != c.key {
				t.Fatalf("stat %s = %+v, %v", c.key, fi, err)
			}
		}
	})
	t.Run("failed put leaves nothing", func(t *testing.T) {
		r := io.MultiReader(strings.NewReader("partial"), errReader{errors.New("boom")})
		if err := repo.Put(ctx, "fail/x", r); err == nil {
			t.Fatal("put with a failing reader succeeded")
		}
		if _, err := repo.Stat(ctx, "fail/x"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat after failed put: %v, want ErrNotFound", err)
		}
		if l, _ := repo.List(ctx, "fail/"); len(l) != 0 {
			t.Fatalf("list after failed put = %v", l)
		}
	})
	t.Run("list", func(t *testing.T) {
		for _, k := range []string{"l/x/1", "l/x/2", "l/xy/3", "l/y"} {
			if err := repo.Put(ctx, k, strings.NewReader(k)); err != nil {
				t.Fatal(err)
			}
		}
		for prefix, want := range map[string]string{
			"l/":    "l/x/1 l/x/2 l/xy/3 l/y",
			"l/x":   "l/x/1 l/x/2 l/xy/3",
			"l/x/":  "l/x/1 l/x/2",
			"l/x/2": "l/x/2",
			"l/z":   "",
		} {
			l, err := repo.List(ctx, prefix)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range l {
				keys = append(keys, o.Key)
			}
			if got := strings.Join(keys, " "); got != want {
				t.Errorf("list %q = %q, want %q", prefix, got, want)
			}
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := repo.Delete(ctx, "l/x/1"); err != nil {
			t.Fatal(err)
		}
		if _, err := repo.Stat(ctx, "l/x/1"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stat deleted: %v", err)
		}
	})
	t.Run("concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Go(func() {
				k := fmt.Sprintf("conc/%d", i%4)
				if err := repo.Put(ctx, k, strings.NewReader(strings.Repeat(k, 1000))); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
	t.Run("invalid keys", func(t *testing.T) {
		for _, k := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "a\x00b", "./a"} {
			if err := repo.Put(ctx, k, strings.NewReader("x")); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("put %q: %v, want ErrInvalidKey", k, err)
			}
			if _, err := repo.Get(ctx, k); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("get %q: %v, want ErrInvalidKey", k, err)
			}
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func TestLocalRepo(t *testing.T) {
	repo, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	testRepository(t, repo)
}

func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"wal/0000000100000000/x.zst", "..", "a/../b", "/abs", "a\x00", "a/./b", "a/b/", "..a/b..", "C:\\x"} {
		f.Add(s)
	}
	root := filepath.FromSlash("/repo/root")
	f.Fuzz(func(t *testing.T, key string) {
		if ValidateKey(key) != nil {
			return
		}
		p := filepath.Join(root, filepath.FromSlash(key))
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
			t.Fatalf("valid key %q escapes the root: %q", key, p)
		}
		if filepath.ToSlash(rel) != key {
			t.Fatalf("valid key %q is not clean: %q", key, rel)
		}
		if strings.ContainsRune(key, 0) {
			t.Fatalf("valid key %q holds NUL", key)
		}
	})
}
