package lab

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

func TestNewLabAddresses(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    []Host
		wantErr string
	}{
		{
			name: "defaults",
			cfg:  Config{Name: "pgherd-lab"},
			want: []Host{
				{Name: "node1", Address: "10.77.0.11", Container: "pgherd-lab-node1"},
				{Name: "node2", Address: "10.77.0.12", Container: "pgherd-lab-node2"},
				{Name: "node3", Address: "10.77.0.13", Container: "pgherd-lab-node3"},
			},
		},
		{
			name: "other subnet, unmasked",
			cfg:  Config{Name: "t", Hosts: 2, Subnet: "10.78.0.5/24"},
			want: []Host{
				{Name: "node1", Address: "10.78.0.11", Container: "t-node1"},
				{Name: "node2", Address: "10.78.0.12", Container: "t-node2"},
			},
		},
		{
			name: "crosses an octet",
			cfg:  Config{Name: "t", Hosts: 2, Subnet: "10.1.0.240/28"},
			// .240/28 ends at .255: .251 and .252 fit, broadcast .255 free.
			want: []Host{
				{Name: "node1", Address: "10.1.0.251", Container: "t-node1"},
				{Name: "node2", Address: "10.1.0.252", Container: "t-node2"},
			},
		},
		{name: "too many for subnet", cfg: Config{Name: "t", Hosts: 5, Subnet: "10.1.0.240/28"}, wantErr: "too small"},
		{name: "fills a /24", cfg: Config{Name: "t", Hosts: 244}, wantErr: "want 1 to 200"},
		{name: "ipv6", cfg: Config{Name: "t", Subnet: "fd00::/64"}, wantErr: "IPv4 CIDR"},
		{name: "garbage subnet", cfg: Config{Name: "t", Subnet: "nope"}, wantErr: "IPv4 CIDR"},
		{name: "negative hosts", cfg: Config{Name: "t", Hosts: -1}, wantErr: "want 1 to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir = t.TempDir()
			l, err := newLab(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, l.Hosts()); diff != "" {
				t.Errorf("hosts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestThirtyHostsFit(t *testing.T) {
	l, err := newLab(Config{Name: "t", Hosts: 30, Subnet: DefaultSubnet, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Hosts()[29]; got.Name != "node30" || got.Address != "10.77.0.40" {
		t.Errorf("host 30 = %+v", got)
	}
}

func TestConfigName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"pgherd-lab", true},
		{"lab2", true},
		{"a_b", true},
		{"-lab", false},
		{"Lab", false},
		{"a b", false},
		{"a/b", false},
		{strings.Repeat("a", 41), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Open(Config{Name: tt.name, Dir: t.TempDir()})
			if (err == nil) != tt.ok {
				t.Errorf("Open(%q) err = %v, want ok=%v", tt.name, err, tt.ok)
			}
		})
	}
}

func TestDefaultDir(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		d := t.TempDir()
		t.Setenv("PGHERD_LAB_DIR", d)
		l, err := Open(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Dir() != d || l.Name() != DefaultName || len(l.Hosts()) != DefaultHosts || l.Subnet() != DefaultSubnet {
			t.Errorf("got dir %s name %s hosts %d subnet %s", l.Dir(), l.Name(), len(l.Hosts()), l.Subnet())
		}
	})
	t.Run("cache", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("PGHERD_LAB_DIR", "")
		t.Setenv("XDG_CACHE_HOME", filepath.Join(home, "cache"))
		l, err := Open(Config{Name: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if want := filepath.Join(home, "cache", "pgherd", "lab", "x"); l.Dir() != want {
			t.Errorf("dir = %s, want %s", l.Dir(), want)
		}
		if want := filepath.Join(home, "cache", "pgherd", "lab", "x", "id_ed25519"); l.KeyFile() != want {
			t.Errorf("key file = %s, want %s", l.KeyFile(), want)
		}
	})
}

func TestOpenReadsState(t *testing.T) {
	dir := t.TempDir()
	up, err := newLab(Config{Name: "t", Hosts: 5, Subnet: "10.99.0.0/24", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.writeState(make([]string, 5)); err != nil {
		t.Fatal(err)
	}
	l, err := Open(Config{Name: "t", Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(up.Hosts(), l.Hosts()); diff != "" {
		t.Errorf("hosts (-up +open):\n%s", diff)
	}
	snippet, err := os.ReadFile(l.SpecFile())
	if err != nil {
		t.Fatal(err)
	}
	if string(snippet) != l.SpecSnippet() {
		t.Errorf("lab.hcl differs from SpecSnippet")
	}
	// Broken state is an error, not a silent default.
	if err := os.WriteFile(filepath.Join(dir, "lab.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Name: "t", Dir: dir}); err == nil {
		t.Error("Open with a broken lab.json: no error")
	}
}

func TestSpecSnippetGolden(t *testing.T) {
	l, err := newLab(Config{Name: "pgherd-lab", Hosts: 3, Subnet: DefaultSubnet, Dir: "/home/u/.cache/pgherd/lab/pgherd-lab"})
	if err != nil {
		t.Fatal(err)
	}
	got := l.SpecSnippet()
	golden := filepath.Join("testdata", "lab.hcl.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("SpecSnippet (-golden +got):\n%s", diff)
	}
}

func TestHCLString(t *testing.T) {
	tests := map[string]string{
		`/a/b`:     `"/a/b"`,
		`/a/${x}`:  `"/a/$${x}"`,
		`/a/%{x}`:  `"/a/%%{x}"`,
		`/a"b\c`:   `"/a\"b\\c"`,
		"/a\nb":    `"/a\nb"`,
		`/plain$x`: `"/plain$x"`,
	}
	for in, want := range tests {
		t.Run(in, func(t *testing.T) {
			if got := hclString(in); got != want {
				t.Errorf("hclString(%q) = %s, want %s", in, got, want)
			}
		})
	}
}

func TestRecipeHash(t *testing.T) {
	base, host := baseRecipeHash(), hostRecipeHash()
	if base == "" || host == "" || base == host {
		t.Fatalf("base %q host %q", base, host)
	}
	if baseRecipeHash() != base || hostRecipeHash() != host {
		t.Fatal("recipe hash is not stable")
	}
	old := hostFiles["sshd.conf"]
	t.Cleanup(func() { hostFiles["sshd.conf"] = old })
	hostFiles["sshd.conf"] = old + "# changed\n"
	if hostRecipeHash() == host {
		t.Error("changing a host image file does not change the recipe hash")
	}
	hostFiles["sshd.conf"] = old
	oldPkgs := basePackages
	t.Cleanup(func() { basePackages = oldPkgs })
	basePackages = append(append([]string(nil), oldPkgs...), "vim")
	if baseRecipeHash() == base || hostRecipeHash() == host {
		t.Error("changing the base packages does not change both recipe hashes")
	}
}

func TestUnknownHost(t *testing.T) {
	l, err := newLab(Config{Name: "t", Hosts: 2, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node3", "", "t-node9"} {
		if _, err := l.Exec(context.Background(), name, "true"); !errors.Is(err, ErrUnknownHost) {
			t.Errorf("Exec(%q) err = %v, want ErrUnknownHost", name, err)
		}
	}
	if h, err := l.host("t-node2"); err != nil || h.Name != "node2" {
		t.Errorf("host by container name = %+v, %v", h, err)
	}
}

func TestDockerMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if err := checkDocker(context.Background()); !errors.Is(err, ErrDockerMissing) {
		t.Errorf("err = %v, want ErrDockerMissing", err)
	}
	_, err := Up(context.Background(), Config{Name: "t", Dir: t.TempDir()})
	if !errors.Is(err, ErrDockerMissing) || !strings.Contains(err.Error(), "apt-get install docker.io") {
		t.Errorf("Up err = %v, want ErrDockerMissing with an install hint", err)
	}
}

func TestCommandErrorIs(t *testing.T) {
	tests := []struct {
		stderr string
		want   bool
	}{
		{"Error: No such container: x", true},
		{"Error response from daemon: network x not found", true},
		{"Error: No such image: x", true},
		{"Error response from daemon: conflict", false},
	}
	for _, tt := range tests {
		t.Run(tt.stderr, func(t *testing.T) {
			var err error = &CommandError{Args: []string{"inspect"}, Code: 1, Stderr: tt.stderr}
			if got := errors.Is(err, ErrNoSuchObject); got != tt.want {
				t.Errorf("errors.Is = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestStateJSON(t *testing.T) {
	l, err := newLab(Config{Name: "t", Hosts: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.writeState([]string{"10.77.0.11 ssh-ed25519 AAAA"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(l.stateFile())
	if err != nil {
		t.Fatal(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if st.Name != "t" || st.Subnet != DefaultSubnet || len(st.Hosts) != 1 {
		t.Errorf("state = %+v", st)
	}
	kh, err := os.ReadFile(l.KnownHostsFile())
	if err != nil || string(kh) != "10.77.0.11 ssh-ed25519 AAAA\n" {
		t.Errorf("known_hosts = %q, %v", kh, err)
	}
}

func TestLockExcludes(t *testing.T) {
	l, err := newLab(Config{Name: "pgherd-locktest", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := l.lock(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := l.lock(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second lock: err = %v, want a deadline error", err)
	}
	unlock()
	unlock2, err := l.lock(context.Background())
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}

// TestDebootstrapMissing needs a Docker engine but builds nothing: with
// debootstrap off the PATH, a lab whose image is missing must say how to
// install it.
func TestDebootstrapMissing(t *testing.T) {
	dockerPath, err := exec.LookPath("docker")
	if err != nil || checkDocker(context.Background()) != nil {
		t.Skip("needs a running Docker engine")
	}
	if os.Geteuid() != 0 {
		t.Skip("as non-root the build stops at ErrNotRoot first")
	}
	bin := t.TempDir()
	if err := os.Symlink(dockerPath, filepath.Join(bin, "docker")); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)
	l, err := newLab(Config{Name: "pgherd-nodebootstrap-test", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// The shared images may exist already: build a base image of another
	// name, which needs debootstrap.
	err = l.ensureBaseImage(context.Background(), "pgherd-nodebootstrap-test-base:"+Suite)
	if !errors.Is(err, ErrDebootstrapMissing) || !strings.Contains(err.Error(), "apt-get install debootstrap") {
		t.Errorf("err = %v, want ErrDebootstrapMissing with an install hint", err)
	}
}
