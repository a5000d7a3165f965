package pg

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

// TestCloneWaitsForSlot clones through a slot that the source does not
// have yet, as a new replica does before the leader's next pass creates
// its slot: the clone waits for it, and gives up with ErrSlotMissing on a
// slot that never comes.
func TestCloneWaitsForSlot(t *testing.T) {
	base := testBase(t)
	ctx := t.Context()
	p := newTestInstance(t, base, "p")
	startTestPrimary(t, p, map[string]string{"wal_level": "replica", "fsync": "off", "shared_buffers": "16MB"})

	t.Run("created later", func(t *testing.T) {
		r := newTestInstance(t, base, "r1")
		slot := SlotName(r.Name)
		created := make(chan error, 1)
		go func() {
			time.Sleep(1500 * time.Millisecond)
			created <- p.exec(ctx, "SELECT pg_create_physical_replication_slot('"+slot+"')")
		}()
		if err := r.Clone(ctx, upstream(p), CloneOptions{Slot: slot}); err != nil {
			t.Fatal(err)
		}
		if err := <-created; err != nil {
			t.Fatal(err)
		}
		if ok, err := r.Initialized(); err != nil || !ok {
			t.Fatalf("Initialized after the clone = %v, %v", ok, err)
		}
		if op, err := r.Incomplete(); err != nil || op != "" {
			t.Fatalf("Incomplete after the clone = %q, %v", op, err)
		}
	})

	t.Run("never created", func(t *testing.T) {
		r := newTestInstance(t, base, "r2")
		slot := SlotName(r.Name)
		t0 := time.Now()
		err := r.Clone(ctx, upstream(p), CloneOptions{Slot: slot, SlotWait: time.Second})
		if !errors.Is(err, ErrSlotMissing) || !strings.Contains(err.Error(), slot) {
			t.Fatalf("clone without the slot: %v, want ErrSlotMissing naming %s", err, slot)
		}
		if took := time.Since(t0); took < time.Second {
			t.Fatalf("gave up after %s, before the wait of 1s", took)
		}
		if op, err := r.Incomplete(); err != nil || op != "pg_basebackup" {
			t.Fatalf("Incomplete after the failed clone = %q, %v, want pg_basebackup", op, err)
		}
		if ents, err := os.ReadDir(r.DataDir); err != nil || len(ents) != 0 {
			t.Fatalf("data directory after the failed clone: %v, %v, want empty", ents, err)
		}
	})
}
