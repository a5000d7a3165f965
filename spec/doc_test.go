package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDocUpToDate(t *testing.T) {
	var b bytes.Buffer
	if err := WriteDoc(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "docs", "spec.md")
	if *update {
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v: run go run ./spec/cmd/gendoc -o docs/spec.md", err)
	}
	if diff := cmp.Diff(b.String(), string(got)); diff != "" {
		t.Errorf("docs/spec.md is out of date: run go run ./spec/cmd/gendoc -o docs/spec.md (or go generate ./spec). Diff (-want +got):\n%s", diff)
	}
}

func TestDocExampleLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "main.hcl")
	if err := os.WriteFile(path, []byte(DocExample), 0o644); err != nil {
		t.Fatal(err)
	}
	m, diags := Load(Input{Paths: []string{path}, Environ: []string{"HOME=/home/op", "PGHERD_VAR_replication_password=x y z"}})
	if diags.HasErrors() {
		var buf bytes.Buffer
		_ = diags.Write(&buf, false)
		t.Fatalf("the example of docs/spec.md does not load:\n%s", buf.String())
	}
	if len(m.Hosts) != 3 || len(m.Files) != 2 || !m.Files[0].Sensitive {
		t.Errorf("unexpected model: %d hosts, %d files", len(m.Hosts), len(m.Files))
	}
	formatted, fdiags := Format([]byte(DocExample), "example.hcl")
	if fdiags.HasErrors() || string(formatted) != DocExample {
		t.Errorf("the example is not formatted canonically:\n%s", formatted)
	}
}

func TestDocClusterExampleLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "main.hcl")
	if err := os.WriteFile(path, []byte(DocClusterExample), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"PGHERD_VAR_superuser_password=a", "PGHERD_VAR_replication_password=b", "PGHERD_VAR_app_password=c"}
	m, diags := Load(Input{Paths: []string{path}, Environ: env})
	if len(diags.Diags) > 0 {
		var buf bytes.Buffer
		_ = diags.Write(&buf, false)
		t.Fatalf("the cluster example of docs/spec.md does not load cleanly:\n%s", buf.String())
	}
	c := m.Cluster
	if len(c.Postgres.Hosts) != 3 || len(c.Etcd.Hosts) != 3 || len(c.HAProxy.Hosts) != 2 || len(c.Keepalived.Hosts) != 2 {
		t.Errorf("unexpected hosts: postgres %v, etcd %v, haproxy %v, keepalived %v", c.Postgres.Hosts, c.Etcd.Hosts, c.HAProxy.Hosts, c.Keepalived.Hosts)
	}
	formatted, fdiags := Format([]byte(DocClusterExample), "example.hcl")
	if fdiags.HasErrors() || string(formatted) != DocClusterExample {
		t.Errorf("the example is not formatted canonically:\n%s", formatted)
	}
}
