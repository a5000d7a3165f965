package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	paths, err := filepath.Glob("testdata/format/*.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, diags := Format(src, path)
			if diags.HasErrors() {
				t.Fatal(diags)
			}
			golden(t, filepath.Join("format", strings.TrimSuffix(filepath.Base(path), ".hcl")+".golden"), got)
			again, _ := Format(got, path)
			if string(again) != string(got) {
				t.Errorf("Format is not idempotent:\n%s", again)
			}
		})
	}
}

func TestFormatRefusesSyntaxErrors(t *testing.T) {
	got, diags := Format([]byte("host \"a\" {\n  address = \n"), "x.hcl")
	if got != nil || !diags.HasErrors() {
		t.Fatalf("Format = %q, %v; want nil and errors", got, diags)
	}
	if diags[0].Subject == nil || diags[0].Subject.Filename != "x.hcl" {
		t.Errorf("diagnostic without the file's range: %v", diags[0])
	}
}

func TestDigest(t *testing.T) {
	load := func(t *testing.T, in Input) string {
		t.Helper()
		in.Environ = append(in.Environ, testEnviron...)
		m, diags := Load(in)
		if diags.HasErrors() {
			t.Fatal(diags.Diags)
		}
		return Digest(m)
	}
	base := load(t, Input{Paths: []string{"testdata/good/full.hcl"}})
	if !strings.HasPrefix(base, "sha256:") || len(base) != len("sha256:")+64 {
		t.Fatalf("Digest = %q", base)
	}
	if strings.Contains(base, "hunter2") {
		t.Fatal("digest shows the secret")
	}
	t.Run("stable", func(t *testing.T) {
		if got := load(t, Input{Paths: []string{"testdata/good/full.hcl"}}); got != base {
			t.Errorf("Digest changed between loads: %s, %s", got, base)
		}
	})
	t.Run("ranges and file names do not count", func(t *testing.T) {
		src, err := os.ReadFile("testdata/good/full.hcl")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.CopyFS(filepath.Join(dir, "files"), os.DirFS("testdata/good/files")); err != nil {
			t.Fatal(err)
		}
		moved := filepath.Join(dir, "other.hcl")
		if err := os.WriteFile(moved, append([]byte("# a comment\n\n"), src...), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := load(t, Input{Paths: []string{moved}}); got != base {
			t.Errorf("Digest changed with the file's name and line numbers")
		}
	})
	t.Run("a secret changes it", func(t *testing.T) {
		if got := load(t, Input{Paths: []string{"testdata/good/full.hcl"}, Vars: []string{"db_password=other"}}); got == base {
			t.Errorf("Digest did not change with the value of a sensitive variable")
		}
	})
	t.Run("a value changes it", func(t *testing.T) {
		if got := load(t, Input{Paths: []string{"testdata/good/full.hcl"}, Vars: []string{"env=staging"}}); got == base {
			t.Errorf("Digest did not change with the model")
		}
	})
}
