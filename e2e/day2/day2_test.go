package day2

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/suite"
)

func pgURL() string { return DSN(labNet) }

func writeSpec(t *testing.T, dir, pkg, sharedBuffers string) {
	t.Helper()
	example, err := os.ReadFile(filepath.Join("..", "..", "examples", "ha", "main.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := Spec(string(example), labNet, pkg, sharedBuffers)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{"lab.hcl": labSSH(), "main.hcl": spec} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// member is the part of an agent's /patroni answer the test reads.
type member struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	ReplicationState string `json:"replication_state"`
	Timeline         int    `json:"timeline"`
	PendingRestart   bool   `json:"pending_restart"`
	Pgherd           struct {
		IsLeader   bool `json:"is_leader"`
		LeaseValid bool `json:"lease_valid"`
	} `json:"pgherd"`
}

var apiClient = &http.Client{Timeout: 2 * time.Second}

// view asks every host's agent for its status; a host that does not
// answer is absent.
func view() map[string]member {
	out := map[string]member{}
	for _, h := range dbHosts() {
		resp, err := apiClient.Get("http://" + h.Address + ":8008/patroni")
		if err != nil {
			continue
		}
		var m member
		if json.NewDecoder(resp.Body).Decode(&m) == nil {
			out[h.Name] = m
		}
		resp.Body.Close()
	}
	return out
}

// settled waits until one member is the primary holding the lease and the
// others stream, and returns the primary and the view.
func settled(t *testing.T) (string, map[string]member) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		v := view()
		leader, streaming := "", 0
		for name, m := range v {
			switch {
			case m.Role == "primary" && m.Pgherd.IsLeader && m.Pgherd.LeaseValid:
				leader = name
			case m.Role == "replica" && m.ReplicationState == "streaming":
				streaming++
			}
		}
		if leader != "" && streaming == len(dbHosts())-1 {
			return leader, v
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster did not settle: %+v", v)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// sql runs a query as postgres on a host's server, through docker exec.
func sql(t *testing.T, host, query string) string {
	t.Helper()
	out, err := theLab.Exec(context.Background(), host, "runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t",
		"-h", "/var/run/postgresql", "-c", query)
	if err != nil {
		t.Fatalf("%s: %s: %v\n%s", host, query, err, out)
	}
	return strings.TrimSpace(out)
}

// versions is the server_version_num every host's server runs.
func versions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, h := range dbHosts() {
		out[h.Name] = sql(t, h.Name, "show server_version_num")
	}
	return out
}

// rollOrder is the order of the postgres_roll changes in a JSON plan.
func rollOrder(t *testing.T, planJSON string) []string {
	t.Helper()
	var p struct {
		Changes []struct {
			Host     string `json:"host"`
			Resource string `json:"resource"`
		} `json:"changes"`
	}
	if err := json.Unmarshal([]byte(planJSON), &p); err != nil {
		t.Fatalf("plan -json: %v", err)
	}
	var hosts []string
	for _, c := range p.Changes {
		if c.Resource == "postgres_roll" {
			hosts = append(hosts, c.Host)
		}
	}
	return hosts
}

// TestDay2 installs the cluster at 15.18, starts a writer, and then runs
// each procedure on it in turn: every one must keep every acknowledged
// write, and a plan right after it must be empty.
func TestDay2(t *testing.T) {
	suite.JournalsOnFailure(t, theLab)
	dir := t.TempDir()
	writeSpec(t, dir, FromVersion, "128MB")
	if r := run(t, pgherdBin, dir, "apply", "-auto-approve", "."); r.code != 0 {
		t.Fatalf("first apply: %s", r)
	}
	leader, _ := settled(t)
	for name, v := range versions(t) {
		if v != "150018" {
			t.Fatalf("%s runs %s after the first apply, want 150018", name, v)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	w, err := StartWriter(ctx, pgURL())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); <-w.Done }()
	if err := w.WaitAcks(ctx, 0, 20); err != nil {
		t.Fatal(err)
	}

	// procedure applies the spec with bin and checks what every procedure
	// promises; it returns the leader after it.
	procedure := func(t *testing.T, bin, name string) string {
		mark := w.Mark()
		start := time.Now()
		if r := run(t, bin, dir, "apply", "-auto-approve", "."); r.code != 0 {
			t.Fatalf("apply: %s", r)
		}
		wall := time.Since(start)
		if err := w.WaitAcks(ctx, w.Mark(), 20); err != nil {
			t.Fatal(err)
		}
		after, _ := settled(t)
		acks := w.Since(mark)
		lost, err := w.Missing(ctx, acks)
		if err != nil {
			t.Fatal(err)
		}
		if len(lost) > 0 {
			t.Fatalf("%d acknowledged writes lost: %v", len(lost), lost)
		}
		t.Logf("%s: apply %s, %d acknowledged writes kept, longest write gap %s (leader %s)",
			name, wall.Round(10*time.Millisecond), len(acks), w.MaxGap(mark).Round(time.Millisecond), after)
		if r := run(t, bin, dir, "plan", "-detailed-exitcode", "."); r.code != 0 {
			t.Fatalf("plan after the %s is not empty: %s", name, r)
		}
		return after
	}

	t.Run("minor upgrade", func(t *testing.T) {
		writeSpec(t, dir, ToVersion, "128MB")
		r := run(t, pgherdBin, dir, "plan", "-json", "-detailed-exitcode", ".")
		if r.code != 2 {
			t.Fatalf("plan of the upgrade: %s", r)
		}
		order := rollOrder(t, r.stdout)
		if len(order) != 3 || order[2] != leader {
			t.Fatalf("rolling order %v: want the 3 members, the leader %s last", order, leader)
		}
		after := procedure(t, pgherdBin, "minor upgrade")
		if after == leader {
			t.Errorf("the leader is still %s: the upgrade did not switch over", leader)
		}
		for name, v := range versions(t) {
			if v != "150020" {
				t.Errorf("%s runs %s, want 150020", name, v)
			}
		}
		leader = after
	})

	t.Run("rolling restart", func(t *testing.T) {
		writeSpec(t, dir, ToVersion, "256MB")
		r := run(t, pgherdBin, dir, "plan", "-json", "-detailed-exitcode", ".")
		if r.code != 2 || !strings.Contains(r.stdout, "restart needed") {
			t.Fatalf("plan of shared_buffers: %s", r)
		}
		leader = procedure(t, pgherdBin, "rolling restart")
		for _, h := range dbHosts() {
			if got := sql(t, h.Name, "select current_setting('shared_buffers'), (select count(*) from pg_settings where pending_restart)"); got != "256MB|0" {
				t.Errorf("%s: shared_buffers, pending restarts = %q, want 256MB|0", h.Name, got)
			}
		}
	})

	t.Run("agent upgrade", func(t *testing.T) {
		_, before := settled(t)
		r := run(t, nextBin, dir, "plan", "-json", "-detailed-exitcode", ".")
		if r.code != 2 || !strings.Contains(r.stdout, `"agent_binary"`) {
			t.Fatalf("plan with another pgherd: %s", r)
		}
		after := procedure(t, nextBin, "agent upgrade")
		if after != leader {
			t.Errorf("the leader moved from %s to %s: the agent upgrade failed over", leader, after)
		}
		for name, m := range view() {
			if m.Timeline != before[name].Timeline {
				t.Errorf("%s: timeline %d → %d: a promotion happened", name, before[name].Timeline, m.Timeline)
			}
		}
		for _, h := range dbHosts() {
			out, err := theLab.Exec(context.Background(), h.Name, "/usr/local/bin/pgherd", "version")
			if err != nil || !strings.Contains(out, "e2e-day2-next") {
				t.Errorf("%s: pgherd version = %q (%v), want e2e-day2-next", h.Name, out, err)
			}
		}
	})
}
