package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// indent re-indents a JSON body so that golden files read well.
func indent(t *testing.T, body string) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Indent(&b, []byte(body), "", "  "); err != nil {
		t.Fatalf("not JSON: %v: %q", err, body)
	}
	return b.String() + "\n"
}

func TestReadEndpoints(t *testing.T) {
	paused := with(primary(), func(s *Snapshot) {
		s.Paused = true
		s.PendingRestart = true
		s.Cluster.ScheduledSwitchover = &ScheduledSwitchover{At: now.Add(time.Hour), From: "pg1", To: "pg2"}
	})
	tests := []struct {
		name   string
		snap   Snapshot
		method string
		target string
		want   int
		golden string // testdata file of the indented JSON body
	}{
		{"patroni on the primary", primary(), "GET", "/patroni", 200, "patroni-primary.json"},
		{"patroni on a replica", replica(), "GET", "/patroni", 200, "patroni-replica.json"},
		{"patroni when stopped", Snapshot{Member: "pg3", Role: RoleStopped, State: "stopped", LagBytes: -1}, "GET", "/patroni", 200, "patroni-stopped.json"},
		{"root on the primary", primary(), "GET", "/", 200, "patroni-primary.json"},
		{"root on a replica is the primary check", replica(), "GET", "/", 503, "patroni-replica.json"},
		{"cluster", primary(), "GET", "/cluster", 200, "cluster.json"},
		{"cluster paused with a scheduled switchover", paused, "GET", "/cluster", 200, "cluster-paused.json"},
		{"cluster before the first read", Snapshot{}, "GET", "/cluster", 200, "cluster-empty.json"},
		{"history", primary(), "GET", "/history", 200, "history.json"},
		{"history empty", Snapshot{}, "GET", "/history", 200, "history-empty.json"},
		{"config", primary(), "GET", "/config", 200, "config.json"},
		{"config not read yet", Snapshot{}, "GET", "/config", 503, ""},
		{"config invalid", with(primary(), func(s *Snapshot) { s.Cluster.Config = []byte("{") }), "GET", "/config", 503, ""},
		{"HEAD cluster", primary(), "HEAD", "/cluster", 200, ""},
		{"OPTIONS cluster", primary(), "OPTIONS", "/cluster", 204, ""},
		{"POST cluster", primary(), "POST", "/cluster", 405, ""},
		{"unknown path", primary(), "GET", "/nope", 404, ""},
		{"unknown path with dots", primary(), "GET", "/../primary", 404, ""},
		{"trailing slash", primary(), "GET", "/primary/", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newServer(tt.snap, nil).Handler()
			code, body, hdr := do(t, h, tt.method, tt.target, "")
			if code != tt.want {
				t.Errorf("%s %s = %d %q, want %d", tt.method, tt.target, code, body, tt.want)
			}
			if tt.golden != "" {
				if ct := hdr.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q", ct)
				}
				golden(t, tt.golden, indent(t, body))
			}
		})
	}
}

func TestAllowHeader(t *testing.T) {
	h := newServer(primary(), nil).Handler()
	for target, want := range map[string]string{
		"/config":     "GET, PATCH, HEAD, OPTIONS",
		"/switchover": "POST, OPTIONS",
		"/replica":    "GET, HEAD, OPTIONS",
	} {
		_, _, hdr := do(t, h, http.MethodDelete, target, "")
		if got := hdr.Get("Allow"); got != want {
			t.Errorf("DELETE %s: Allow %q, want %q", target, got, want)
		}
	}
}

// metricsText returns the pgherd_ lines of GET /metrics.
func metricsText(t *testing.T, h http.Handler) string {
	t.Helper()
	code, body, _ := do(t, h, http.MethodGet, "/metrics", "")
	if code != 200 {
		t.Fatalf("GET /metrics = %d %q", code, body)
	}
	var out strings.Builder
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "pgherd_") || strings.HasPrefix(line, "# HELP pgherd_") || strings.HasPrefix(line, "# TYPE pgherd_") {
			out.WriteString(line + "\n")
		}
	}
	return out.String()
}

func TestMetrics(t *testing.T) {
	tests := []struct {
		name   string
		snap   Snapshot
		loops  []time.Duration
		golden string
	}{
		{"primary", primary(), []time.Duration{3 * time.Millisecond, 40 * time.Millisecond, 2 * time.Second}, "metrics-primary.txt"},
		{"replica", replica(), nil, "metrics-replica.txt"},
		{"expired lease", with(primary(), func(s *Snapshot) { s.LeaseDeadline = now.Add(-time.Second) }), nil, "metrics-expired.txt"},
		{"odd role", Snapshot{Role: "demoting", LagBytes: -1}, nil, "metrics-odd-role.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(tt.snap, nil)
			for _, d := range tt.loops {
				s.ObserveLoop(d)
			}
			golden(t, tt.golden, metricsText(t, s.Handler()))
		})
	}
	t.Run("runtime and process collectors", func(t *testing.T) {
		_, body, _ := do(t, newServer(primary(), nil).Handler(), http.MethodGet, "/metrics", "")
		for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes"} {
			if !strings.Contains(body, "\n"+name+" ") {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})
}
