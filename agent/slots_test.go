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
// replica keeps a copy of the slot, which the primary's physical slot for
// it protects (catalog_xmin); after the primary's loss the consumer
// resumes on the new primary's copy and receives every change after X
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
	c.exec(leader, "INSERT INTO t SELECT generate_series(1, 100)")

	// The consumer reads and confirms everything so far: X.
	got := consume(t, c, leader)
	for id := 1; id <= 100; id++ {
		if !got[id] {
			t.Fatalf("consumer on %s missed row %d before the failover", leader, id)
		}
	}
	var x string
	if err := c.conn(leader).QueryRow(ctx, "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = 'cdc'").Scan(&x); err != nil {
		t.Fatal(err)
	}
	confirmed, err := pg.ParseLSN(x)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("consumer confirmed up to %s on %s", confirmed, leader)

	// The replica's copy follows, and the primary keeps the catalog rows
	// it may decode (its physical slot carries the copy's catalog_xmin).
	var rconn *pgx.Conn
	defer func() {
		if rconn != nil {
			rconn.Close(ctx)
		}
	}()
	copyStart := time.Now()
	waitUntil(t, 120*time.Second, "the replica's copy of slot cdc to reach "+confirmed.String(), func() bool {
		if rconn == nil {
			// The replica restarts once to install the copy.
			m := c.members[replica].cfg
			if rconn, err = pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres password=su-secret dbname=postgres sslmode=disable",
				m.Address, m.Postgres.Port)); err != nil {
				rconn = nil
				return false
			}
		}
		var lsn string
		if err := rconn.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn, '0/0')::text FROM pg_replication_slots WHERE slot_name = 'cdc'").Scan(&lsn); err != nil {
			if !errors.Is(err, pgx.ErrNoRows) {
				rconn.Close(ctx)
				rconn = nil
			}
			return false
		}
		l, err := pg.ParseLSN(lsn)
		return err == nil && l >= confirmed
	})
	t.Logf("the replica's copy reached %s %s after the consumer confirmed it (a first copy: includes the replica's restart)",
		confirmed, time.Since(copyStart).Round(100*time.Millisecond))
	var held bool
	if err := c.conn(leader).QueryRow(ctx, "SELECT catalog_xmin IS NOT NULL FROM pg_replication_slots WHERE slot_name = $1",
		pg.SlotName(replica)).Scan(&held); err != nil || !held {
		t.Fatalf("the primary's slot for %s holds no catalog_xmin (%v): the copy's catalog rows are not protected", replica, err)
	}

	// Changes after X, then the primary is lost.
	c.exec(leader, "INSERT INTO t SELECT generate_series(101, 200)")
	c.waitCount(replica, 200)
	c.kill(leader)
	if got := c.waitRoles(60 * time.Second); got != replica {
		t.Fatalf("leader after failover: %s, want %s", got, replica)
	}
	c.exec(replica, "INSERT INTO t SELECT generate_series(201, 210)")

	after := consume(t, c, replica)
	for id := 101; id <= 210; id++ {
		if !after[id] {
			t.Errorf("consumer resuming on %s missed row %d: a gap", replica, id)
		}
	}
	dups := 0
	for id := range after {
		if id <= 100 {
			dups++
		}
	}
	t.Logf("consumer resumed on %s: %d changes, %d of them duplicates of before X", replica, len(after), dups)
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
