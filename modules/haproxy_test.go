package modules

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// golden compares got with testdata/<name>, rewriting it under -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s mismatch (-want +got), run go test -update:\n%s", path, d)
	}
}

var threeMembers = []Backend{
	{Name: "pg1", Address: "10.77.0.11"},
	{Name: "pg2", Address: "10.77.0.12"},
	{Name: "pg3", Address: "10.77.0.13", PGPort: 5433},
}

var haproxyCases = []struct {
	name string
	cfg  HAProxyConfig
}{
	{"defaults", HAProxyConfig{Cluster: "main", Members: threeMembers}},
	{"vip-tuned", HAProxyConfig{
		Cluster: "prod.eu-1", Bind: "10.77.0.100", PrimaryPort: 6432, ReplicaPort: 6433, StatsPort: 8404, APIPort: 8009,
		Members: threeMembers, MaxConn: 5000,
		Check: HAProxyCheck{Inter: 2 * time.Second, FastInter: 250 * time.Millisecond, DownInter: 5 * time.Second, Fall: 3, Rise: 2},
	}},
	{"tls", HAProxyConfig{Cluster: "main", Members: threeMembers, CAFile: TLSCAFile}},
	{"ipv6", HAProxyConfig{Cluster: "v6", Bind: "::1", Members: []Backend{{Name: "a", Address: "fd00::11"}, {Name: "b", Address: "localhost"}}}},
}

func TestRenderHAProxy(t *testing.T) {
	haproxy, _ := exec.LookPath("haproxy")
	for _, tc := range haproxyCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderHAProxy(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "haproxy/"+tc.name+".cfg", got)
			if haproxy == "" {
				t.Skip("haproxy not installed (apt-get install haproxy): config not checked")
			}
			path := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(haproxy, "-c", "-f", path).CombinedOutput(); err != nil {
				t.Errorf("haproxy -c: %v\n%s", err, out)
			}
		})
	}
}

func TestRenderHAProxyInvalid(t *testing.T) {
	ok := HAProxyConfig{Cluster: "main", Members: threeMembers}
	for _, tc := range []struct {
		name string
		edit func(*HAProxyConfig)
	}{
		{"cluster name", func(c *HAProxyConfig) { c.Cluster = "main cluster" }},
		{"same ports", func(c *HAProxyConfig) { c.ReplicaPort = 5000 }},
		{"port range", func(c *HAProxyConfig) { c.StatsPort = 70000 }},
		{"bind", func(c *HAProxyConfig) { c.Bind = "eth0" }},
		{"no members", func(c *HAProxyConfig) { c.Members = nil }},
		{"dup member", func(c *HAProxyConfig) { c.Members = []Backend{threeMembers[0], threeMembers[0]} }},
		{"address option", func(c *HAProxyConfig) { c.Members = []Backend{{Name: "x", Address: "-f"}} }},
		{"address space", func(c *HAProxyConfig) { c.Members = []Backend{{Name: "x", Address: "a b"}} }},
		{"sub-ms check", func(c *HAProxyConfig) { c.Check.Inter = 1500 * time.Microsecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if _, err := RenderHAProxy(c); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if _, err := HAProxyResources(c); !errors.Is(err, ErrInvalid) {
				t.Errorf("HAProxyResources err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestHAProxyResources(t *testing.T) {
	rs, err := HAProxyResources(HAProxyConfig{Cluster: "main", Bind: "10.77.0.100", Members: threeMembers})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.Address())
	}
	want := "packages.haproxy sysctl.net.ipv4.ip_nonlocal_bind file./etc/haproxy/haproxy.cfg service.haproxy"
	if got := strings.Join(addrs, " "); got != want {
		t.Errorf("addresses = %q, want %q", got, want)
	}
	f := rs[2].(File)
	if f.Validate == "" || strings.Join(f.NotifyList, " ") != "service.haproxy" {
		t.Errorf("file = %+v: want a Validate command and a notify of service.haproxy", f)
	}
	s := rs[3].(Service)
	ch, steps := s.Notify([]string{f.Address()})
	if len(steps) != 1 || steps[0].Cmd != "systemctl try-reload-or-restart haproxy.service" || ch.Impact != "reload" {
		t.Errorf("notify = %+v %+v, want a reload", ch, steps)
	}
}

// TestFileValidateHAProxy replaces a config through File.Validate with the
// real haproxy -c: a valid config replaces the file, a broken one leaves it
// untouched and no candidate behind.
func TestFileValidateHAProxy(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes files owned by root")
	}
	h := localHost{}
	dir := t.TempDir()
	path := filepath.Join(dir, "haproxy.cfg")
	good, err := RenderHAProxy(HAProxyConfig{Cluster: "main", Members: threeMembers})
	if err != nil {
		t.Fatal(err)
	}
	f := File{Path: path, Content: good, Mode: "0644", Validate: "haproxy -c -f %s"}
	if got := converge(t, h, f); len(got) != 1 {
		t.Fatalf("changed %q, want the file", got)
	}

	broken := File{Path: path, Content: good + "    server pg4 10.77.0.14:5432 chek port 8008\n", Mode: "0644", Validate: f.Validate}
	ch, steps, err := broken.Diff(probe(t, h, broken))
	if err != nil || ch.IsNoOp() || len(steps) != 1 {
		t.Fatalf("diff = %+v, %d steps, %v", ch, len(steps), err)
	}
	err = steps[0].Run(t.Context(), h)
	if !errors.Is(err, ErrValidate) || !strings.Contains(err.Error(), "chek") {
		t.Errorf("step error = %v, want ErrValidate naming the bad keyword", err)
	}
	if b, _ := os.ReadFile(path); string(b) != good {
		t.Errorf("%s was changed by a config that failed validation", path)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left in %s: %v", dir, entries)
	}
}
