package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/e2e/workload"
)

// startWriter starts the shared write load through the VIP's primary port.
func startWriter(ctx context.Context, t *testing.T) *workload.Writer {
	t.Helper()
	w, err := workload.Start(ctx, pgURL(haPrimaryPort), "e2e_ha_writes")
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// mustAcks waits until n more writes are acknowledged from now on.
func mustAcks(ctx context.Context, t *testing.T, w *workload.Writer, n int) {
	t.Helper()
	if err := w.WaitAcks(ctx, w.Mark(), n); err != nil {
		t.Fatal(err)
	}
}

// memberStatus is the part of an agent's /patroni answer the test reads.
type memberStatus struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	ReplicationState string `json:"replication_state"`
	Timeline         int    `json:"timeline"`
	Pgherd           struct {
		// IsLeader is the loop's last view (stale while it is frozen);
		// LeaseValid is computed when the API answers.
		IsLeader   bool `json:"is_leader"`
		LeaseValid bool `json:"lease_valid"`
	} `json:"pgherd"`
}

// haNoFrontHost is the example's PostgreSQL host without HAProxy and
// keepalived.
const haNoFrontHost = "node3"

var apiClient = &http.Client{Timeout: 2 * time.Second}

// memberState asks one host's agent for its status.
func memberState(ctx context.Context, addr string) (memberStatus, error) {
	var st memberStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+":8008/patroni", nil)
	if err != nil {
		return st, err
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("%s /patroni: %w", addr, err)
	}
	return st, nil
}

// primaryCheck is one GET /primary on a host's agent: the status code
// HAProxy's check sees, and the status body.
func primaryCheck(addr string) (int, memberStatus, error) {
	var st memberStatus
	resp, err := apiClient.Get("http://" + addr + ":8008/primary")
	if err != nil {
		return 0, st, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&st)
	return resp.StatusCode, st, err
}

// clusterView asks every named host's agent for its status; a host that
// does not answer is absent from the map.
func clusterView(ctx context.Context, hosts []string) map[string]memberStatus {
	view := map[string]memberStatus{}
	for _, h := range theLab.Hosts() {
		if !slices.Contains(hosts, h.Name) {
			continue
		}
		if st, err := memberState(ctx, h.Address); err == nil {
			view[h.Name] = st
		}
	}
	return view
}

// settled reports the single primary when exactly one of hosts is the
// primary holding the leader key and every other one is a streaming
// replica.
func settled(view map[string]memberStatus, hosts []string) (string, bool) {
	primary := ""
	for _, h := range hosts {
		st, ok := view[h]
		switch {
		case !ok:
			return "", false
		case st.Role == "primary" || st.Role == "master":
			if primary != "" || !st.Pgherd.IsLeader || !st.Pgherd.LeaseValid || st.State != "running" {
				return "", false
			}
			primary = h
		case st.Role == "replica" && st.ReplicationState == "streaming":
		default:
			return "", false
		}
	}
	return primary, primary != ""
}

// waitSettled waits until hosts show exactly one primary, all the others
// streaming, and fails the test after timeout, naming what it saw.
func waitSettled(t *testing.T, hosts []string, timeout time.Duration) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var view map[string]memberStatus
	for {
		view = clusterView(ctx, hosts)
		if p, ok := settled(view, hosts); ok {
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the cluster of %v did not settle in %s: last view %s", hosts, timeout, describeView(view))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func describeView(view map[string]memberStatus) string {
	var parts []string
	for _, h := range haDBHosts {
		st, ok := view[h]
		if !ok {
			parts = append(parts, h+"=no answer")
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%s/%s/%s leader=%v tl=%d", h, st.Role, st.State, st.ReplicationState, st.Pgherd.IsLeader, st.Timeline))
	}
	return strings.Join(parts, " ")
}

// hostNames are the HA cluster's members.
func hostNames() []string { return slices.Clone(haDBHosts) }

func hostAddr(t *testing.T, name string) string {
	t.Helper()
	for _, h := range theLab.Hosts() {
		if h.Name == name {
			return h.Address
		}
	}
	t.Fatalf("no host %s", name)
	return ""
}

// missingOnPrimary returns the acknowledged ids absent from the primary
// behind the VIP's primary port, after checking that port reaches primary.
func missingOnPrimary(t *testing.T, w *workload.Writer, primary string, acks []workload.Ack) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	missing, err := w.Missing(ctx, hostAddr(t, primary), acks)
	if err != nil {
		t.Fatalf("port %d: %v", haPrimaryPort, err)
	}
	return missing
}

// switchover asks the leader's agent to hand over to candidate.
func switchover(t *testing.T, leader, candidate string) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"leader": leader, "candidate": candidate})
	req, err := http.NewRequest(http.MethodPost, "http://"+hostAddr(t, leader)+":8008/switchover", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+haAPIToken)
	req.Header.Set("Content-Type", "application/json")
	client := &http.Client{Timeout: 90 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST /switchover: %v", err)
	}
	defer resp.Body.Close()
	var msg bytes.Buffer
	_, _ = msg.ReadFrom(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /switchover: %s: %s", resp.Status, msg.String())
	}
	t.Logf("POST /switchover: %s", strings.TrimSpace(msg.String()))
}

