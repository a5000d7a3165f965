package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
)

// The restore of a whole cluster (pgherd restore --host) is planned from
// facts read on its PostgreSQL hosts by a pure function, planRestore, as
// apply's changes are: what the hosts show, and the marker the new
// primary keeps of a restore under way, decide which steps remain. The
// steps are data; restore_cluster.go carries them out.

// restoreStage is how far a restore of the cluster got, as the marker
// beside the new primary's data directory records it. Each stage is
// written once the steps before it have all succeeded.
type restoreStage string

const (
	// stageStarted: the agents are being stopped and the data
	// directories moved aside.
	stageStarted restoreStage = "started"
	// stageRestoring: the new primary's data directory is being restored
	// (what it holds is this restore's, unfinished).
	stageRestoring restoreStage = "restoring"
	// stageRestored: restored; its recovery is being carried out.
	stageRestored restoreStage = "restored"
	// stageRecovered: recovered and shut down cleanly; etcd is being
	// reset and its agent started.
	stageRecovered restoreStage = "recovered"
	// stagePrimary: it runs as the primary; the other members are being
	// rebuilt from it.
	stagePrimary restoreStage = "primary"
	// stageDone: the cluster was restored.
	stageDone restoreStage = "done"
)

// restoreTarget is what a restore recovers to, normalized so that two runs
// of the same command compare equal.
type restoreTarget struct {
	Time   string `json:"time,omitempty"`   // UTC, "2006-01-02 15:04:05.999999+00"
	LSN    string `json:"lsn,omitempty"`    // "0/3000060"
	Backup string `json:"backup,omitempty"` // a backup ID; "" the latest that can reach the target
}

func (t restoreTarget) String() string {
	if t.Backup != "" {
		return t.stopAt() + " from backup " + t.Backup
	}
	return t.stopAt()
}

// restoreMarker is the marker file's content.
type restoreMarker struct {
	// ID is when the restore started (UTC, 20060102T150405Z); it names
	// the data directories moved aside.
	ID     string        `json:"id"`
	Target restoreTarget `json:"target"`
	// Timeline is the cluster's timeline when the restore started:
	// recovery follows its history (0: unknown, the latest).
	Timeline uint32       `json:"timeline,omitempty"`
	Stage    restoreStage `json:"stage"`
}

// markerPath is the marker beside the data directory.
func markerPath(dataDir string) string { return dataDir + ".pgherd-restore.json" }

// asidePath is where a data directory is moved by the restore id.
func asidePath(dataDir, id string) string { return dataDir + ".pgherd-before-restore-" + id }

// incompletePath is the agent's mark of a data directory that must not be
// started (agent/pg/incomplete.go): the restore sets it while the new
// primary's data directory is restored and recovered.
func incompletePath(dataDir string) string { return dataDir + ".pgherd-incomplete" }

// dataState is what a host's data directory holds.
type dataState string

const (
	dataAbsent  dataState = "absent"
	dataEmpty   dataState = "empty"
	dataCluster dataState = "cluster" // PG_VERSION is there
	dataOther   dataState = "other"   // files, but no cluster
)

// memberFacts is what the restore knows of one PostgreSQL host.
type memberFacts struct {
	// Agent is `systemctl is-active` of the agent's unit: "active",
	// "inactive", "failed", "activating", …
	Agent string
	Data  dataState
	// Running: a postmaster serves the data directory; Primary: it is
	// out of recovery.
	Running, Primary bool
	// Timeline and SystemID are pg_controldata's (0 and "" when unknown).
	Timeline uint32
	SystemID string
	// Marker is the marker of a restore (nil: none); MarkerError says why
	// one could not be read.
	Marker      *restoreMarker
	MarkerError string
	// Steps: the pgherd installed on the host has the host-side steps of
	// this command (restore recover and reset-etcd).
	Steps bool
}

// agentRunning: the agent's unit is up or coming up.
func (f memberFacts) agentRunning() bool {
	return f.Agent == "active" || f.Agent == "activating" || f.Agent == "reloading"
}

