package agent

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgherd/pgherd/agent/pg"
)

// TestAgentLogicalSlotFailover: a change-data-capture consumer reads a
// logical slot (test_decoding) on the primary and confirms up to X; the
// replica keeps a copy of the slot (copied once, then advanced as the
// consumer confirms more), which the primary's physical slot for it
// protects (catalog_xmin); after the primary's loss the consumer resumes
// on the new primary's copy and receives every change after X
// (duplicates at worst, never a gap).
func TestAgentLogicalSlotFailover(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.Postgres.Parameters["wal_level"] = "logical" })
	for _, n := range c.names {
		c.start(n)
	}
	leader := c.waitRoles(120 * time.Second)
	replica := c.others(leader)[0]
	ctx := context.Background()
	c.exec(leader, "CREATE TABLE t (id int primary key)")
	c.exec(leader, "SELECT pg_create_logical_replication_slot('cdc', 'test_decoding')")

	// Two rounds: the replica copies the slot (restarting once), then
	// advances its copy as the consumer confirms more.
	var x pg.LSN
	for round, ids := range [][2]int{{1, 100}, {101, 150}} {
		c.exec(leader, fmt.Sprintf("INSERT INTO t SELECT generate_series(%d, %d)", ids[0], ids[1]))
		got := consume(t, c, leader)
		for id := ids[0]; id <= ids[1]; id++ {
			if !got[id] {
				t.Fatalf("consumer on %s missed row %d before the failover", leader, id)
			}
		}
		x = confirmedFlush(t, c, leader)
		start := time.Now()
		waitCopy(t, c, replica, x)
		what := "first copy, with the replica's restart"
		if round > 0 {
			what = "advancing the copy"
		}
		t.Logf("consumer confirmed up to %s on %s; the replica's copy reached it %s later (%s)",
			x, leader, time.Since(start).Round(100*time.Millisecond), what)
	}
	// The primary keeps the catalog rows the copy may decode: its
	// physical slot for the replica carries the copy's catalog_xmin.
	var held bool
	if err := c.conn(leader).QueryRow(ctx, "SELECT catalog_xmin IS NOT NULL FROM pg_replication_slots WHERE slot_name = $1",
		pg.SlotName(replica)).Scan(&held); err != nil || !held {
		t.Fatalf("the primary's slot for %s holds no catalog_xmin (%v): the copy's catalog rows are not protected", replica, err)
	}

	// Changes after X, then the primary is lost.
	c.exec(leader, "INSERT INTO t SELECT generate_series(151, 250)")
	c.waitCount(replica, 250)
	c.kill(leader)
	if got := c.waitRoles(60 * time.Second); got != replica {
		t.Fatalf("leader after failover: %s, want %s", got, replica)
	}
	c.exec(replica, "INSERT INTO t SELECT generate_series(251, 260)")

	after := consume(t, c, replica)
	for id := 151; id <= 260; id++ {
		if !after[id] {
			t.Errorf("consumer resuming on %s missed row %d: a gap", replica, id)
		}
	}
	dups := 0
	for id := range after {
		if id <= 150 {
			dups++
		}
	}
	t.Logf("consumer resumed on %s: %d changes, %d of them duplicates of before X", replica, len(after), dups)
}

func confirmedFlush(t *testing.T, c *testCluster, name string) pg.LSN {
	t.Helper()
	var s string
	if err := c.conn(name).QueryRow(context.Background(), "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'").Scan(&s); err != nil {
		t.Fatal(err)
	}
	l, err := pg.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// waitCopy waits until member name's copy of slot cdc has reached x. The
// member may restart meanwhile (to install its first copy).
func waitCopy(t *testing.T, c *testCluster, name string, x pg.LSN) {
	t.Helper()
	ctx := context.Background()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(ctx)
		}
	}()
	m := c.members[name].cfg
	waitUntil(t, 120*time.Second, name+"'s copy of slot cdc to reach "+x.String(), func() bool {
		if conn == nil {
			var err error
			if conn, err = pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres password=su-secret dbname=postgres sslmode=disable",
				m.Address, m.Postgres.Port)); err != nil {
				conn = nil
				return false
			}
		}
		var lsn string
		if err := conn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = 'cdc'").Scan(&lsn); err != nil {
			if !errors.Is(err, pgx.ErrNoRows) {
				conn.Close(ctx)
				conn = nil
			}
			return false
		}
		l, err := pg.ParseLSN(lsn)
		return err == nil && l >= x
	})
}

var insertedID = regexp.MustCompile(`^table public\.t: INSERT: id\[integer\]:(\d+)$`)

// consume reads and confirms every change of slot cdc on member name, and
// returns the ids inserted into t.
func consume(t *testing.T, c *testCluster, name string) map[int]bool {
	t.Helper()
	rows, err := c.conn(name).Query(context.Background(), "SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)")
	if err != nil {
		t.Fatalf("consume on %s: %v", name, err)
	}
	defer rows.Close()
	ids := map[int]bool{}
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		if m := insertedID.FindStringSubmatch(data); m != nil {
			id, _ := strconv.Atoi(m[1])
			ids[id] = true
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("consume on %s: %v", name, err)
	}
	return ids
}
