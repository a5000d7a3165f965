package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// labHosts is a host file like the one `pgherd lab up` writes: the
// examples are run against it.
const labHosts = "testdata/examples/lab.hcl"

// TestExamplesLoad loads every directory under examples/ together with a
// lab host file: each must load without error or warning, and its files
// must be formatted.
func TestExamplesLoad(t *testing.T) {
	entries, err := os.ReadDir(filepath.Join("..", "examples"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		n++
		dir := filepath.Join("..", "examples", e.Name())
		t.Run(e.Name(), func(t *testing.T) {
			m, diags := Load(Input{Paths: []string{dir, labHosts}, Environ: []string{"HOME=/home/op"}})
			if len(diags.Diags) > 0 {
				var buf bytes.Buffer
				_ = diags.Write(&buf, false)
				t.Fatalf("examples/%s does not load cleanly with %s:\n%s", e.Name(), labHosts, buf.String())
			}
			if m == nil {
				t.Fatal("no model")
			}
			files, _ := filepath.Glob(filepath.Join(dir, "*.hcl"))
			for _, f := range files {
				src, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				if out, _ := Format(src, f); !bytes.Equal(out, src) {
					t.Errorf("%s is not formatted: run pgherd fmt", f)
				}
			}
		})
	}
	if n == 0 {
		t.Fatal("no example found")
	}
}

// TestExampleHA checks what examples/ha asks of the lab.
func TestExampleHA(t *testing.T) {
	m, diags := Load(Input{Paths: []string{filepath.Join("..", "examples", "ha"), labHosts}, Environ: []string{"HOME=/home/op"}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	c := m.Cluster
	if c == nil {
		t.Fatal("no cluster")
	}
	all := []string{"node1", "node2", "node3"}
	lb := []string{"node1", "node2"}
	switch {
	case !slices.Equal(c.Postgres.Hosts, all) || !slices.Equal(c.Etcd.Hosts, all):
		t.Errorf("postgres on %v, etcd on %v; want %v", c.Postgres.Hosts, c.Etcd.Hosts, all)
	case c.HAProxy == nil || !slices.Equal(c.HAProxy.Hosts, lb):
		t.Errorf("haproxy = %+v, want on %v", c.HAProxy, lb)
	case c.Keepalived == nil || !slices.Equal(c.Keepalived.Hosts, lb) || c.Keepalived.VIP != "10.77.0.100/24" || c.Keepalived.Interface != "eth0":
		t.Errorf("keepalived = %+v", c.Keepalived)
	case c.HA.SynchronousMode != SyncOff || c.HA.TTL != 3*time.Second || c.HA.LoopWait != 500*time.Millisecond:
		t.Errorf("ha = %+v", c.HA)
	case len(c.Members) != 3:
		t.Errorf("members = %+v", c.Members)
	}
	for _, p := range []string{c.Postgres.SuperuserPassword, c.Postgres.ReplicationPassword, c.HA.APIToken, c.Keepalived.Password, c.Postgres.Roles[0].Password} {
		if p == "" || !slices.Contains(m.Sensitive, p) {
			t.Errorf("password %q is not in Model.Sensitive", p)
		}
	}
}