func TestHAFailover(t *testing.T) {
	haCluster(t)
	all := hostNames()
	waitSettled(t, all, 3*time.Minute)

	ctx, stop := context.WithCancel(context.Background())
	w := startWriter(ctx, t)
	defer func() {
		stop()
		<-w.Done()
	}()
	syncMode := strings.Contains(haSpecMode(t), `"on"`)
	t.Logf("synchronous mode: %v", syncMode)

	// checked holds the ids already found missing, so that each scenario
	// reports only its own losses.
	lost := map[int64]bool{}
	check := func(t *testing.T, name, primary string, mustKeep func(workload.Ack) bool) {
		t.Helper()
		// A write acknowledged after the settle proves the new primary
		// takes writes through the VIP.
		wctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		mustAcks(wctx, t, w, 5)
		cancel()
		missing := missingOnPrimary(t, w, primary, w.Since(0))
		var fresh, fatal []int64
		for _, id := range missing {
			if lost[id] {
				continue
			}
			lost[id] = true
			fresh = append(fresh, id)
		}
		for _, a := range w.Since(0) {
			if !slices.Contains(fresh, a.ID) {
				continue
			}
			t.Logf("lost in %s: %s", name, a)
			if syncMode || mustKeep(a) {
				fatal = append(fatal, a.ID)
			}
		}
		t.Logf("LOST scenario=%s count=%d", name, len(fresh))
		if len(fatal) > 0 {
			t.Errorf("scenario %s: %d acknowledged writes lost on the new primary %s (first ids %v)", name, len(fatal), primary, fatal[:min(len(fatal), 10)])
		}
	}
	logGap := func(t *testing.T, name string, mark int) {
		t.Logf("GAP scenario=%s seconds=%.2f", name, w.MaxGap(mark).Seconds())
	}
	always := func(workload.Ack) bool { return true }

	mustAcks(ctx, t, w, 20)

	t.Run("switchover", func(t *testing.T) {
		primary := waitSettled(t, all, time.Minute)
		mark := w.Mark()
		candidate := other(all, primary)
		switchover(t, primary, candidate)
		now := waitSettled(t, all, 2*time.Minute)
		if now != candidate {
			t.Errorf("switched over to %s, want %s", now, candidate)
		}
		check(t, "switchover", now, always)
		logGap(t, "switchover", mark)
	})

	t.Run("postmaster killed", func(t *testing.T) {
		old := waitSettled(t, all, time.Minute)
		mark, errs := w.Mark(), w.Errors()
		onHost(t, old, "kill -9 $(head -1 /var/lib/postgresql/15/main/postmaster.pid)")
		ectx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := w.WaitError(ectx, errs); err != nil {
			t.Fatalf("within 30s of the kill: %v", err)
		}
		cancel()
		now := waitSettled(t, all, 2*time.Minute)
		t.Logf("after the postmaster's kill on %s the primary is %s", old, now)
		// Restarted in place, crash recovery keeps every commit; a
		// failover in asynchronous mode may lose the last ones.
		check(t, "postmaster-kill", now, func(workload.Ack) bool { return now == old })
		logGap(t, "postmaster-kill", mark)
	})

	t.Run("primary host killed", func(t *testing.T) {
		old := waitSettled(t, all, time.Minute)
		mark := w.Mark()
		if err := theLab.Kill(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		rest := without(all, old)
		now := waitSettled(t, rest, 2*time.Minute)
		check(t, "host-kill", now, func(workload.Ack) bool { return false })
		logGap(t, "host-kill", mark)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := theLab.Start(sctx, old); err != nil {
			t.Fatal(err)
		}
		if p := waitSettled(t, all, 3*time.Minute); p != now {
			t.Errorf("after %s rejoined the primary is %s, want %s", old, p, now)
		}
		check(t, "host-kill-rejoin", now, always)
	})

	t.Run("primary partitioned", func(t *testing.T) {
		old := waitSettled(t, all, time.Minute)
		// The lab's Connect brings a host back with a new interface
		// (eth1), which a real partition would not do, and keepalived is
		// bound to eth0: partition a primary that runs no keepalived.
		if old != haNoFrontHost {
			switchover(t, old, haNoFrontHost)
			if old = waitSettled(t, all, 2*time.Minute); old != haNoFrontHost {
				t.Fatalf("switched over to %s, want %s", old, haNoFrontHost)
			}
			mustAcks(ctx, t, w, 5)
		}
		mark := w.Mark()
		if err := theLab.Disconnect(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		reconnected := false
		defer func() {
			if !reconnected {
				_ = theLab.Connect(context.Background(), old)
			}
		}()
		rest := without(all, old)
		now := waitSettled(t, rest, 2*time.Minute)
		// The old primary, cut off, must take no write once another
		// member is promoted.
		probe := fmt.Sprintf(`runuser -u postgres -- psql -X -v ON_ERROR_STOP=1 -c "SET statement_timeout = '3s'" -c "INSERT INTO e2e_ha_writes (id) VALUES (-%d)" 2>&1`, time.Now().Unix())
		out, err := theLab.Exec(context.Background(), old, "sh", "-c", probe)
		t.Logf("write probe on the partitioned %s: err %v\n%s", old, err, out)
		if err == nil {
			t.Errorf("the partitioned old primary %s accepted a write while %s is primary: %s", old, now, out)
		}
		check(t, "partition", now, func(workload.Ack) bool { return false })
		logGap(t, "partition", mark)
		if err := theLab.Connect(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		reconnected = true
		if p := waitSettled(t, all, 3*time.Minute); p != now {
			t.Errorf("after %s reconnected the primary is %s, want %s", old, p, now)
		}
		check(t, "partition-rejoin", now, always)
	})

	t.Run("primary frozen", func(t *testing.T) {
		old := waitSettled(t, all, time.Minute)
		mark := w.Mark()
		if err := theLab.Pause(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		unpaused := false
		defer func() {
			if !unpaused {
				_ = theLab.Unpause(context.Background(), old)
			}
		}()
		rest := without(all, old)
		now := waitSettled(t, rest, 2*time.Minute)
		// Stay frozen well past the ttl (3 s by default), counted from the
		// promotion, so the old lease is long gone.
		time.Sleep(15 * time.Second)
		if err := theLab.Unpause(context.Background(), old); err != nil {
			t.Fatal(err)
		}
		unpaused = true
		t.Logf("%s frozen for %s", old, time.Since(paused).Round(time.Second))
		// On thaw, the old primary must never pass the primary check
		// HAProxy routes writes by, nor claim a valid leader lease.
		end := time.Now().Add(20 * time.Second)
		for time.Now().Before(end) {
			if code, st, err := primaryCheck(hostAddr(t, old)); err == nil && (code == http.StatusOK || st.Pgherd.LeaseValid) {
				t.Errorf("the thawed %s answers /primary %d with lease_valid %v while %s was promoted", old, code, st.Pgherd.LeaseValid, now)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		p := waitSettled(t, all, 3*time.Minute)
		if p != now {
			t.Errorf("after %s thawed the primary is %s, want %s", old, p, now)
		}
		// Only the asynchronous tail may be lost: writes the old primary
		// acknowledged that were sent before it froze. One it acknowledged
		// after (on thaw) is a second primary's, one another member
		// acknowledged is the new primary's.
		oldAddr := hostAddr(t, old)
		check(t, "freeze", p, func(a workload.Ack) bool { return a.Server != oldAddr || a.Sent.After(paused) })
		logGap(t, "freeze", mark)
	})
}

// haSpecMode is the synchronous_mode line of the spec under test.
func haSpecMode(t *testing.T) string {
	t.Helper()
	for _, l := range strings.Split(haSpec(t), "\n") {
		if strings.Contains(l, "synchronous_mode") {
			return l
		}
	}
	return ""
}

// other is the first of names that is not name.
func other(names []string, name string) string {
	for _, n := range names {
		if n != name {
			return n
		}
	}
	return ""
}

// without is names without name.
func without(names []string, name string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == name })
}
