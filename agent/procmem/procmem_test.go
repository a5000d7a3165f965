package procmem

import (
	"runtime"
	"testing"
)

// TestTrimExecutable: the test binary's file-backed resident set shrinks
// once trimmed, and the process keeps running code afterwards.
func TestTrimExecutable(t *testing.T) {
	rss, anon, err := Resident()
	if err != nil {
		t.Fatal(err)
	}
	n, err := TrimExecutable()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	after, afterAnon, err := Resident()
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC() // runs plenty of code from the trimmed pages
	t.Logf("advised %d KB; RSS %d KB (anon %d KB) → %d KB (anon %d KB)", n>>10, rss>>10, anon>>10, after>>10, afterAnon>>10)
	if file, afterFile := rss-anon, after-afterAnon; afterFile > file*3/4 {
		t.Errorf("file-backed resident set %d KB → %d KB; want it a quarter smaller at least", file>>10, afterFile>>10)
	}
}
