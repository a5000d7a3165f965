package agent

import (
	"context"
	"fmt"
	"os"

	"github.com/pgherd/pgherd/agent/backup"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// makeReplica makes the data directory of a new replica (or of one being
// reinitialized): from the repository's latest backup when the
// configuration says create_replica_from_backup, sparing the leader the
// copy, else (and whenever that restore fails, say before the first
// backup) with pg_basebackup from the leader. The caller configures and
// starts the standby, which replays the archive and then streams.
func (a *Agent) makeReplica(ctx context.Context, v ha.View, act ha.Action) error {
	moveAside := act.Kind == ha.Reinitialize
	if b := a.cfg.Backup; b != nil && b.CreateReplicaFromBackup {
		err := a.restoreReplica(ctx, moveAside)
		if err == nil {
			return nil
		}
		a.log.Warn("creating the replica from the repository failed; cloning from the leader instead", "leader", act.Target, "err", err)
	}
	return a.pg.Clone(ctx, a.connInfo(v, act.Target), pg.CloneOptions{Slot: pg.SlotName(a.cfg.Name), MoveAside: moveAside})
}

// restoreReplica restores the latest backup of the first repository that
// has one into a staging directory and installs it as the data directory,
// with this member's parameters.
func (a *Agent) restoreReplica(ctx context.Context, moveAside bool) error {
	b := a.cfg.Backup
	if err := b.Check(); err != nil {
		return err
	}
	dir, err := a.pg.StagingDir()
	if err != nil {
		return err
	}
	installed := false
	defer func() {
		if !installed {
			os.RemoveAll(dir) // never started: nothing to keep
		}
	}()
	opts := backup.RestoreOptions{DataDir: dir, Parallel: b.Parallel, Standby: true}
	st, err := b.OpenForRestore(ctx, a.log.With("component", "backup"), "", opts, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := st.Restore(ctx, opts)
	if err != nil {
		return err
	}
	if err := a.pg.InstallDataDir(ctx, dir, moveAside); err != nil {
		return err
	}
	installed = true
	a.log.Info("replica created from the repository", "backup", res.BackupID, "files", res.Written)
	if err := a.pg.SetParameters(ctx, a.parameters()); err != nil {
		return fmt.Errorf("parameters of the restored replica: %w", err)
	}
	return a.writeHBA()
}
