package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/pgherd/pgherd/spec"
)

func ptr[T any](v T) *T { return &v }

func primary(name, addr string, lease float64) MemberReport {
	return MemberReport{Member: name, Host: addr, Role: "primary", State: "running", Timeline: 3, LeaseSeconds: ptr(lease), DCSReachable: true}
}

func replica(name, addr, state string, lag int64) MemberReport {
	return MemberReport{Member: name, Host: addr, Role: "replica", State: state, Timeline: 3, LagBytes: ptr(lag), DCSReachable: true}
}

func healthyEtcd() *EtcdReport {
	return &EtcdReport{Expected: 3, Endpoints: []EtcdHealth{
		{Name: "node1", Endpoint: "http://10.0.0.1:2379", Healthy: true, Took: "1.2ms"},
		{Name: "node2", Endpoint: "http://10.0.0.2:2379", Healthy: true, Took: "1.5ms"},
		{Name: "node3", Endpoint: "http://10.0.0.3:2379", Healthy: true, Took: "1.1ms"},
	}}
}

// TestRenderStatus pins the table, the verdict and the exit status of the
// states status can see, in text (NAME.golden) and JSON (NAME.json.golden).
func TestRenderStatus(t *testing.T) {
	tests := []struct {
		name       string
		report     StatusReport
		wantHealth string
	}{
		{
			name: "healthy",
			report: StatusReport{Cluster: "main", Members: []MemberReport{
				primary("node1", "10.0.0.1", 8.25),
				replica("node2", "10.0.0.2", "streaming", 0),
				replica("node3", "10.0.0.3", "streaming", 3<<17),
			}, VIP: &VIPReport{Address: "10.0.0.100/24", Holders: []string{"node1"}}, Etcd: healthyEtcd()},
			wantHealth: "healthy",
		},
		{
			name: "degraded",
			report: StatusReport{Cluster: "main", Members: []MemberReport{
				primary("node1", "10.0.0.1", 2),
				replica("node2", "10.0.0.2", "stopped", -1),
				replica("node3", "10.0.0.3", "streaming", 64<<20),
			}, VIP: &VIPReport{Address: "10.0.0.100/24", Holders: []string{}}, Etcd: &EtcdReport{Expected: 3, Endpoints: []EtcdHealth{
				{Name: "node1", Endpoint: "http://10.0.0.1:2379", Healthy: true},
				{Name: "node2", Endpoint: "http://10.0.0.2:2379", Healthy: true},
				{Name: "node3", Endpoint: "http://10.0.0.3:2379", Error: "context deadline exceeded"},
			}}},
			wantHealth: "degraded",
		},
		{
			name: "no-primary",
			report: StatusReport{Cluster: "main", Members: []MemberReport{
				{Member: "node1", Host: "10.0.0.1", Role: "primary", State: "running", Timeline: 3},
				replica("node2", "10.0.0.2", "streaming", 0),
				{Member: "node3", Host: "10.0.0.3", Error: "agent API on node3: dial tcp: connection refused"},
			}},
			wantHealth: "degraded",
		},
		{
			name: "split-vip",
			report: StatusReport{Cluster: "main", Members: []MemberReport{
				primary("node1", "10.0.0.1", 9),
				replica("node2", "10.0.0.2", "streaming", 0),
			}, VIP: &VIPReport{Address: "10.0.0.100/24", Holders: []string{"node1", "node2"}}, Paused: true},
			wantHealth: "degraded",
		},
		{
			name: "limited", // -limit node2: no primary among the hosts shown is no problem
			report: StatusReport{Cluster: "main", Limited: true, Members: []MemberReport{
				replica("node2", "10.0.0.2", "streaming", 0),
			}, VIP: &VIPReport{Address: "10.0.0.100/24", Holders: []string{}}},
			wantHealth: "healthy",
		},
		{
			name: "unreachable",
			report: StatusReport{Cluster: "main", Members: []MemberReport{
				primary("node1", "10.0.0.1", 7.5),
				replica("node2", "10.0.0.2", "streaming", 0),
				{Member: "node3", Host: "10.0.0.3", Unreachable: true, Error: "node3 (10.0.0.3:22): host unreachable: connect timeout"},
			}, VIP: &VIPReport{Address: "10.0.0.100/24", Holders: []string{"node1"}, Errors: []HostProblem{
				{Host: "node2", Unreachable: true, Error: "node2 (10.0.0.2:22): host unreachable: connection refused"},
			}}, Etcd: &EtcdReport{Expected: 3, Endpoints: []EtcdHealth{}, Errors: []HostProblem{
				{Host: "node1", Error: "node1: etcdctl endpoint health: exit status 1"},
			}}},
			wantHealth: "error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.report
			r.Health, r.Verdict = verdict(&r, 1<<20)
			if r.Health != tt.wantHealth {
				t.Errorf("health = %q, want %q (verdict %q)", r.Health, tt.wantHealth, r.Verdict)
			}
			var text strings.Builder
			if err := renderStatus(&text, &r); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(&r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "status", tt.name+".golden"), text.String())
			golden(t, filepath.Join("testdata", "status", tt.name+".json.golden"), string(js)+"\n")
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cli -run %s -update)", err, t.Name())
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

func TestHoldsVIP(t *testing.T) {
	const out = `1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 10.77.0.11/24 brd 10.77.0.255 scope global eth0\       valid_lft forever preferred_lft forever
2: eth0    inet 10.77.0.100/24 scope global secondary eth0\       valid_lft forever preferred_lft forever
2: eth0    inet6 fd00::100/64 scope global \       valid_lft forever preferred_lft forever
`
	tests := []struct {
		vip  string
		want bool
	}{
		{"10.77.0.100/24", true},
		{"10.77.0.100", true},
		{"10.77.0.10/24", false}, // a prefix of 10.77.0.100 and 10.77.0.11
		{"10.77.0.1/24", false},
		{"fd00::100/64", true},
		{"not-an-ip", false},
	}
	for _, tt := range tests {
		t.Run(tt.vip, func(t *testing.T) {
			if got := holdsVIP(out, tt.vip); got != tt.want {
				t.Errorf("holdsVIP(%q) = %v, want %v", tt.vip, got, tt.want)
			}
		})
	}
}

func TestParseEtcdHealth(t *testing.T) {
	m := &spec.Model{
		Hosts:   []spec.Host{{Name: "node1", Address: "10.0.0.1"}, {Name: "node2", Address: "10.0.0.2"}, {Name: "node3", Address: "10.0.0.3"}},
		Cluster: &spec.Cluster{Etcd: spec.Etcd{Hosts: []string{"node1", "node2", "node3"}}},
	}
	// As etcdctl 3.4 prints it, with one member down.
	out := `[{"endpoint":"http://10.0.0.2:2379","health":true,"took":"1.9ms"},{"endpoint":"http://10.0.0.1:2379","health":true,"took":"2.1ms"},{"endpoint":"http://10.0.0.9:2379","health":false,"took":"5s","error":"context deadline exceeded"}]`
	got, err := parseEtcdHealth([]byte(out), m)
	if err != nil {
		t.Fatal(err)
	}
	want := []EtcdHealth{
		{Name: "http://10.0.0.9:2379", Endpoint: "http://10.0.0.9:2379", Took: "5s", Error: "context deadline exceeded"},
		{Name: "node1", Endpoint: "http://10.0.0.1:2379", Healthy: true, Took: "2.1ms"},
		{Name: "node2", Endpoint: "http://10.0.0.2:2379", Healthy: true, Took: "1.9ms"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := parseEtcdHealth([]byte("Error: unhealthy cluster"), m); err == nil {
		t.Error("non-JSON output parsed without error")
	}
}
