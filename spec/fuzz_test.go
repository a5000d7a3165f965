package spec

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzLoad(f *testing.F) {
	for _, glob := range []string{"testdata/good/*.hcl", "testdata/good/*/*.hcl", "testdata/broken/*.hcl", "testdata/warn/*.hcl", "testdata/format/*.hcl"} {
		paths, err := filepath.Glob(glob)
		if err != nil {
			f.Fatal(err)
		}
		for _, p := range paths {
			src, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(src)
		}
	}
	dir, err := filepath.Abs("testdata/good")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		// Sources are resolved against testdata/good, whose files/ the
		// seeds use; Load's recover is bypassed so that a panic fails.
		name := filepath.Join(dir, "fuzz.hcl")
		m, diags := load(Input{Environ: testEnviron}, []source{{name: name, src: src}})
		if diags.HasErrors() != (m == nil) {
			t.Fatalf("model %v with errors %v", m != nil, diags.HasErrors())
		}
		_ = diags.Write(discard{}, false)
		if m != nil {
			_ = Digest(m)
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