// restoreFactsCmd prints the facts of a PostgreSQL host, one "key=value"
// line each (parseRestoreFacts reads them). It only reads.
func restoreFactsCmd(dataDir, binDir string, port int) string {
	d, m, pgctl := executors.Quote(dataDir), executors.Quote(markerPath(dataDir)), executors.Quote(binDir+"/pg_ctl")
	asPG := "runuser -u postgres -- "
	return strings.Join([]string{
		`echo "agent=$(systemctl is-active ` + modules.AgentUnit + ` 2>/dev/null)"`,
		`if [ -f ` + d + `/PG_VERSION ]; then echo data=cluster; elif [ -d ` + d + ` ] && [ -n "$(ls -A ` + d + `)" ]; then echo data=other; elif [ -d ` + d + ` ]; then echo data=empty; else echo data=absent; fi`,
		`if [ -f ` + d + `/PG_VERSION ]; then ` + asPG + executors.Quote(binDir+"/pg_controldata") + ` -D ` + d + ` 2>/dev/null | sed -n 's/^Database system identifier: *\(.*\)/sysid=\1/p; s/^Latest checkpoint.s TimeLineID: *\(.*\)/timeline=\1/p'; fi`,
		`if [ -f ` + d + `/PG_VERSION ] && ` + asPG + pgctl + ` status -D ` + d + ` >/dev/null 2>&1; then echo running=yes; echo "primary=$(` + asPG + `psql -h /var/run/postgresql -p ` + strconv.Itoa(port) + ` -XAtc 'select not pg_is_in_recovery()' 2>/dev/null)"; fi`,
		`if [ -f ` + m + ` ]; then echo "marker=$(tr -d '\n' < ` + m + `)"; fi`,
		// An older pgherd would print restore's own help for "restore
		// recover --help": its list of subcommands tells.
		`if ` + executors.Quote(modules.AgentBinaryPath) + ` restore --help 2>/dev/null | grep -q reset-etcd; then echo steps=yes; fi`,
	}, "\n")
}

// parseRestoreFacts reads restoreFactsCmd's output.
func parseRestoreFacts(out string) (memberFacts, error) {
	f := memberFacts{Agent: "unknown", Data: dataAbsent}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "agent":
			if v != "" {
				f.Agent = v
			}
		case "data":
			f.Data = dataState(v)
		case "sysid":
			f.SystemID = v
		case "timeline":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return f, fmt.Errorf("timeline %q: %w", v, err)
			}
			f.Timeline = uint32(n)
		case "running":
			f.Running = v == "yes"
		case "primary":
			f.Primary = v == "t"
		case "marker":
			var m restoreMarker
			if err := json.Unmarshal([]byte(v), &m); err != nil || m.ID == "" || m.Stage == "" {
				f.MarkerError = fmt.Sprintf("unreadable restore marker: %.80s", v)
				continue
			}
			f.Marker = &m
		case "steps":
			f.Steps = v == "yes"
		}
	}
	return f, sc.Err()
}

// restoreRequest is what the operator asked for, with what the spec says
// of the cluster.
type restoreRequest struct {
	Cluster string
	// Host becomes the primary; Members are the cluster's PostgreSQL
	// hosts in the spec's order (Host among them).
	Host    string
	Members []string
	// Leader is the current leader as the agents tell it ("" unknown).
	Leader  string
	DataDir string
	Target  restoreTarget
	Delta   bool
	// FromBackup: the spec's create_replica_from_backup, the other
	// members restore the latest backup instead of copying the primary.
	FromBackup bool
	// Now names a new restore (restoreMarker.ID).
	Now time.Time
}

// others are the members but Host.
func (r restoreRequest) others() []string {
	return slices.DeleteFunc(slices.Clone(r.Members), func(h string) bool { return h == r.Host })
}

// stepKind is what a step of the restore does.
type stepKind string

const (
	// stepArchive: on each running primary, switch WAL and wait until
	// the archiver stored it, so that the repository holds what was
	// written so far.
	stepArchive stepKind = "archive"
	// stepMark writes the marker with Stage on Host (and, for
	// stageRestoring, the agent's incomplete mark; for stageRecovered it
	// removes it).
	stepMark stepKind = "mark"
	// stepStop stops the agent (which stops PostgreSQL), and PostgreSQL
	// if it still runs.
	stepStop stepKind = "stop"
	// stepMoveAside renames a non-empty data directory to
	// asidePath(DataDir, ID) (never deleting it).
	stepMoveAside stepKind = "move-aside"
	// stepRestore runs pgherd restore --data-dir on Host.
	stepRestore stepKind = "restore"
	// stepRecover runs pgherd restore recover on Host.
	stepRecover stepKind = "recover"
	// stepResetEtcd runs pgherd restore reset-etcd on Host.
	stepResetEtcd stepKind = "reset-etcd"
	// stepStart starts the agents.
	stepStart stepKind = "start"
	// stepWaitLeader waits until Host is the primary with the leader key.
	stepWaitLeader stepKind = "wait-leader"
	// stepBackup takes a full backup on Host, the new primary.
	stepBackup stepKind = "backup"
	// stepWaitReplicas waits until the hosts stream from the primary and
	// the cluster is healthy.
	stepWaitReplicas stepKind = "wait-replicas"
)

// restoreStep is one step of the plan.
type restoreStep struct {
	Kind  stepKind
	Hosts []string
	// Stage is what stepMark writes.
	Stage restoreStage
	// Delta: stepRestore restores over what the data directory holds.
	Delta bool
}

