package pg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetParametersRemoved: a parameter the spec stops naming falls back to
// PostgreSQL's default after the next SetParameters; what ALTER SYSTEM set
// by hand and what the agent decides itself stay.
func TestSetParametersRemoved(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p := newTestInstance(t, base, "p")
	spec := map[string]string{"fsync": "off", "work_mem": "8MB", "log_min_duration_statement": "1s"}
	if err := p.InitDB(ctx, InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: spec}); err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	mustExec(t, p, "ALTER SYSTEM SET statement_timeout = '5s'")
	if _, err := p.SetSynchronousStandbyNames(ctx, "r1"); err != nil {
		t.Fatal(err)
	}
	setting := func(name string) string {
		t.Helper()
		conn, err := p.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := setting("work_mem"); got != "8MB" {
		t.Fatalf("work_mem = %s after initdb, want 8MB", got)
	}

	delete(spec, "work_mem")
	spec["log_min_duration_statement"] = "2s"
	if err := p.SetParameters(ctx, spec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "work_mem back to its default, log_min_duration_statement 2s", func() (bool, string) {
		w, l := setting("work_mem"), setting("log_min_duration_statement")
		return w == "4MB" && l == "2s", "work_mem " + w + ", log_min_duration_statement " + l
	})
	mp, err := p.ManagedParameters()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := mp["work_mem"]; ok || mp["synchronous_standby_names"] != "r1" || mp["fsync"] != "off" {
		t.Fatalf("managed parameters after the removal: %v", mp)
	}
	if got := setting("statement_timeout"); got != "5s" {
		t.Fatalf("statement_timeout (ALTER SYSTEM) = %s, want 5s kept", got)
	}

	// A managed file written before it listed the spec's parameters: all
	// but the agent's own count as the spec's.
	path := filepath.Join(p.DataDir, ManagedConfFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var old []string
	for l := range strings.Lines(string(data)) {
		if !strings.HasPrefix(l, specMarker) {
			old = append(old, l)
		}
	}
	old = append(old, "work_mem = '16MB'\n")
	if err := p.writeFile(path, []byte(strings.Join(old, ""))); err != nil {
		t.Fatal(err)
	}
	if err := p.SetParameters(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if mp, err = p.ManagedParameters(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mp["work_mem"]; ok || mp["synchronous_standby_names"] != "r1" {
		t.Fatalf("managed parameters after a file without the list: %v", mp)
	}
}
