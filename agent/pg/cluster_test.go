package pg

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/internal/porttest"
)

const testBinDir = "/usr/lib/postgresql/15/bin"

// testBase makes a directory every user can traverse (t.TempDir's parents
// are 0700 root), removed at the end of the test.
func testBase(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join(testBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 is not installed at %s (apt-get install postgresql-15): %v", testBinDir, err)
	}
	base, err := os.MkdirTemp("", "pgherd-pg-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	return base
}

func newTestInstance(t *testing.T, base, name string) *Instance {
	t.Helper()
	i := &Instance{
		Name:            name,
		BinDir:          testBinDir,
		DataDir:         filepath.Join(base, name, "data"),
		SocketDir:       filepath.Join(base, name),
		Port:            porttest.Free(t),
		ListenAddresses: "127.0.0.1",
		Log:             slog.New(slog.NewTextHandler(t.Output(), nil)).With("member", name),
	}
	if os.Geteuid() == 0 {
		i.User = "postgres"
	}
	if err := i.mkdirOwned(filepath.Join(base, name), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := i.Stop(context.Background(), Immediate); err != nil {
			t.Logf("cleanup: stop %s: %v", name, err)
		}
	})
	return i
}

// startTestPrimary initializes i (trust authentication, with params) and
// starts it.
func startTestPrimary(t *testing.T, i *Instance, params map[string]string) {
	t.Helper()
	if err := i.InitDB(t.Context(), InitOptions{AuthLocal: "trust", AuthHost: "trust", Parameters: params}); err != nil {
		t.Fatal(err)
	}
	if err := i.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// upstream is how other members reach i (TCP on loopback, trust auth).
func upstream(i *Instance) ConnInfo {
	return ConnInfo{Host: "127.0.0.1", Port: i.Port, User: "postgres"}
}

func mustExec(t *testing.T, i *Instance, sql string) {
	t.Helper()
	if err := i.exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryInt(t *testing.T, i *Instance, sql string) int64 {
	t.Helper()
	conn, err := i.connect(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(t.Context())
	var n int64
	if err := conn.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func mustStatus(t *testing.T, i *Instance) Status {
	t.Helper()
	st, err := i.Status(t.Context())
	if err != nil {
		t.Fatalf("status %s: %v", i.Name, err)
	}
	return st
}

// waitFor polls cond until it holds; the deadline is generous because it
// only bounds a failure, it asserts nothing about speed.
func waitFor(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last: %s", what, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func waitReplayed(t *testing.T, standby *Instance, lsn LSN) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to replay %s", standby.Name, lsn), func() (bool, string) {
		st := mustStatus(t, standby)
		return st.State == StateRunning && st.ReplayLSN >= lsn, fmt.Sprintf("%+v", st)
	})
}

// TestCluster drives one primary and one replica through a life: initdb,
// clone, streaming, sync standby, failover, fencing, rewind of the
// diverged old primary, and a switchover back with Demote. Steps depend
// on each other and stop at the first failure.
func TestCluster(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p1 := newTestInstance(t, base, "p1")
	r1 := newTestInstance(t, base, "r1")
	var sysID uint64

	step := func(name string, fn func(t *testing.T)) {
		if !t.Run(name, fn) {
			t.FailNow()
		}
	}

	step("initdb", func(t *testing.T) {
		if ok, err := p1.Initialized(); err != nil || ok {
			t.Fatalf("Initialized before initdb = %v, %v", ok, err)
		}
		if st := mustStatus(t, p1); st.State != StateUninitialized {
			t.Fatalf("state = %s, want uninitialized", st.State)
		}
		opts := InitOptions{
			AuthLocal: "trust", AuthHost: "trust",
			Parameters: map[string]string{"wal_level": "logical", "fsync": "off", "shared_buffers": "16MB"},
		}
		if err := p1.InitDB(ctx, opts); err != nil {
			t.Fatal(err)
		}
		if ok, err := p1.Initialized(); err != nil || !ok {
			t.Fatalf("Initialized after initdb = %v, %v", ok, err)
		}
		if err := p1.InitDB(ctx, opts); !errors.Is(err, ErrAlreadyInitialized) {
			t.Fatalf("second InitDB: %v, want ErrAlreadyInitialized", err)
		}
		st := mustStatus(t, p1)
		if st.State != StateStopped || st.ClusterState != "shut down" || !st.DataChecksums || st.TimeLine != 1 || st.SystemID == 0 {
			t.Fatalf("status after initdb = %+v", st)
		}
		sysID = st.SystemID
	})

	step("start", func(t *testing.T) {
		if err := p1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p1.Start(ctx); err != nil {
			t.Fatalf("second Start (no-op): %v", err)
		}
		if err := p1.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		st := mustStatus(t, p1)
		if st.State != StateRunning || st.InRecovery || st.TimeLine != 1 || !st.DataChecksums ||
			st.SystemID != sysID || st.PID == 0 || st.WriteLSN == 0 || st.StartTime.IsZero() {
			t.Fatalf("status = %+v", st)
		}
		mustExec(t, p1, "CREATE TABLE t (id int PRIMARY KEY, who text)")
		mustExec(t, p1, "INSERT INTO t SELECT g, 'p1' FROM generate_series(1, 100) g")
	})

	step("a role's password reaches the server only as a verifier", func(t *testing.T) {
		const role, pw = "pgherd_scram_test", "s3cr3t-never-logged"
		// Every statement of the next sessions goes to the server log.
		mustExec(t, p1, "ALTER ROLE CURRENT_USER SET log_statement = 'all'")
		for range 2 { // CREATE, then ALTER
			if err := p1.EnsureRole(ctx, role, pw, "LOGIN"); err != nil {
				t.Fatal(err)
			}
		}
		mustExec(t, p1, "ALTER ROLE CURRENT_USER RESET log_statement")
		conn, err := p1.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var stored string
		err = conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", role).Scan(&stored)
		conn.Close(ctx)
		if err != nil || !SCRAMMatches(stored, pw) || SCRAMMatches(stored, pw+"x") {
			t.Fatalf("stored verifier %q, %v: does not match the password", stored, err)
		}
		log, err := os.ReadFile(p1.logFile())
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), `ALTER ROLE "`+role+`"`) {
			t.Fatalf("the server log lacks the statements (log_statement did not apply):\n%s", log)
		}
		if strings.Contains(string(log), pw) {
			t.Fatalf("the server log holds the password:\n%s", log)
		}
	})

	step("clone refuses a non-empty data directory", func(t *testing.T) {
		other := &Instance{Name: "x", BinDir: testBinDir, DataDir: p1.DataDir, User: p1.User}
		// p1 is running: refused before anything else.
		if err := other.Clone(ctx, upstream(p1), CloneOptions{}); !errors.Is(err, ErrRunning) {
			t.Fatalf("clone over a running cluster: %v, want ErrRunning", err)
		}
		dir := filepath.Join(base, "junk")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		other.DataDir = dir
		if err := other.Clone(ctx, upstream(p1), CloneOptions{}); !errors.Is(err, ErrDataDirNotEmpty) {
			t.Fatalf("clone into a non-empty dir: %v, want ErrDataDirNotEmpty", err)
		}
		if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
			t.Fatalf("the non-empty dir was touched: %v", err)
		}
	})

	step("clone and stream", func(t *testing.T) {
		slot := SlotName(r1.Name)
		if err := r1.Clone(ctx, upstream(p1), CloneOptions{Slot: slot, CreateSlot: true}); err != nil {
			t.Fatal(err)
		}
		if err := r1.ConfigureStandby(ctx, upstream(p1), slot); err != nil {
			t.Fatal(err)
		}
		if err := r1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "r1 streaming", func() (bool, string) {
			st := mustStatus(t, r1)
			return st.WALReceiver != nil && st.WALReceiver.Status == "streaming", fmt.Sprintf("%+v", st)
		})
		st := mustStatus(t, r1)
		if !st.InRecovery || st.SystemID != sysID || st.TimeLine != 1 ||
			st.WALReceiver.SenderHost != "127.0.0.1" || st.WALReceiver.SenderPort != p1.Port || st.WALReceiver.SlotName != slot {
			t.Fatalf("r1 status = %+v, receiver %+v", st, st.WALReceiver)
		}
		before := st.ReplayLSN
		mustExec(t, p1, "INSERT INTO t SELECT g, 'p1' FROM generate_series(101, 1000) g")
		target := mustStatus(t, p1).WriteLSN
		waitReplayed(t, r1, target)
		st = mustStatus(t, r1)
		if st.ReceiveLSN < target || st.ReplayLSN <= before || st.LastReplayTime.IsZero() {
			t.Fatalf("r1 after writes: receive %s replay %s (before %s), target %s, last replay %v",
				st.ReceiveLSN, st.ReplayLSN, before, target, st.LastReplayTime)
		}
		if n := queryInt(t, r1, "SELECT count(*) FROM t"); n != 1000 {
			t.Fatalf("r1 has %d rows, want 1000", n)
		}
		pst := mustStatus(t, p1)
		if len(pst.Replicas) != 1 || pst.Replicas[0].AppName != "r1" || pst.Replicas[0].State != "streaming" {
			t.Fatalf("p1 replicas = %+v", pst.Replicas)
		}
	})

	step("synchronous standby names", func(t *testing.T) {
		got, err := p1.SetSynchronousStandbyNames(ctx, "r1")
		if err != nil || got != "r1" {
			t.Fatalf("SetSynchronousStandbyNames = %q, %v", got, err)
		}
		waitFor(t, "r1 sync", func() (bool, string) {
			st := mustStatus(t, p1)
			return len(st.Replicas) == 1 && st.Replicas[0].SyncState == "sync", fmt.Sprintf("%+v", st.Replicas)
		})
		if st := mustStatus(t, p1); st.SyncStandbyNames != "r1" {
			t.Fatalf("SyncStandbyNames = %q", st.SyncStandbyNames)
		}
		mustExec(t, p1, "INSERT INTO t VALUES (1001, 'sync')") // returns only once r1 flushed it

		// ALTER SYSTEM wins over the managed file: reported, not hidden.
		mustExec(t, p1, "ALTER SYSTEM SET synchronous_standby_names = 'other'")
		if _, err := p1.SetSynchronousStandbyNames(ctx, "r1"); !errors.Is(err, ErrOverridden) {
			t.Fatalf("with ALTER SYSTEM set: %v, want ErrOverridden", err)
		}
		mustExec(t, p1, "ALTER SYSTEM RESET synchronous_standby_names")
		if got, err := p1.SetSynchronousStandbyNames(ctx, ""); err != nil || got != "" {
			t.Fatalf("clear: %q, %v", got, err)
		}
	})

	step("parameters pending restart", func(t *testing.T) {
		if err := p1.SetParameters(ctx, map[string]string{"wal_level": "logical", "fsync": "off", "shared_buffers": "24MB", "work_mem": "8MB"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "shared_buffers pending restart", func() (bool, string) {
			st := mustStatus(t, p1)
			return slices.Equal(st.PendingRestart, []string{"shared_buffers"}), fmt.Sprint(st.PendingRestart)
		})
		pid := mustStatus(t, p1).PID
		if err := p1.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		st := mustStatus(t, p1)
		if st.PID == pid || len(st.PendingRestart) != 0 {
			t.Fatalf("after restart: pid %d (was %d), pending %v", st.PID, pid, st.PendingRestart)
		}
		if n := queryInt(t, p1, "SELECT setting::int * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'"); n != 24 {
			t.Fatalf("shared_buffers = %d MB after restart, want 24", n)
		}
		// r1 reconnects by itself.
		waitFor(t, "r1 streaming again", func() (bool, string) {
			st := mustStatus(t, r1)
			return st.WALReceiver != nil && st.WALReceiver.Status == "streaming", fmt.Sprintf("%+v", st.WALReceiver)
		})
	})

	step("slots", func(t *testing.T) {
		mustExec(t, p1, "SELECT pg_create_physical_replication_slot('not_ours')")
		if err := p1.EnsureSlots(ctx, []string{SlotName("r1"), SlotName("gone")}); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, p1, "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('pgherd_r1', 'pgherd_gone', 'not_ours')"); n != 3 {
			t.Fatalf("%d slots, want 3", n)
		}
		if err := p1.EnsureSlots(ctx, []string{SlotName("r1")}); err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, p1, "SELECT count(*) FROM pg_replication_slots WHERE slot_name IN ('pgherd_r1', 'not_ours')"); n != 2 {
			t.Fatalf("%d slots, want pgherd_r1 and not_ours", n)
		}
		if n := queryInt(t, p1, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pgherd_gone'"); n != 0 {
			t.Fatal("pgherd_gone not dropped")
		}
		if err := p1.EnsureSlots(ctx, []string{"not_ours"}); !errors.Is(err, ErrUnmanagedSlot) {
			t.Fatalf("EnsureSlots(not_ours): %v, want ErrUnmanagedSlot", err)
		}
		mustExec(t, p1, "SELECT pg_drop_replication_slot('not_ours')")
	})

	step("logical slots carried to the standby", func(t *testing.T) {
		if err := r1.SetParameters(ctx, map[string]string{"wal_level": "logical", "fsync": "off", "shared_buffers": "24MB",
			"work_mem": "8MB", "hot_standby_feedback": "on"}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, p1, "SELECT pg_create_logical_replication_slot('sub1', 'test_decoding')")
		// PostgreSQL 15 cannot decode, so cannot create a logical slot, on
		// a standby (that came with 16).
		err := r1.exec(ctx, "SELECT pg_create_logical_replication_slot('sub1', 'test_decoding')")
		if err == nil || !strings.Contains(err.Error(), "logical decoding cannot be used while in recovery") {
			t.Fatalf("creating a logical slot on a PG15 standby: %v", err)
		}
		// Copy the slot's state file instead, with the standby stopped.
		state, err := p1.ReadSlotState(ctx, "sub1")
		if err != nil {
			t.Fatal(err)
		}
		if err := r1.Stop(ctx, Fast); err != nil {
			t.Fatal(err)
		}
		if err := r1.InstallSlotState("sub1", state); err != nil {
			t.Fatal(err)
		}
		if err := r1.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// A subscriber consumes changes on the primary.
		mustExec(t, p1, "INSERT INTO t VALUES (1002, 'logical-consumed')")
		mustExec(t, p1, "SELECT count(*) FROM pg_logical_slot_get_changes('sub1', NULL, NULL)")
		slots, err := p1.LogicalSlots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(slots) != 1 || slots[0].Name != "sub1" || slots[0].Plugin != "test_decoding" ||
			slots[0].Database != "postgres" || slots[0].ConfirmedFlushLSN == 0 {
			t.Fatalf("logical slots on p1 = %+v", slots)
		}
		confirmed := slots[0].ConfirmedFlushLSN
		waitReplayed(t, r1, confirmed)
		got, err := r1.AdvanceSlot(ctx, "postgres", "sub1", confirmed)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := r1.LogicalSlots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got != confirmed || len(rs) != 1 || rs[0].ConfirmedFlushLSN != confirmed {
			t.Fatalf("advanced to %s, r1 slots %+v, want %s", got, rs, confirmed)
		}
		mustExec(t, p1, "SELECT pg_drop_replication_slot('sub1')")
	})

	step("promote the replica", func(t *testing.T) {
		waitReplayed(t, r1, mustStatus(t, p1).WriteLSN)
		// Promoted behind the agent's back (no checkpoint after it), so
		// that Rewind has to make the source's pg_control current itself.
		mustExec(t, r1, "SELECT pg_promote(true, 60)")
		st := mustStatus(t, r1)
		if st.InRecovery || st.TimeLine != 2 || st.WALReceiver != nil || st.SystemID != sysID {
			t.Fatalf("r1 after promote = %+v", st)
		}
		mustExec(t, r1, "INSERT INTO t VALUES (2001, 'r1')")
		// The carried logical slot resumes after what the subscriber had
		// confirmed on the old primary.
		if n := queryInt(t, r1, "SELECT count(*) FROM pg_logical_slot_get_changes('sub1', NULL, NULL) WHERE data LIKE '%logical-consumed%'"); n != 0 {
			t.Fatalf("the failover slot replays %d already consumed changes", n)
		}
		if n := queryInt(t, r1, "SELECT count(*) FROM pg_logical_slot_peek_changes('sub1', NULL, NULL)"); n != 0 {
			t.Fatalf("peek after get: %d", n)
		}
		mustExec(t, r1, "INSERT INTO t VALUES (2004, 'r1-decoded')")
		if n := queryInt(t, r1, "SELECT count(*) FROM pg_logical_slot_get_changes('sub1', NULL, NULL) WHERE data LIKE '%r1-decoded%'"); n != 1 {
			t.Fatalf("the failover slot decoded %d new changes, want 1", n)
		}
		mustExec(t, r1, "SELECT pg_drop_replication_slot('sub1')")
		if err := r1.EnsureSlots(ctx, []string{SlotName("p1")}); err != nil {
			t.Fatal(err)
		}
	})

	step("fence the diverged old primary", func(t *testing.T) {
		// p1 still thinks it is primary and takes writes r1 never sees.
		mustExec(t, p1, "INSERT INTO t SELECT g, 'p1-lost' FROM generate_series(3001, 3500) g")
		conn, err := p1.connect(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		t0 := time.Now()
		if err := p1.Fence(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("Fence took %v", time.Since(t0))
		if _, err := conn.Exec(ctx, "INSERT INTO t VALUES (4000, 'after fence')"); err == nil {
			t.Fatal("a write on a connection opened before Fence succeeded")
		}
		if err := p1.exec(ctx, "INSERT INTO t VALUES (4001, 'after fence')"); err == nil {
			t.Fatal("a write on a new connection after Fence succeeded")
		}
		st := mustStatus(t, p1)
		if st.State != StateStopped || st.ClusterState != "in production" || st.TimeLine != 1 ||
			st.SystemID != sysID || !st.DataChecksums || st.PID != 0 {
			t.Fatalf("p1 status after fence = %+v", st)
		}
		if err := p1.Fence(ctx); err != nil {
			t.Fatalf("Fence when down: %v", err)
		}
	})

	step("rewind the old primary and follow", func(t *testing.T) {
		if err := p1.Rewind(ctx, upstream(r1)); err != nil {
			t.Fatal(err)
		}
		if err := p1.Demote(ctx, upstream(r1), SlotName("p1")); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "p1 streaming from r1", func() (bool, string) {
			st := mustStatus(t, p1)
			return st.WALReceiver != nil && st.WALReceiver.Status == "streaming", fmt.Sprintf("%+v", st)
		})
		mustExec(t, r1, "INSERT INTO t VALUES (2002, 'r1')")
		waitReplayed(t, p1, mustStatus(t, r1).WriteLSN)
		st := mustStatus(t, p1)
		if !st.InRecovery || st.TimeLine != 2 || st.WALReceiver.SenderPort != r1.Port {
			t.Fatalf("p1 = %+v, receiver %+v", st, st.WALReceiver)
		}
		if n := queryInt(t, p1, "SELECT count(*) FROM t WHERE who = 'p1-lost'"); n != 0 {
			t.Fatalf("%d diverged rows survived the rewind", n)
		}
		if n := queryInt(t, p1, "SELECT count(*) FROM t WHERE who LIKE 'r1%'"); n != 3 {
			t.Fatalf("p1 has %d of r1's rows, want 3", n)
		}
		// The port and managed file are p1's own, not r1's copies.
		mp, err := p1.ManagedParameters()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(mp["primary_conninfo"], fmt.Sprintf("port='%d'", r1.Port)) || mp["primary_slot_name"] != "pgherd_p1" {
			t.Fatalf("p1 managed config = %v", mp)
		}
		// The password is in a password file, not in primary_conninfo,
		// which PostgreSQL logs whenever a reload changes it.
		if ci := mp["primary_conninfo"]; strings.Contains(ci, "password") {
			t.Fatalf("primary_conninfo = %q: want no password", ci)
		}
	})

	step("switchover back with demote", func(t *testing.T) {
		if err := p1.EnsureSlots(ctx, []string{SlotName("r1")}); err != nil {
			t.Fatal(err)
		}
		mustExec(t, r1, "INSERT INTO t VALUES (2003, 'r1')")
		last := mustStatus(t, r1).WriteLSN
		// r1 stops cleanly (p1 receives all its WAL) and comes back as a
		// standby of p1, which is still a standby itself for a moment.
		if err := r1.Demote(ctx, upstream(p1), SlotName("r1")); err != nil {
			t.Fatal(err)
		}
		waitReplayed(t, p1, last)
		if err := p1.Promote(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p1.Promote(ctx); err != nil {
			t.Fatalf("second Promote (no-op): %v", err)
		}
		if n := queryInt(t, p1, "SELECT timeline_id FROM pg_control_checkpoint()"); n != 3 {
			t.Fatalf("pg_control timeline after Promote = %d, want 3", n)
		}
		mp, err := p1.ManagedParameters()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := mp["primary_conninfo"]; ok {
			t.Fatalf("primary_conninfo still managed after promote: %v", mp)
		}
		mustExec(t, p1, "INSERT INTO t VALUES (5000, 'p1 again')")
		waitReplayed(t, r1, mustStatus(t, p1).WriteLSN)
		pst, rst := mustStatus(t, p1), mustStatus(t, r1)
		if pst.InRecovery || pst.TimeLine != 3 || !rst.InRecovery || rst.TimeLine != 3 {
			t.Fatalf("p1 = %+v\nr1 = %+v", pst, rst)
		}
		if n := queryInt(t, r1, "SELECT count(*) FROM t WHERE id IN (2003, 5000)"); n != 2 {
			t.Fatalf("r1 has %d of the 2 rows around the switchover", n)
		}
	})

	step("change a running standby's upstream settings with a reload", func(t *testing.T) {
		pid := mustStatus(t, r1).PID
		for _, slot := range []string{"", SlotName("r1")} {
			if err := r1.ConfigureStandby(ctx, upstream(p1), slot); err != nil {
				t.Fatal(err)
			}
			waitFor(t, fmt.Sprintf("r1 streaming with slot %q", slot), func() (bool, string) {
				st := mustStatus(t, r1)
				return st.WALReceiver != nil && st.WALReceiver.Status == "streaming" && st.WALReceiver.SlotName == slot,
					fmt.Sprintf("%+v", st.WALReceiver)
			})
		}
		if got := mustStatus(t, r1).PID; got != pid {
			t.Fatalf("postmaster pid changed %d -> %d: restarted instead of reloaded", pid, got)
		}
	})

	step("stop", func(t *testing.T) {
		for _, i := range []*Instance{r1, p1} {
			if err := i.Stop(ctx, Fast); err != nil {
				t.Fatal(err)
			}
			if err := i.Stop(ctx, Fast); err != nil {
				t.Fatalf("second Stop (no-op): %v", err)
			}
		}
		if st := mustStatus(t, p1); st.State != StateStopped || st.ClusterState != "shut down" || st.TimeLine != 3 {
			t.Fatalf("p1 = %+v", st)
		}
		if st := mustStatus(t, r1); st.State != StateStopped || st.ClusterState != "shut down in recovery" || st.TimeLine != 3 {
			t.Fatalf("r1 = %+v", st)
		}
		if err := p1.Reload(ctx); !errors.Is(err, ErrNotRunning) {
			t.Fatalf("Reload when down: %v, want ErrNotRunning", err)
		}
	})
}