// restorePlan is what a run of pgherd restore --host does.
type restorePlan struct {
	// Marker is the restore's identity (ID, target, timeline); its Stage
	// is where a resumed restore was ("" for a new one).
	Marker  restoreMarker
	Resumed bool
	// Done: the same restore finished already; there are no steps.
	Done  bool
	Notes []string
	Steps []restoreStep
}

// planRestore decides the steps from the request and the facts of every
// member (a host missing from facts could not be reached: an error).
func planRestore(req restoreRequest, facts map[string]memberFacts) (restorePlan, error) {
	var p restorePlan
	for _, h := range req.Members {
		if _, ok := facts[h]; !ok {
			return p, fmt.Errorf("%s: its facts could not be read: every member must be reachable", h)
		}
	}
	hf := facts[req.Host]
	if !hf.Steps {
		return p, fmt.Errorf("%s: the pgherd installed there (%s) has no restore recover: run pgherd apply first, so that the hosts run this version", req.Host, modules.AgentBinaryPath)
	}
	if hf.MarkerError != "" {
		return p, fmt.Errorf("%s: %s (%s): move it away to start a new restore", req.Host, hf.MarkerError, markerPath(req.DataDir))
	}
	others := req.others()
	stage := restoreStage("")
	if m := hf.Marker; m != nil && m.Target == req.Target {
		p.Marker, p.Resumed, stage = *m, true, m.Stage
	} else {
		if m != nil && m.Stage != stageDone {
			p.Notes = append(p.Notes, fmt.Sprintf("An unfinished restore to %s (%s, at stage %q) is replaced by this one.", m.Target, m.ID, m.Stage))
		}
		p.Marker = restoreMarker{ID: req.Now.UTC().Format("20060102T150405Z"), Target: req.Target, Timeline: clusterTimeline(req.Members, facts)}
		if p.Marker.Timeline == 0 {
			p.Notes = append(p.Notes, "No member's data directory tells the cluster's timeline: recovery follows the latest timeline of the archive.")
		}
	}
	all := slices.Clone(req.Members)
	mark := func(s restoreStage) {
		p.Steps = append(p.Steps, restoreStep{Kind: stepMark, Hosts: []string{req.Host}, Stage: s})
	}
	add := func(k stepKind, hosts []string) {
		if len(hosts) > 0 {
			p.Steps = append(p.Steps, restoreStep{Kind: k, Hosts: hosts})
		}
	}
	stopAll := func() {
		// Replicas first, the leader last: a replica still running when
		// the leader hands its key over would promote.
		var first, last []string
		for _, h := range all {
			if h == req.Leader {
				last = append(last, h)
			} else {
				first = append(first, h)
			}
		}
		add(stepStop, first)
		add(stepStop, last)
	}
	fromRecovered := func() {
		add(stepResetEtcd, []string{req.Host})
		add(stepStart, []string{req.Host})
		add(stepWaitLeader, []string{req.Host})
		if req.FromBackup {
			add(stepBackup, []string{req.Host})
		}
		mark(stagePrimary)
	}
	fromPrimary := func() {
		add(stepStart, others)
		add(stepWaitReplicas, others)
		mark(stageDone)
	}
	switch stage {
	case stageDone:
		p.Done = true
		return p, nil
	case stagePrimary:
		// The new primary's agent may have been stopped since: starting
		// it again is harmless.
		add(stepStart, all)
		add(stepWaitLeader, []string{req.Host})
		add(stepWaitReplicas, others)
		mark(stageDone)
		return p, nil
	case stageRecovered:
		if hf.agentRunning() {
			// etcd was reset and the agent started: never reset again
			// under a running leader.
			add(stepWaitLeader, []string{req.Host})
			if req.FromBackup {
				add(stepBackup, []string{req.Host})
			}
			mark(stagePrimary)
			fromPrimary()
			return p, nil
		}
		stopAll()
		fromRecovered()
		fromPrimary()
		return p, nil
	}
	if stage == "" || stage == stageStarted {
		var primaries []string
		for _, h := range all {
			if facts[h].Running && facts[h].Primary {
				primaries = append(primaries, h)
			}
		}
		add(stepArchive, primaries)
		mark(stageStarted)
	}
	stopAll()
	switch stage {
	case "", stageStarted, stageRestoring:
		aside := others
		if (stage == "" || stage == stageStarted) && !req.Delta {
			aside = all
		}
		add(stepMoveAside, aside)
		mark(stageRestoring)
		p.Steps = append(p.Steps, restoreStep{Kind: stepRestore, Hosts: []string{req.Host},
			Delta: req.Delta || stage == stageRestoring})
		mark(stageRestored)
		fallthrough
	case stageRestored:
		add(stepRecover, []string{req.Host})
		mark(stageRecovered)
	}
	fromRecovered()
	fromPrimary()
	return p, nil
}

