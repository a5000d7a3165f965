package e2e

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// statusReport is the part of `pgherd status -json` this test reads.
type statusReport struct {
	Health  string `json:"health"`
	Verdict string `json:"verdict"`
	Members []struct {
		Member string `json:"member"`
		Role   string `json:"role"`
		State  string `json:"state"`
	} `json:"members"`
	VIP *struct {
		Holders []string `json:"holders"`
	} `json:"vip"`
	Etcd *struct {
		Endpoints []struct {
			Healthy bool `json:"healthy"`
		} `json:"endpoints"`
	} `json:"etcd"`
}

// waitHealthy runs `pgherd status -json` until it exits 0, and fails the
// test after timeout with the last output.
func waitHealthy(t *testing.T, dir string, timeout time.Duration) statusReport {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		r := pgherd(t, dir, "status", "-json", ".")
		var rep statusReport
		if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
			t.Fatalf("status -json printed no JSON: %v\n%s", err, r)
		}
		if r.code == 0 {
			if rep.Health != "healthy" {
				t.Fatalf("exit 0 with health %q", rep.Health)
			}
			return rep
		}
		if time.Now().After(deadline) {
			t.Fatalf("status did not become healthy in %s: %s", timeout, r)
		}
		time.Sleep(2 * time.Second)
	}
}

// TestHAStatus checks pgherd status and pgherd switchover against the HA
// cluster TestHA converged (or one it applies now).
func TestHAStatus(t *testing.T) {
	dir := haCluster(t)
	names := hostNames()
	leader := waitSettled(t, names, 3*time.Minute)

	rep := waitHealthy(t, dir, 2*time.Minute)
	if rep.Verdict != "healthy: 1 primary, 2 replicas streaming" {
		t.Errorf("verdict = %q", rep.Verdict)
	}
	if len(rep.Members) != 3 {
		t.Fatalf("members = %+v", rep.Members)
	}
	for _, m := range rep.Members {
		want := "replica"
		if m.Member == leader {
			want = "primary"
		}
		if m.Role != want {
			t.Errorf("%s: role %q, want %q", m.Member, m.Role, want)
		}
	}
	if rep.VIP == nil || len(rep.VIP.Holders) != 1 {
		t.Errorf("VIP holders = %+v, want one", rep.VIP)
	}
	if rep.Etcd == nil || len(rep.Etcd.Endpoints) != 3 {
		t.Errorf("etcd = %+v, want 3 endpoints", rep.Etcd)
	}

	// The table, as an operator reads it.
	r := pgherd(t, dir, "status", ".")
	if r.code != 0 {
		t.Fatalf("status: %s", r)
	}
	for _, re := range []string{
		`MEMBER +HOST +ROLE +STATE +TIMELINE +LAG\(MB\) +LEADER-LEASE`,
		regexp.QuoteMeta(leader) + ` +\S+ +primary +running +\d+ +- +\d+\.\ds`,
		`VIP ` + regexp.QuoteMeta(haVIP) + `/24: held by node\d`,
		`etcd: 3 of 3 members healthy`,
		`(?m)^healthy: 1 primary, 2 replicas streaming$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("status output does not match %s:\n%s", re, r.stdout)
		}
	}

	// A switchover to a named replica, then status is healthy again with
	// the new leader.
	target := ""
	for _, n := range names {
		if n != leader {
			target = n
			break
		}
	}
	r = pgherd(t, dir, "switchover", "-auto-approve", "--to", target, ".")
	if r.code != 0 {
		t.Fatalf("switchover: %s", r)
	}
	if !strings.Contains(r.stdout, "current leader: "+leader) ||
		!regexp.MustCompile(`Switchover complete: `+regexp.QuoteMeta(target)+` is the leader \([\dhms.]+ after the request\)`).MatchString(r.stdout) {
		t.Errorf("switchover output:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout+r.stderr, haAPIToken) {
		t.Error("switchover printed the API token")
	}
	if got := waitSettled(t, names, 3*time.Minute); got != target {
		t.Errorf("after the switchover the primary is %s, want %s", got, target)
	}
	rep = waitHealthy(t, dir, 2*time.Minute)
	for _, m := range rep.Members {
		if m.Member == target && m.Role != "primary" {
			t.Errorf("status shows %s as %s after the switchover", target, m.Role)
		}
	}

	// Switching over to the leader is refused before any request.
	r = pgherd(t, dir, "switchover", "-auto-approve", "--to", target, ".")
	if r.code != 1 || !strings.Contains(r.stderr, "is the leader already") {
		t.Errorf("switchover to the leader: %s", r)
	}
}
