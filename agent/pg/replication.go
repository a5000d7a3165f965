package pg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// CloneOptions tune Clone.
type CloneOptions struct {
	// Slot, when set, is the physical slot pg_basebackup streams WAL
	// through (-S); CreateSlot creates it on the source first (-C).
	Slot       string
	CreateSlot bool
	// MoveAside allows cloning over a non-empty data directory: it is
	// renamed to DataDir.pgherd-old-<time> first, never deleted.
	MoveAside bool
	// SlotWait bounds the wait for a Slot that the source does not have
	// yet and that the clone does not create (ErrSlotMissing after it).
	// 0: slotWait.
	SlotWait time.Duration
}

// A new replica clones as soon as it has published its member key, and the
// leader creates the members' slots in its next pass, within a loop_wait
// (1 s by default): slotWait leaves it ten of them before the clone gives
// up, and pg_basebackup is run again every slotRetry meanwhile.
const (
	slotWait  = 10 * time.Second
	slotRetry = 500 * time.Millisecond
)

// Clone copies the source's data directory into this instance's data
// directory with pg_basebackup (-X stream, -c fast). The data directory must
// be absent or empty (ErrDataDirNotEmpty otherwise) unless opts.MoveAside.
// It does not configure or start the standby: call ConfigureStandby and
// Start next.
func (i *Instance) Clone(ctx context.Context, from ConnInfo, opts CloneOptions) error {
	if err := i.clearDataDir(ctx, "clone into", opts.MoveAside); err != nil {
		return err
	}
	if err := i.mkdirOwned(i.DataDir, 0o700); err != nil {
		return err
	}
	from, done, err := i.tempPassFile(from)
	if err != nil {
		return err
	}
	defer done()
	args := []string{"-D", i.DataDir, "-X", "stream", "-c", "fast", "--no-password", "-d", from.String()}
	if opts.Slot != "" {
		args = append(args, "-S", opts.Slot)
		if opts.CreateSlot {
			args = append(args, "-C")
		}
	}
	if err := i.beginIncomplete("pg_basebackup"); err != nil {
		return err
	}
	t0 := time.Now()
	i.log().Info("cloning", "from", from.Redacted(), "slot", opts.Slot)
	if err := i.basebackup(ctx, args, opts); err != nil {
		return err
	}
	if err := i.endIncomplete(); err != nil {
		return err
	}
	i.log().Info("cloned", "from", from.Host, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// basebackup runs pg_basebackup for Clone, again while the source does not
// have the slot yet (see slotWait) unless the clone creates it. The
// incomplete mark stays set between attempts: it is removed only once one
// succeeded.
func (i *Instance) basebackup(ctx context.Context, args []string, opts CloneOptions) error {
	wait := opts.SlotWait
	if wait == 0 {
		wait = slotWait
	}
	deadline := time.Now().Add(wait)
	// pg_basebackup exits with 1 on any error: the server's message,
	// which it prints, tells this one.
	missing := []byte(fmt.Sprintf(`replication slot "%s" does not exist`, opts.Slot))
	for attempt := 1; ; attempt++ {
		out, err := i.run(ctx, "pg_basebackup", args...)
		if err == nil || opts.Slot == "" || opts.CreateSlot || !bytes.Contains(out, missing) {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pg: clone: the leader did not create slot %s within %s: %w: %w", opts.Slot, wait, ErrSlotMissing, err)
		}
		if attempt == 1 {
			i.log().Info("the leader has not created this member's slot yet: waiting for it", "slot", opts.Slot, "for", wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pg: clone: waiting for slot %s: %w", opts.Slot, ctx.Err())
		case <-time.After(slotRetry):
		}
		// pg_basebackup empties the data directory when it fails. Were
		// anything left, it is refused, not deleted nor moved aside (that
		// was for the directory the clone found): the clone stops there,
		// marked incomplete.
		if err := i.clearDataDir(ctx, "clone into", false); err != nil {
			return err
		}
		if err := i.mkdirOwned(i.DataDir, 0o700); err != nil {
			return err
		}
	}
}

// clearDataDir checks that postgres does not run and that the data
// directory is absent or empty; a non-empty one is renamed to
// DataDir.pgherd-old-<time> when moveAside (never deleted), else
// ErrDataDirNotEmpty.
func (i *Instance) clearDataDir(ctx context.Context, what string, moveAside bool) error {
	if pid, err := i.runningPID(ctx); err != nil || pid != 0 {
		if err == nil {
			err = fmt.Errorf("pg: %s %s: %w", what, i.DataDir, ErrRunning)
		}
		return err
	}
	ents, err := os.ReadDir(i.DataDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pg: %s: %w", what, err)
	}
	if len(ents) == 0 {
		return nil
	}
	if !moveAside {
		return fmt.Errorf("pg: %s %s: %w", what, i.DataDir, ErrDataDirNotEmpty)
	}
	aside := fmt.Sprintf("%s.pgherd-old-%s", i.DataDir, time.Now().UTC().Format("20060102T150405Z"))
	if err := os.Rename(i.DataDir, aside); err != nil {
		return fmt.Errorf("pg: move %s aside: %w", i.DataDir, err)
	}
	i.log().Warn("moved the old data directory aside", "datadir", i.DataDir, "to", aside)
	return nil
}

// StagingDir is an empty directory beside the data directory, owned by
// the instance's user, in which a new data directory is built (a backup
// restored) before InstallDataDir moves it into place, so that a failed
// attempt never leaves a half-made data directory behind. What an earlier
// attempt left there is removed: it was never started.
func (i *Instance) StagingDir() (string, error) {
	dir := i.DataDir + ".pgherd-staging"
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("pg: staging directory: %w", err)
	}
	if err := i.mkdirOwned(dir, 0o700); err != nil {
		return "", err
	}
	return dir, nil
}

// InstallDataDir makes dir (from StagingDir) the data directory. As for
// Clone, the data directory must be absent or empty (ErrDataDirNotEmpty)
// unless moveAside; dir must be on the same file system as the data
// directory's parent (a data directory that is a mount point cannot be
// replaced this way).
func (i *Instance) InstallDataDir(ctx context.Context, dir string, moveAside bool) error {
	if err := i.clearDataDir(ctx, "install into", moveAside); err != nil {
		return err
	}
	if err := os.Rename(dir, i.DataDir); err != nil {
		return fmt.Errorf("pg: install data directory: %w", err)
	}
	return nil
}

// ConfigureStandby makes the data directory a standby of primary: it writes
// standby.signal and sets primary_conninfo (application_name = Name unless
// primary.AppName says otherwise) and primary_slot_name in the managed
// configuration. When postgres runs as a standby it reloads, which is enough
// to switch upstream on PostgreSQL 13 and later; a running primary is left
// alone (see Demote).
func (i *Instance) ConfigureStandby(ctx context.Context, primary ConnInfo, slot string) error {
	if primary.AppName == "" {
		primary.AppName = i.Name
	}
	primary.DBName = ""
	primary, err := withPassFile(primary, i.path(PassFileName), i.writeFile)
	if err != nil {
		return err
	}
	set := map[string]string{"primary_conninfo": primary.String()}
	var unset []string
	if slot != "" {
		set["primary_slot_name"] = slot
	} else {
		unset = append(unset, "primary_slot_name")
	}
	changed, err := i.updateManaged(set, unset...)
	if err != nil {
		return err
	}
	if err := i.writeFile(i.path("standby.signal"), nil); err != nil {
		return err
	}
	i.log().Info("configured as standby", "upstream", primary.Redacted(), "slot", slot)
	if !changed {
		return nil
	}
	st, err := i.Status(ctx)
	if err != nil {
		return err
	}
	if st.State == StateRunning && st.InRecovery {
		return i.Reload(ctx)
	}
	return nil
}

// Demote turns this member into a standby of primary: a running primary is
// stopped (fast: clean shutdown, standbys get all WAL), the data directory
// is configured as a standby, and postgres is started (or, if already a
// standby, reloaded). A diverged old primary needs Rewind before Demote.
func (i *Instance) Demote(ctx context.Context, primary ConnInfo, slot string) error {
	st, err := i.Status(ctx)
	if err != nil {
		return err
	}
	if st.State != StateStopped && !(st.State == StateRunning && st.InRecovery) {
		if err := i.Stop(ctx, Fast); err != nil {
			return err
		}
	}
	if err := i.ConfigureStandby(ctx, primary, slot); err != nil {
		return err
	}
	return i.Start(ctx)
}

// rewindKeep are the configuration files that are this host's own and
// that pg_rewind would overwrite with the source's copies.
var rewindKeep = []string{"postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf", ManagedConfFile}

// Rewind resynchronizes a stopped data directory with source (another
// member, normally the new primary) with pg_rewind --source-server. It
// returns ErrRunning when postgres runs. When the cluster was not shut
// down cleanly, pg_rewind (PostgreSQL 13+) first runs it in single-user
// mode to finish crash recovery, as Patroni does; standby.signal and
// recovery.signal are removed first because a single-user server refuses
// standby mode. This host's configuration files are kept. When the
// histories have not diverged pg_rewind changes nothing ("no rewind
// required"). Call ConfigureStandby or Demote next: the rewound directory
// must start as a standby.
func (i *Instance) Rewind(ctx context.Context, source ConnInfo) (rerr error) {
	if pid, err := i.runningPID(ctx); err != nil || pid != 0 {
		if err == nil {
			err = fmt.Errorf("pg: rewind %s: %w", i.DataDir, ErrRunning)
		}
		return err
	}
	// The signal files go back if the rewind fails: a standby whose
	// rewind failed (its source went away) must not next start as a
	// primary.
	var removed []string
	defer func() {
		if rerr == nil {
			return
		}
		for _, f := range removed {
			if err := i.writeFile(i.path(f), nil); err != nil {
				rerr = errors.Join(rerr, err)
			}
		}
	}()
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		err := os.Remove(i.path(f))
		if err == nil {
			removed = append(removed, f)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pg: rewind: %w", err)
		}
	}
	saved := map[string][]byte{}
	for _, f := range rewindKeep {
		data, err := os.ReadFile(i.path(f))
		if err == nil {
			saved[f] = data
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pg: rewind: keep %s: %w", f, err)
		}
	}
	if err := i.checkpointSource(ctx, source); err != nil {
		return err
	}
	if err := i.beginIncomplete("pg_rewind"); err != nil {
		return err
	}
	src, done, err := i.tempPassFile(source.sql())
	if err != nil {
		return err
	}
	defer done()
	t0 := time.Now()
	out, rerr := i.run(ctx, "pg_rewind", "-D", i.DataDir, "--source-server", src.String())
	for f, data := range saved {
		if err := i.writeFile(i.path(f), data); err != nil {
			return errors.Join(rerr, err)
		}
	}
	if rerr != nil {
		if !rewindStarted(out) {
			// It failed before it changed a file: the directory is as
			// it was, and a later rewind may still succeed.
			return errors.Join(rerr, i.endIncomplete())
		}
		return rerr
	}
	if err := i.endIncomplete(); err != nil {
		return err
	}
	i.log().Info("rewound", "source", source.Host, "took", time.Since(t0).Round(time.Millisecond), "output", tail(string(out), 3))
	return nil
}

// rewindStarted tells whether a failed pg_rewind got as far as changing the
// target: it reports where it rewinds from just before it starts to.
// Anything else (the source unreachable, the target not shut down
// cleanly, no rewind needed) leaves the target as it was.
func rewindStarted(out []byte) bool {
	return bytes.Contains(out, []byte("rewinding from last common checkpoint"))
}

// checkpointSource makes sure a primary source's pg_control shows its
// current timeline. After a promotion the control file keeps the old
// timeline until the end-of-recovery checkpoint completes, and pg_rewind,
// which reads the source's pg_control, would then wrongly answer "source
// and target cluster are on the same timeline; no rewind required". A
// CHECKPOINT on the source settles it (it needs superuser or pg_checkpoint).
func (i *Instance) checkpointSource(ctx context.Context, source ConnInfo) error {
	conn, err := connect(ctx, source)
	if err != nil {
		return fmt.Errorf("pg: rewind: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var ckpt, cur int32
	err = conn.QueryRow(ctx, `SELECT (SELECT timeline_id FROM pg_control_checkpoint()),
		CASE WHEN pg_is_in_recovery() THEN 0
		     ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END`).Scan(&ckpt, &cur)
	if err != nil {
		return fmt.Errorf("pg: rewind: read source timeline: %w", err)
	}
	if cur == 0 || cur == ckpt {
		return nil
	}
	i.log().Info("checkpoint on the rewind source so that its pg_control shows the new timeline", "control", ckpt, "current", cur)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		return fmt.Errorf("pg: rewind: checkpoint on source: %w", err)
	}
	return nil
}

// SlotPrefix marks the physical replication slots pgherd manages;
// EnsureSlots never drops a slot without it.
const SlotPrefix = "pgherd_"

// SlotName is the managed slot name for a member: the prefix and the name
// lower-cased, with every character outside [a-z0-9_] replaced by '_',
// cut to PostgreSQL's 63-byte limit.
func SlotName(member string) string {
	var b strings.Builder
	b.WriteString(SlotPrefix)
	for _, r := range strings.ToLower(member) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}

// EnsureSlots makes the set of pgherd-managed physical slots equal to
// names: it creates the missing ones (reserving WAL at once) and drops the
// managed ones not listed. A slot in use cannot be dropped; it is skipped
// with a warning and dropped on a later call. Slots without SlotPrefix are
// never touched; naming one is ErrUnmanagedSlot.
func (i *Instance) EnsureSlots(ctx context.Context, names []string) error {
	for _, n := range names {
		if !strings.HasPrefix(n, SlotPrefix) {
			return fmt.Errorf("pg: slot %q: %w", n, ErrUnmanagedSlot)
		}
	}
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	rows, err := conn.Query(ctx, `SELECT slot_name::text, active FROM pg_replication_slots
		WHERE slot_type = 'physical' AND starts_with(slot_name::text, $1)`, SlotPrefix)
	if err != nil {
		return fmt.Errorf("pg: list slots: %w", err)
	}
	have := map[string]bool{}
	for rows.Next() {
		var name string
		var active bool
		if err := rows.Scan(&name, &active); err != nil {
			return fmt.Errorf("pg: list slots: %w", err)
		}
		have[name] = active
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pg: list slots: %w", err)
	}
	for _, n := range names {
		if _, ok := have[n]; ok {
			continue
		}
		if _, err := conn.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, true)", n); err != nil {
			return fmt.Errorf("pg: create slot %s: %w", n, err)
		}
		i.log().Info("slot created", "slot", n)
	}
	for n, active := range have {
		if slices.Contains(names, n) {
			continue
		}
		if active {
			i.log().Warn("slot no longer wanted but in use; not dropped yet", "slot", n)
			continue
		}
		if _, err := conn.Exec(ctx, "SELECT pg_drop_replication_slot($1)", n); err != nil {
			return fmt.Errorf("pg: drop slot %s: %w", n, err)
		}
		i.log().Info("slot dropped", "slot", n)
	}
	return nil
}