// clusterTimeline is the newest timeline of the members' data directories:
// the former primary's, which the replicas follow or lag behind.
func clusterTimeline(members []string, facts map[string]memberFacts) uint32 {
	var tl uint32
	for _, h := range members {
		if f := facts[h]; f.Data == dataCluster {
			tl = max(tl, f.Timeline)
		}
	}
	return tl
}

// describe is the step as the plan shows it.
func (s restoreStep) describe(req restoreRequest, m restoreMarker) string {
	hosts := strings.Join(s.Hosts, ", ")
	switch s.Kind {
	case stepArchive:
		return hosts + ": archive the WAL written so far (switch to a new WAL file, wait for the archiver)"
	case stepMark:
		// Not a step of its own in the plan: see renderRestorePlan.
		return ""
	case stepStop:
		if len(s.Hosts) == 1 && s.Hosts[0] == req.Leader {
			return hosts + ": stop " + modules.AgentUnit + ", the leader last (which stops PostgreSQL)"
		}
		return hosts + ": stop " + modules.AgentUnit + " (which stops PostgreSQL)"
	case stepMoveAside:
		return fmt.Sprintf("%s: move %s aside to %s (kept, never deleted)", hosts, req.DataDir, asidePath(req.DataDir, m.ID))
	case stepRestore:
		over := "into an empty data directory"
		if s.Delta {
			over = "over what the data directory holds (delta)"
		}
		return fmt.Sprintf("%s: restore %s %s, marked meanwhile not to be started (%s)", hosts, backupOf(req.Target), over, incompletePath(req.DataDir))
	case stepRecover:
		return hosts + ": replay the archived WAL up to the target on a PostgreSQL no client can reach, let it promote (a new timeline), stop it cleanly"
	case stepResetEtcd:
		return fmt.Sprintf("%s: clear cluster %s's state in etcd, keeping its system identifier (the initialize key)", hosts, req.Cluster)
	case stepStart:
		return hosts + ": start " + modules.AgentUnit
	case stepWaitLeader:
		return hosts + ": wait until it runs as the primary with the leader key"
	case stepBackup:
		return hosts + ": take a full backup (the other members restore the latest backup, which must be on the new timeline)"
	case stepWaitReplicas:
		how := "copying the primary"
		if req.FromBackup {
			how = "restoring the new backup"
		}
		return hosts + ": wait until they stream from the primary (they rebuild their data directory by " + how + ")"
	}
	return hosts + ": " + string(s.Kind)
}

func backupOf(t restoreTarget) string {
	if t.Backup != "" {
		return "backup " + t.Backup
	}
	return "the latest backup before the target"
}

// stopAt is the target as the recovery's end.
func (t restoreTarget) stopAt() string {
	switch {
	case t.Time != "":
		return t.Time
	case t.LSN != "":
		return "WAL location " + t.LSN
	}
	return "the end of the archive"
}

// renderRestorePlan writes the plan for the operator to confirm. The
// marker's writes are not shown as steps: they record the progress.
func renderRestorePlan(w io.Writer, req restoreRequest, p restorePlan) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Restore of cluster %s to %s, with %s as the new primary", req.Cluster, req.Target.stopAt(), req.Host)
	switch {
	case p.Done:
		fmt.Fprintf(&b, ": restore %s finished already", p.Marker.ID)
	case p.Resumed:
		fmt.Fprintf(&b, ": resuming restore %s at stage %q", p.Marker.ID, p.Marker.Stage)
	}
	b.WriteString("\n")
	if p.Done {
		fmt.Fprintf(&b, "\nNothing to do. To restore to the same target again, remove %s on %s first.\n", markerPath(req.DataDir), req.Host)
		_, err := io.WriteString(w, b.String())
		return err
	}
	tl := "the latest timeline of the archive"
	if p.Marker.Timeline != 0 {
		tl = "timeline " + strconv.FormatUint(uint64(p.Marker.Timeline), 10)
	}
	fmt.Fprintf(&b, "  backup:   %s; recovery follows the history of %s\n", backupOf(req.Target), tl)
	if !p.Resumed {
		b.WriteString("  impact:   every member stops; no writes until the new primary runs; what was written\n")
		b.WriteString("            after the target is not in the restored cluster (the old data directories\n")
		b.WriteString("            are kept, moved aside)\n")
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "  note:     %s\n", n)
	}
	fmt.Fprintf(&b, "\nSteps (their progress is recorded on %s in %s):\n", req.Host, markerPath(req.DataDir))
	n := 0
	for _, s := range p.Steps {
		if d := s.describe(req, p.Marker); d != "" {
			n++
			fmt.Fprintf(&b, "%3d. %s\n", n, d)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// shownSteps counts the steps the plan shows.
func (p restorePlan) shownSteps() int {
	n := 0
	for _, s := range p.Steps {
		if s.Kind != stepMark {
			n++
		}
	}
	return n
}
