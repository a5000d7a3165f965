package pg

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LSN is a WAL position (pg_lsn).
type LSN uint64

// ParseLSN reads the "16/B374D848" form.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("pg: bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("pg: bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

// String renders the LSN as PostgreSQL does.
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint64(l)&0xffffffff) }

// State is what the postmaster is doing, as far as the agent can tell.
type State string

// States.
const (
	// StateUninitialized: no cluster in the data directory.
	StateUninitialized State = "uninitialized"
	// StateStopped: no postmaster, or one past its shutdown checkpoint
	// (Exiting); the fields then come from pg_controldata.
	StateStopped State = "stopped"
	// StateStarting: a postmaster runs but refuses connections (starting,
	// crash recovery, a standby not yet consistent, shutting down).
	StateStarting State = "starting"
	// StateRunning: it accepts connections; the SQL fields are filled.
	StateRunning State = "running"
)

// Status is one observation of the local PostgreSQL.
type Status struct {
	State State
	PID   int // postmaster pid; 0 when stopped, unless Exiting
	// Exiting: stopped, but the postmaster (PID) still finishes its
	// archiving after the shutdown checkpoint (see ShutDown).
	Exiting bool
	// ConnError is why a running postmaster did not answer (StateStarting).
	ConnError string
	// Incomplete names the operation (pg_rewind, pg_basebackup) that
	// stopped midway through rewriting the data directory: it must not be
	// started. Set only while stopped; nothing else is filled then.
	Incomplete string

	// Filled from pg_control: always by SQL when running, by pg_controldata
	// when stopped.
	SystemID      uint64
	TimeLine      uint32
	DataChecksums bool

	// Filled when stopped, from pg_controldata.
	// ClusterState is "shut down", "shut down in recovery", "in
	// production" (it crashed or was stopped immediately), "in archive
	// recovery", …
	ClusterState string
	// CheckpointLSN is the latest checkpoint's location; MinRecoveryLSN
	// the point a standby had replayed to (0 on a primary).
	CheckpointLSN  LSN
	MinRecoveryLSN LSN

	// Filled when running.
	InRecovery bool
	StartTime  time.Time // postmaster start time
	// ServerVersion is server_version_num, such as 150020.
	ServerVersion int
	// WriteLSN is pg_current_wal_lsn() on a primary; ReceiveLSN and
	// ReplayLSN are a standby's pg_last_wal_receive_lsn() and
	// pg_last_wal_replay_lsn().
	WriteLSN       LSN
	ReceiveLSN     LSN
	ReplayLSN      LSN
	LastReplayTime time.Time    // pg_last_xact_replay_timestamp(); zero if none
	WALReceiver    *WALReceiver // nil when no WAL receiver runs
	// PendingRestart names the parameters changed in the files that need
	// a restart to apply.
	PendingRestart   []string
	SyncStandbyNames string
	Replicas         []Replica // pg_stat_replication (walsenders)
	// LogicalSlots are the server's logical replication slots (empty,
	// not nil, when running without any).
	LogicalSlots []LogicalSlot
}

// WALReceiver is a standby's pg_stat_wal_receiver.
type WALReceiver struct {
	Status     string // "streaming", "catchup", "waiting", …
	SenderHost string
	SenderPort int
	SlotName   string
	TimeLine   uint32 // received_tli
}

// Replica is one row of pg_stat_replication.
type Replica struct {
	AppName    string
	ClientAddr string
	State      string // "streaming", "catchup", "backup", …
	SyncState  string // "async", "sync", "potential", "quorum"
	SentLSN    LSN
	FlushLSN   LSN
	ReplayLSN  LSN
}

