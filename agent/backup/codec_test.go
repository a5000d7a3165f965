package backup

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func newTestStore(t *testing.T, pass string) (*Store, *LocalRepo) {
	t.Helper()
	repo, err := NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	repo.NoSync = true
	st, err := Init(t.Context(), repo, Options{Passphrase: pass, ScryptN: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	return st, repo
}

func TestEncodeRoundTrip(t *testing.T) {
	ctx := t.Context()
	rnd := make([]byte, 3*DefaultChunkSize+17)
	rand.Read(rnd)
	inputs := map[string][]byte{
		"empty":      nil,
		"small":      []byte("hello world"),
		"one chunk":  bytes.Repeat([]byte{'a'}, DefaultChunkSize),
		"random":     rnd,
		"compressed": bytes.Repeat([]byte("pgherd "), 200000),
	}
	for _, pass := range []string{"", "correct horse"} {
		st, _ := newTestStore(t, pass)
		for name, in := range inputs {
			t.Run(name+"/encrypted="+boolStr(pass != ""), func(t *testing.T) {
				if err := st.putBytes(ctx, "x/"+name, in); err != nil {
					t.Fatal(err)
				}
				got, err := st.getBytes(ctx, "x/"+name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, in) {
					t.Fatalf("round trip: %d bytes, want %d", len(got), len(in))
				}
			})
		}
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// TestEncryptedTampering cuts, flips and reorders an encrypted object; each
// must fail with ErrCorrupt, never return data.
func TestEncryptedTampering(t *testing.T) {
	ctx := t.Context()
	st, repo := newTestStore(t, "secret")
	// Incompressible, so that the object has several chunks.
	in := make([]byte, 4*DefaultChunkSize)
	rand.Read(in)
	if err := st.putBytes(ctx, "obj", in); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(repo.Root(), "obj")
	orig, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	hdr := len(encMagic) + fileIDLen
	chunk := DefaultChunkSize + tagLen
	cases := map[string]func([]byte) []byte{
		"truncated at chunk boundary": func(b []byte) []byte { return b[:hdr+chunk] },
		"truncated mid chunk":         func(b []byte) []byte { return b[:hdr+chunk+100] },
		"header only":                 func(b []byte) []byte { return b[:hdr] },
		"bit flip":                    func(b []byte) []byte { b[hdr+chunk+5] ^= 1; return b },
		"header flip":                 func(b []byte) []byte { b[10] ^= 1; return b },
		"chunks swapped": func(b []byte) []byte {
			out := append([]byte(nil), b[:hdr]...)
			out = append(out, b[hdr+chunk:hdr+2*chunk]...)
			out = append(out, b[hdr:hdr+chunk]...)
			return append(out, b[hdr+2*chunk:]...)
		},
		"extra chunk": func(b []byte) []byte { return append(b, b[hdr:hdr+chunk]...) },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(p, mutate(append([]byte(nil), orig...)), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := st.getBytes(ctx, "obj")
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %d bytes, err %v; want ErrCorrupt", len(got), err)
			}
		})
	}
}

func TestOpenKeys(t *testing.T) {
	ctx := t.Context()
	st, repo := newTestStore(t, "right")
	if !st.Encrypted() {
		t.Fatal("store is not encrypted")
	}
	if _, err := Open(ctx, repo, Options{Passphrase: "wrong"}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("open with a wrong passphrase: %v, want ErrWrongKey", err)
	}
	if _, err := Open(ctx, repo, Options{}); !errors.Is(err, ErrPassphraseRequired) {
		t.Fatalf("open without passphrase: %v, want ErrPassphraseRequired", err)
	}
	if _, err := Init(ctx, repo, Options{}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v, want ErrExists", err)
	}
	empty, _ := NewLocal(t.TempDir())
	if _, err := Open(ctx, empty, Options{}); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("open empty: %v, want ErrNoConfig", err)
	}
	if _, err := Open(ctx, repo, Options{Passphrase: "right"}); err != nil {
		t.Fatal(err)
	}
}

// TestKeyCache: a cached key opens the store like the passphrase does; a
// wrong passphrase misses the cache and fails; the cache file is private;
// a tampered cache is ignored, not trusted.
func TestKeyCache(t *testing.T) {
	ctx := t.Context()
	st, repo := newTestStore(t, "right")
	dir := filepath.Join(t.TempDir(), "keys")
	for i := range 2 {
		got, err := Open(ctx, repo, Options{Passphrase: "right", KeyCacheDir: dir})
		if err != nil {
			t.Fatalf("open %d: %v", i, err)
		}
		if !bytes.Equal(got.dataKey, st.dataKey) {
			t.Fatalf("open %d: a different data key", i)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "kek-*"))
	if len(files) != 1 {
		t.Fatalf("cache files: %v", files)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, files[0]: 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	if _, err := Open(ctx, repo, Options{Passphrase: "wrong", KeyCacheDir: dir}); !errors.Is(err, ErrWrongKey) {
		t.Fatalf("wrong passphrase with a cached key: %v, want ErrWrongKey", err)
	}
	b, _ := os.ReadFile(files[0])
	b[0] ^= 1
	if err := os.WriteFile(files[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := Open(ctx, repo, Options{Passphrase: "right", KeyCacheDir: dir})
	if err != nil || !bytes.Equal(got.dataKey, st.dataKey) {
		t.Fatalf("open with a tampered cache: %v", err)
	}
}

// TestPlainObjectsAreZstd: unencrypted objects decompress with zstd(1).
func TestPlainObjectsAreZstd(t *testing.T) {
	zstdBin, err := exec.LookPath("zstd")
	if err != nil {
		t.Skip("zstd(1) is not installed (apt-get install zstd)")
	}
	st, repo := newTestStore(t, "")
	in := bytes.Repeat([]byte("readable with standard tools\n"), 1000)
	if err := st.putBytes(t.Context(), "plain", in); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zstdBin, "-dc", filepath.Join(repo.Root(), "plain")).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, in) {
		t.Fatal("zstd -d output differs")
	}
}