// LogicalSlot is a logical replication slot as the primary sees it: what a
// failover must carry to the new primary so that subscribers resume where
// they were.
type LogicalSlot struct {
	Name              string
	Plugin            string
	Database          string
	ConfirmedFlushLSN LSN
	Active            bool
}

// LogicalSlots lists the logical slots of the local server (Status
// lists them too, on the connection it already has).
func (i *Instance) LogicalSlots(ctx context.Context) ([]LogicalSlot, error) {
	conn, err := i.connect(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return queryLogicalSlots(ctx, conn)
}

func queryLogicalSlots(ctx context.Context, conn *pgx.Conn) ([]LogicalSlot, error) {
	rows, err := conn.Query(ctx, `SELECT slot_name::text, plugin::text, database::text,
		coalesce(confirmed_flush_lsn, '0/0')::text, active
		FROM pg_replication_slots WHERE slot_type = 'logical' ORDER BY slot_name`)
	if err != nil {
		return nil, fmt.Errorf("pg: list logical slots: %w", err)
	}
	defer rows.Close()
	slots := []LogicalSlot{}
	for rows.Next() {
		var s LogicalSlot
		var lsn string
		if err := rows.Scan(&s.Name, &s.Plugin, &s.Database, &lsn, &s.Active); err != nil {
			return nil, fmt.Errorf("pg: list logical slots: %w", err)
		}
		if s.ConfirmedFlushLSN, err = ParseLSN(lsn); err != nil {
			return nil, err
		}
		slots = append(slots, s)
	}
	return slots, rows.Err()
}

// validSlotName reports whether name is a legal replication slot name
// ([a-z0-9_], at most 63 bytes); it also keeps names safe in file paths.
func validSlotName(name string) bool {
	if name == "" || len(name) > 63 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') {
			return false
		}
	}
	return true
}