// Status observes the local PostgreSQL. PostgreSQL being down or not
// accepting connections is a state, not an error: errors are failures to
// observe at all.
func (i *Instance) Status(ctx context.Context) (Status, error) {
	var st Status
	ok, err := i.Initialized()
	if err != nil {
		return st, err
	}
	if st.PID, err = i.postmasterPID(); err != nil {
		return st, err
	}
	if st.PID == 0 {
		// What an unfinished rewrite left is neither empty nor a
		// cluster, whatever its files say.
		if st.Incomplete, err = i.Incomplete(); err != nil || st.Incomplete != "" {
			st.State = StateStopped
			return st, err
		}
	}
	if !ok {
		st.State = StateUninitialized
		return st, nil
	}
	if st.PID == 0 {
		return i.stoppedStatus(ctx)
	}
	if i.shutDownExiting(st.PID) {
		return i.exitingStatus(ctx, st.PID)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := i.connect(cctx)
	if err != nil {
		st.State = StateStarting
		st.ConnError = err.Error()
		return st, nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := querySQLStatus(ctx, conn, &st); err != nil {
		return st, err
	}
	// A standby that is not streaming shows no received_tli, and its last
	// restartpoint's timeline may be older than the one it replays: a
	// replica that followed a promotion would look as if it had replayed
	// its old timeline past the switch point, that is, diverged.
	if st.InRecovery && (st.WALReceiver == nil || st.WALReceiver.Status != "streaming") {
		// Without it the timeline stays the restartpoint's: the safe side
		// (a diverged-looking replica is rewound, never promoted).
		if tli, err := i.replayTimeline(cctx); err != nil {
			i.log().Warn("reading the replayed timeline", "err", err)
		} else {
			st.TimeLine = max(st.TimeLine, tli)
		}
	}
	st.State = StateRunning
	return st, nil
}

// replayTimeline is the timeline a standby replays, as IDENTIFY_SYSTEM
// reports it on a replication connection to it (SQL shows it only while a
// WAL receiver streams). The connection is a logical-replication one so
// that pg_hba's database lines, not its replication lines, admit the
// agent's local superuser.
func (i *Instance) replayTimeline(ctx context.Context) (uint32, error) {
	cfg, err := pgconn.ParseConfig(i.local().sql().String())
	if err != nil {
		return 0, fmt.Errorf("pg: parse local conninfo: %w", err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, fmt.Errorf("pg: replication connection for IDENTIFY_SYSTEM: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return 0, fmt.Errorf("pg: IDENTIFY_SYSTEM: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 2 {
		return 0, fmt.Errorf("pg: IDENTIFY_SYSTEM: unexpected result")
	}
	tli, err := strconv.ParseUint(string(res[0].Rows[0][1]), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("pg: IDENTIFY_SYSTEM: timeline %q: %w", res[0].Rows[0][1], err)
	}
	return uint32(tli), nil
}

// stoppedStatus reads pg_controldata.
func (i *Instance) stoppedStatus(ctx context.Context) (Status, error) {
	st, err := i.controlStatus(ctx)
	if err != nil {
		return st, err
	}
	// The postmaster may have started between the two looks; say so rather
	// than report stale control data as "stopped".
	if pid, _ := i.postmasterPID(); pid != 0 {
		st.State, st.PID = StateStarting, pid
	}
	return st, nil
}

// controlStatus is a stopped status filled from pg_controldata.
func (i *Instance) controlStatus(ctx context.Context) (Status, error) {
	st := Status{State: StateStopped}
	cd, err := i.ControlData(ctx)
	if err != nil {
		return st, err
	}
	return st, cd.fill(&st)
}

// ControlData is pg_controldata's output, by label.
type ControlData map[string]string

// ControlData runs pg_controldata on the data directory.
func (i *Instance) ControlData(ctx context.Context) (ControlData, error) {
	out, err := i.run(ctx, "pg_controldata", "-D", i.DataDir)
	if err != nil {
		return nil, err
	}
	return ParseControlData(string(out)), nil
}

// ParseControlData parses pg_controldata's "Label:   value" lines.
func ParseControlData(out string) ControlData {
	cd := ControlData{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			cd[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	return cd
}

func (cd ControlData) fill(st *Status) error {
	var errs []error
	num := func(label string, bits int) uint64 {
		n, err := strconv.ParseUint(cd[label], 10, bits)
		if err != nil {
			errs = append(errs, fmt.Errorf("pg_controldata %q: %w", label, err))
		}
		return n
	}
	lsn := func(label string) LSN {
		l, err := ParseLSN(cd[label])
		if err != nil {
			errs = append(errs, fmt.Errorf("pg_controldata %q: %w", label, err))
		}
		return l
	}
	st.ClusterState = cd["Database cluster state"]
	st.SystemID = num("Database system identifier", 64)
	st.TimeLine = uint32(num("Latest checkpoint's TimeLineID", 32))
	// A standby stopped past a timeline switch has replayed into the
	// newer timeline than its last restartpoint; that one is the truth.
	if tli := uint32(num("Min recovery ending loc's timeline", 32)); tli > st.TimeLine {
		st.TimeLine = tli
	}
	st.DataChecksums = cd["Data page checksum version"] != "0" && cd["Data page checksum version"] != ""
	st.CheckpointLSN = lsn("Latest checkpoint location")
	st.MinRecoveryLSN = lsn("Minimum recovery ending location")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("pg: %w", err)
	}
	return nil
}

const statusSQL = `
SELECT pg_is_in_recovery(),
       (SELECT system_identifier FROM pg_control_system()),
       current_setting('data_checksums') = 'on',
       pg_postmaster_start_time(),
       CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,
       (SELECT timeline_id FROM pg_control_checkpoint()),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       pg_last_xact_replay_timestamp(),
       current_setting('synchronous_standby_names'),
       ARRAY(SELECT name FROM pg_settings WHERE pending_restart ORDER BY name),
       current_setting('server_version_num')::int`

// querySQLStatus fills the SQL-observed fields of st.
func querySQLStatus(ctx context.Context, conn *pgx.Conn, st *Status) error {
	var (
		sysid                     int64
		writeLSN, recvLSN, repLSN *string
		primaryTLI                *int32
		ckptTLI                   int32
		replayTime                *time.Time
	)
	err := conn.QueryRow(ctx, statusSQL).Scan(&st.InRecovery, &sysid, &st.DataChecksums, &st.StartTime,
		&writeLSN, &primaryTLI, &ckptTLI, &recvLSN, &repLSN, &replayTime, &st.SyncStandbyNames, &st.PendingRestart, &st.ServerVersion)
	if err != nil {
		return fmt.Errorf("pg: status query: %w", err)
	}
	st.SystemID = uint64(sysid)
	st.TimeLine = uint32(ckptTLI)
	if primaryTLI != nil {
		st.TimeLine = uint32(*primaryTLI)
	}
	for _, p := range []struct {
		s   *string
		dst *LSN
	}{{writeLSN, &st.WriteLSN}, {recvLSN, &st.ReceiveLSN}, {repLSN, &st.ReplayLSN}} {
		if p.s != nil {
			if *p.dst, err = ParseLSN(*p.s); err != nil {
				return err
			}
		}
	}
	if replayTime != nil {
		st.LastReplayTime = *replayTime
	}

	var w WALReceiver
	var host, slot *string
	var port *int32
	var tli *int32
	err = conn.QueryRow(ctx, `SELECT status, sender_host, sender_port, slot_name, received_tli
		FROM pg_stat_wal_receiver`).Scan(&w.Status, &host, &port, &slot, &tli)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("pg: pg_stat_wal_receiver: %w", err)
	default:
		w.SenderHost, w.SlotName = deref(host), deref(slot)
		if port != nil {
			w.SenderPort = int(*port)
		}
		if tli != nil {
			w.TimeLine = uint32(*tli)
		}
		st.WALReceiver = &w
		// A standby's timeline is the one it receives, when it streams.
		if st.InRecovery && w.TimeLine > st.TimeLine {
			st.TimeLine = w.TimeLine
		}
	}

	rows, err := conn.Query(ctx, `SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''),
		coalesce(state, ''), coalesce(sync_state, ''),
		coalesce(sent_lsn, '0/0')::text, coalesce(flush_lsn, '0/0')::text, coalesce(replay_lsn, '0/0')::text
		FROM pg_stat_replication ORDER BY application_name`)
	if err != nil {
		return fmt.Errorf("pg: pg_stat_replication: %w", err)
	}
	st.Replicas = nil
	for rows.Next() {
		var r Replica
		var sent, flush, replay string
		if err := rows.Scan(&r.AppName, &r.ClientAddr, &r.State, &r.SyncState, &sent, &flush, &replay); err != nil {
			return fmt.Errorf("pg: pg_stat_replication: %w", err)
		}
		r.SentLSN, _ = ParseLSN(sent)
		r.FlushLSN, _ = ParseLSN(flush)
		r.ReplayLSN, _ = ParseLSN(replay)
		st.Replicas = append(st.Replicas, r)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pg: pg_stat_replication: %w", err)
	}
	st.LogicalSlots, err = queryLogicalSlots(ctx, conn)
	return err
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
