package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pgherd/pgherd/spec"
)

// TestCheckRestoreFlags pins which flags go with which form of restore.
func TestCheckRestoreFlags(t *testing.T) {
	tests := []struct {
		name    string
		flags   restoreFlags
		args    []string
		changed []string
		wantErr string // "" for no error
	}{
		{name: "on a database host", flags: restoreFlags{dataDir: "/d", targetTime: "2026-11-22 00:50:00+00"}},
		{name: "the cluster", flags: restoreFlags{host: "node2", targetLSN: "0/3000060", timeout: time.Minute}, args: []string{"spec"},
			changed: []string{"var", "auto-approve", "parallel"}},
		{name: "neither form", flags: restoreFlags{}, wantErr: "give --data-dir DIR (on a database host) or --host H"},
		{name: "both forms", flags: restoreFlags{host: "node2", dataDir: "/d"}, wantErr: "--data-dir and --host exclude each other"},
		{name: "both targets", flags: restoreFlags{host: "node2", targetTime: "2026-11-22 00:50:00+00", targetLSN: "0/1", timeout: time.Minute},
			wantErr: "give --target-time or --target-lsn, not both"},
		{name: "a bad time", flags: restoreFlags{host: "node2", targetTime: "yesterday", timeout: time.Minute},
			wantErr: `--target-time "yesterday": use "2006-01-02 15:04:05+00" or RFC 3339`},
		{name: "a bad LSN", flags: restoreFlags{dataDir: "/d", targetLSN: "3000060"}, wantErr: "--target-lsn: "},
		{name: "host-side flags with --host", flags: restoreFlags{host: "node2", timeout: time.Minute},
			changed: []string{"config", "target-timeline"}, wantErr: "--config, --target-timeline: only with --data-dir"},
		{name: "a spec without --host", flags: restoreFlags{dataDir: "/d"}, args: []string{"spec"},
			wantErr: `unexpected arguments ["spec"]: SPEC arguments go with --host`},
		{name: "operator flags without --host", flags: restoreFlags{dataDir: "/d"}, changed: []string{"auto-approve", "var"},
			wantErr: "--var, --auto-approve: only with --host"},
		{name: "a bad timeline", flags: restoreFlags{dataDir: "/d", targetTimeline: "0"}, wantErr: `--target-timeline "0": want latest or a timeline ID`},
		{name: "no timeout", flags: restoreFlags{host: "node2"}, wantErr: "--timeout 0s: want a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			changed := func(n string) bool { return strings.Contains(" "+strings.Join(tt.changed, " ")+" ", " "+n+" ") }
			err := checkRestoreFlags(&tt.flags, tt.args, changed)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckRestoreHost(t *testing.T) {
	m := &spec.Model{
		Hosts:   []spec.Host{{Name: "node1"}, {Name: "node2"}, {Name: "node3"}, {Name: "node4"}},
		Cluster: &spec.Cluster{Name: "lab", Postgres: spec.Postgres{Hosts: []string{"node1", "node2", "node3"}}},
	}
	for host, want := range map[string]string{
		"node2": "",
		"node4": `--host node4: not a PostgreSQL host of cluster "lab" (node1, node2, node3)`,
		"node9": `--host node9: no such host in the spec (the PostgreSQL hosts of cluster "lab" are node1, node2, node3)`,
	} {
		err := checkRestoreHost(m, host)
		if got := errString(err); got != want {
			t.Errorf("checkRestoreHost(%s) = %q, want %q", host, got, want)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestRestoreTargetOf(t *testing.T) {
	for _, tt := range []struct {
		flags restoreFlags
		want  restoreTarget
	}{
		{restoreFlags{backupID: "latest"}, restoreTarget{}},
		{restoreFlags{backupID: "20261122-004500F", targetTime: "2026-11-22 02:50:00.1234567+02"},
			restoreTarget{Time: "2026-11-22T00:50:00.123456Z", Backup: "20261122-004500F"}},
		{restoreFlags{backupID: "latest", targetLSN: "0/3000060"}, restoreTarget{LSN: "0/3000060"}},
	} {
		got, err := restoreTargetOf(&tt.flags)
		if err != nil || got != tt.want {
			t.Errorf("restoreTargetOf(%+v) = %+v, %v; want %+v", tt.flags, got, err, tt.want)
		}
	}
}

func TestParseRestoreFacts(t *testing.T) {
	out := `agent=active
data=cluster
sysid=7301234567890123456
timeline=3
running=yes
primary=t
marker={"id":"20261122T005500Z","target":{"time":"2026-11-22T00:50:00Z"},"timeline":3,"stage":"restoring"}
steps=yes
`
	got, err := parseRestoreFacts(out)
	if err != nil {
		t.Fatal(err)
	}
	want := memberFacts{Agent: "active", Data: dataCluster, SystemID: "7301234567890123456", Timeline: 3, Running: true, Primary: true,
		Marker: &restoreMarker{ID: "20261122T005500Z", Target: restoreTarget{Time: "2026-11-22T00:50:00Z"}, Timeline: 3, Stage: stageRestoring},
		Steps:  true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("facts (-want +got):\n%s", diff)
	}
	got, err = parseRestoreFacts("agent=\ndata=absent\nmarker={broken\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.Agent != "unknown" || got.Data != dataAbsent || got.Marker != nil || !strings.HasPrefix(got.MarkerError, "unreadable restore marker") {
		t.Fatalf("facts of a host without an agent, with a broken marker: %+v", got)
	}
	if _, err := parseRestoreFacts("timeline=x\n"); err == nil {
		t.Fatal("a bad timeline parsed")
	}
}

// TestPlanRestore pins the steps of a restore of the cluster, new and
// resumed at each stage, in the plan's text (testdata/restore/NAME.golden).
func TestPlanRestore(t *testing.T) {
	target := restoreTarget{Time: "2026-11-22T00:50:00Z"}
	req := restoreRequest{Cluster: "lab", Host: "node2", Members: []string{"node1", "node2", "node3"}, Leader: "node1",
		DataDir: "/var/lib/postgresql/15/main", Target: target, Now: time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC)}
	running := func(primary bool, tl uint32) memberFacts {
		return memberFacts{Agent: "active", Data: dataCluster, Running: true, Primary: primary, Timeline: tl, SystemID: "73", Steps: true}
	}
	stopped := func(tl uint32) memberFacts {
		return memberFacts{Agent: "inactive", Data: dataCluster, Timeline: tl, SystemID: "73", Steps: true}
	}
	absent := memberFacts{Agent: "inactive", Data: dataAbsent, Steps: true}
	healthy := map[string]memberFacts{"node1": running(true, 3), "node2": running(false, 3), "node3": running(false, 2)}
	at := func(stage restoreStage, f memberFacts) memberFacts {
		f.Marker = &restoreMarker{ID: "20261122T005500Z", Target: target, Timeline: 3, Stage: stage}
		return f
	}
	with := func(facts map[string]memberFacts, host string, f memberFacts) map[string]memberFacts {
		out := map[string]memberFacts{}
		for h, v := range facts {
			out[h] = v
		}
		out[host] = f
		return out
	}
	down := map[string]memberFacts{"node1": absent, "node2": absent, "node3": absent}
	fromBackup := req
	fromBackup.FromBackup = true
	delta := req
	delta.Delta = true
	lsn := req
	lsn.Target = restoreTarget{LSN: "0/3000060", Backup: "20261122-004500F"}
	noLeader := req
	noLeader.Leader = ""

	tests := []struct {
		name    string
		req     restoreRequest
		facts   map[string]memberFacts
		wantErr string
	}{
		{name: "new", req: req, facts: healthy},
		{name: "new-delta", req: delta, facts: healthy},
		{name: "new-from-backup", req: fromBackup, facts: healthy},
		{name: "new-lsn-cluster-down", req: lsn, facts: map[string]memberFacts{"node1": stopped(4), "node2": stopped(4), "node3": absent}},
		{name: "new-no-leader-no-data", req: noLeader, facts: map[string]memberFacts{"node1": absent, "node2": absent, "node3": absent}},
		{name: "replaces-another", req: req, facts: with(healthy, "node2", func() memberFacts {
			f := running(false, 3)
			f.Marker = &restoreMarker{ID: "20261121T000000Z", Target: restoreTarget{Time: "2026-11-20T00:00:00Z"}, Timeline: 3, Stage: stageRecovered}
			return f
		}())},
		{name: "resume-started", req: req, facts: with(with(healthy, "node1", stopped(3)), "node2", at(stageStarted, stopped(3)))},
		{name: "resume-restoring", req: req, facts: with(down, "node2", at(stageRestoring, memberFacts{Agent: "inactive", Data: dataOther, Steps: true}))},
		{name: "resume-restored", req: req, facts: with(down, "node2", at(stageRestored, stopped(3)))},
		{name: "resume-recovered", req: req, facts: with(down, "node2", at(stageRecovered, stopped(4)))},
		{name: "resume-recovered-agent-running", req: fromBackup, facts: with(down, "node2", at(stageRecovered, running(true, 4)))},
		{name: "resume-primary", req: req, facts: with(down, "node2", at(stagePrimary, running(true, 4)))},
		{name: "done", req: req, facts: with(healthy, "node2", at(stageDone, running(true, 4)))},
		{name: "old pgherd on the host", req: req, facts: with(healthy, "node2", memberFacts{Agent: "active", Data: dataCluster}),
			wantErr: "node2: the pgherd installed there (/usr/local/bin/pgherd) has no restore recover: run pgherd apply first"},
		{name: "broken marker", req: req, facts: with(healthy, "node2", memberFacts{Steps: true, MarkerError: "unreadable restore marker: {"}),
			wantErr: "node2: unreadable restore marker: { (/var/lib/postgresql/15/main.pgherd-restore.json): move it away"},
		{name: "a member not read", req: req, facts: map[string]memberFacts{"node1": running(true, 3), "node2": running(false, 3)},
			wantErr: "node3: its facts could not be read: every member must be reachable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planRestore(tt.req, tt.facts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			if err := renderRestorePlan(&b, tt.req, p); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "restore", tt.name+".golden"), b.String())
		})
	}
}

// TestRestoreShellSteps runs the steps that move and mark files in a
// shell, against a directory standing for a data directory's parent:
// each is safe to run twice.
func TestRestoreShellSteps(t *testing.T) {
	base := t.TempDir()
	d := filepath.Join(base, "main")
	sh := func(cmd string) string {
		t.Helper()
		out, err := exec.Command("sh", "-c", cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	mustWrite := func(p, s string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	const id = "20261122T010203Z"
	mustWrite(filepath.Join(d, "PG_VERSION"), "15\n")
	mustWrite(incompletePath(d), "pg_rewind\n")
	mustWrite(markerPath(d), "{}\n")
	aside := asidePath(d, id)
	if got, want := sh(moveAsideCmd(d, id, true)), "moved "+d+" to "+aside; got != want {
		t.Fatalf("first move: %q, want %q", got, want)
	}
	for _, p := range []string{filepath.Join(aside, "PG_VERSION"), aside + ".pgherd-incomplete"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("after the move: %v", err)
		}
	}
	for _, p := range []string{d, incompletePath(d), markerPath(d)} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s is still there", p)
		}
	}
	if got := sh(moveAsideCmd(d, id, true)); got != "" {
		t.Fatalf("a second move with nothing there said %q", got)
	}
	// A data directory made since (an agent started by hand) goes beside
	// the first one, under a free name; an empty one stays.
	mustWrite(filepath.Join(d, "PG_VERSION"), "15\n")
	if got, want := sh(moveAsideCmd(d, id, false)), "moved "+d+" to "+aside+"-2"; got != want {
		t.Fatalf("move into a taken name: %q, want %q", got, want)
	}
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	if got := sh(moveAsideCmd(d, id, false)); got != "" {
		t.Fatalf("an empty data directory was moved: %q", got)
	}

	if _, err := exec.LookPath("chown"); err != nil || os.Geteuid() != 0 {
		t.Skip("marking needs root and a postgres user (chown postgres)")
	}
	m := restoreMarker{ID: id, Target: restoreTarget{Time: "2026-11-22T00:50:00Z"}, Timeline: 3, Stage: stageRestoring}
	sh(markCmd(d, m))
	if got, err := parseRestoreFacts("marker=" + strings.TrimSpace(readFileT(t, markerPath(d)))); err != nil || got.Marker == nil || *got.Marker != m {
		t.Fatalf("marker read back: %+v, %v", got.Marker, err)
	}
	if got := readFileT(t, incompletePath(d)); got != "pgherd restore "+id+"\n" {
		t.Fatalf("incomplete mark %q", got)
	}
	m.Stage = stageRecovered
	sh(markCmd(d, m))
	sh(markCmd(d, m))
	if _, err := os.Stat(incompletePath(d)); err == nil {
		t.Fatal("the incomplete mark is still there once recovered")
	}
}

func readFileT(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
