package modules

import (
	"errors"
	"os/exec"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestBatchScript(t *testing.T) {
	nonce := NewNonce()
	probes := []string{
		"echo hello",
		"printf 'no newline'",
		"exit 3",
		"echo '@@pgherd-fake-end-0@@ 0'; printf '\\n\\n'",
		"if then fi",                // a syntax error fails only this probe
		"cat; echo read-stdin-done", // stdin is /dev/null: cat returns at once
		"",
		"echo to-stderr >&2; echo out",
	}
	out, err := exec.Command("sh", "-c", BatchScript(nonce, probes)).Output()
	if err != nil {
		t.Fatalf("batch: %v", err)
	}
	got, err := SplitBatch(nonce, out, len(probes))
	if err != nil {
		t.Fatalf("SplitBatch: %v\n%s", err, out)
	}
	want := []Fact{
		{Stdout: []byte("hello\n")},
		{Stdout: []byte("no newline")},
		{Stdout: []byte{}, ExitCode: 3},
		{Stdout: []byte("@@pgherd-fake-end-0@@ 0\n\n\n")},
		{Stdout: []byte{}, ExitCode: 2},
		{Stdout: []byte("read-stdin-done\n")},
		{Stdout: []byte{}},
		{Stdout: []byte("out\n")},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("facts (-want +got):\n%s", d)
	}
}

func TestSplitBatchErrors(t *testing.T) {
	nonce := "0123abcd"
	out, err := exec.Command("sh", "-c", BatchScript(nonce, []string{"echo a", "echo b"})).Output()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		nonce string
		out   []byte
		n     int
	}{
		{"wrong nonce", "ffff", out, 2},
		{"cut short", nonce, out[:len(out)-5], 2},
		{"more probes than run", nonce, out, 3},
		{"empty", nonce, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := SplitBatch(tt.nonce, tt.out, tt.n); !errors.Is(err, ErrBatchOutput) {
				t.Errorf("err = %v, want ErrBatchOutput", err)
			}
		})
	}
	if f, err := SplitBatch(nonce, out, 2); err != nil || string(f[1].Stdout) != "b\n" {
		t.Errorf("SplitBatch = %v, %v", f, err)
	}
}

func TestCompareDebianVersions(t *testing.T) {
	pairs := [][2]string{
		{"1.0", "1.0"}, {"1.0", "1.1"}, {"1.0~rc1", "1.0"}, {"1.0", "1.0+b1"},
		{"15.18-0+deb12u1", "15.20-0+deb12u1"}, {"2.6.12-1+deb12u3", "2.6.12-1+deb12u4"},
		{"1:1.0", "2.0"}, {"2:9.0.1378-2", "9.1"}, {"1.0-1", "1.0"}, {"1.0a", "1.0"},
		{"1.0~", "1.0~~"}, {"1.01", "1.1"}, {"1.0.0", "1.0"}, {"0:1.2", "1.2"},
		{"10", "9"}, {"1.2-3~bpo12+1", "1.2-3"}, {"a", "+"}, {"3.4.23-4", "3.4.23-4+b1"},
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed: it is the reference")
	}
	for _, p := range pairs {
		t.Run(p[0]+"_vs_"+p[1], func(t *testing.T) {
			got := CompareDebianVersions(p[0], p[1])
			var want int
			switch {
			case exec.Command("dpkg", "--compare-versions", p[0], "lt", p[1]).Run() == nil:
				want = -1
			case exec.Command("dpkg", "--compare-versions", p[0], "gt", p[1]).Run() == nil:
				want = 1
			}
			if got != want {
				t.Errorf("CompareDebianVersions = %d, dpkg says %d", got, want)
			}
			if back := CompareDebianVersions(p[1], p[0]); back != -want {
				t.Errorf("reversed = %d, want %d", back, -want)
			}
		})
	}
}