// ReadSlotState reads a slot's on-disk state file from the running local
// server (pg_replslot/<name>/state, via pg_read_binary_file), to carry a
// logical slot from the primary to a standby with InstallSlotState.
func (i *Instance) ReadSlotState(ctx context.Context, name string) ([]byte, error) {
	return ReadSlotState(ctx, i.local(), name)
}

// ReadSlotState reads a slot's on-disk state file from the server at src
// (a superuser connection: pg_read_binary_file). The file is what the
// server last saved, never ahead of the slot in memory: its positions and
// catalog_xmin are at most as advanced as the slot's, which is the safe
// side for a copy.
func ReadSlotState(ctx context.Context, src ConnInfo, name string) ([]byte, error) {
	if !validSlotName(name) {
		return nil, fmt.Errorf("pg: bad slot name %q", name)
	}
	conn, err := connect(ctx, src)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var state []byte
	if err := conn.QueryRow(ctx, "SELECT pg_read_binary_file('pg_replslot/' || $1::text || '/state')", name).Scan(&state); err != nil {
		return nil, fmt.Errorf("pg: read slot %s state from %s: %w", name, src.Host, err)
	}
	return state, nil
}

// InstallSlotState writes a slot state file read from the primary into
// this stopped standby's pg_replslot, so that the slot exists after the
// next start. PostgreSQL 15 cannot create a logical slot on a standby
// (logical decoding in recovery came with 16), so this copy, as Patroni
// does it, is the only way to have a failover-ready logical slot there;
// it then moves forward with AdvanceSlot. The standby needs
// hot_standby_feedback = on and a physical slot on the primary so that the
// primary keeps the catalog rows the slot may still decode.
func (i *Instance) InstallSlotState(name string, state []byte) error {
	if !validSlotName(name) {
		return fmt.Errorf("pg: bad slot name %q", name)
	}
	if pid, err := i.postmasterPID(); err != nil || pid != 0 {
		if err == nil {
			err = fmt.Errorf("pg: install slot %s: %w", name, ErrRunning)
		}
		return err
	}
	dir := i.path(filepath.Join("pg_replslot", name))
	if err := i.mkdirOwned(dir, 0o700); err != nil {
		return err
	}
	return i.writeFile(filepath.Join(dir, "state"), state)
}

// AdvanceSlot moves a slot's position forward to lsn (clamped by the
// server to what it has flushed or replayed) with
// pg_replication_slot_advance; on PostgreSQL 15 this works for a logical
// slot on a standby too (it is fast-forward decoding of replayed WAL). A
// logical slot is advanced from a connection to its own database
// (database; "" for a physical slot). It returns the slot's new position.
func (i *Instance) AdvanceSlot(ctx context.Context, database, name string, lsn LSN) (LSN, error) {
	ci := i.local()
	if database != "" {
		ci.DBName = database
	}
	conn, err := connect(ctx, ci)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var end string
	if err := conn.QueryRow(ctx, "SELECT end_lsn::text FROM pg_replication_slot_advance($1, $2::text::pg_lsn)", name, lsn.String()).Scan(&end); err != nil {
		return 0, fmt.Errorf("pg: advance slot %s to %s: %w", name, lsn, err)
	}
	return ParseLSN(end)
}

// DropSlot drops a replication slot of the local server; a slot that does
// not exist is not an error.
func (i *Instance) DropSlot(ctx context.Context, name string) error {
	return i.exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, name)
}
