package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// doBounded carries out one action. For a leader with a valid lease, the
// quick ones (SQL settings, etcd writes) must end by the fencing
// deadline: the loop's next pass renews or fences by then. The actions
// that start, stop or promote PostgreSQL run to their end as before: cut
// short, they would leave PostgreSQL half-way (a promotion without its
// history entry, a start that each next pass finds past the deadline and
// fences, over and over on a slow host); a primary being started, stopped
// or promoted is fenced by the next pass if its deadline passed meanwhile.
func (a *Agent) doBounded(ctx context.Context, v ha.View, act ha.Action) error {
	switch act.Kind {
	case ha.SetSyncStandbyNames, ha.PublishSync, ha.ClearSwitchover, ha.SetInitialize, ha.RenewLeader, ha.FollowLeader:
		bctx, cancel := a.untilFence(ctx)
		defer cancel()
		return a.do(bctx, v, act)
	}
	return a.do(ctx, v, act)
}

// do carries out one action. An error stops the Decision's remaining
// actions; the next pass decides again from what is then true.
func (a *Agent) do(ctx context.Context, v ha.View, act ha.Action) error {
	me := a.cfg.Name
	switch act.Kind {
	case ha.Fence:
		return a.pg.Fence(ctx)
	case ha.Demote:
		a.checkpointBeforeStop(ctx, "switchover")
		// A clean shutdown: the standbys receive every WAL record, and the
		// leader key stays ours until the target has replayed it all. The
		// next pass runs at once, from the shutdown checkpoint, not after
		// the archiver's last push (pg.ShutDown).
		if err := a.pg.ShutDown(ctx); err != nil {
			return err
		}
		a.poke()
		return nil
	case ha.StopPostgres:
		return a.pg.Stop(ctx, pg.Fast)
	case ha.RestartPostgres:
		// The primary's restart (an adopted one, once): its shutdown
		// checkpoint and its start may outlast the lease, which is renewed
		// meanwhile, as for a start; otherwise the next pass would find
		// the deadline passed and fence the server it just restarted.
		a.checkpointBeforeStop(ctx, "restart")
		if err := a.renewingWhile(ctx, a.pg.Restart); err != nil {
			return err
		}
		a.poke() // as after a start: HAProxy sees it at the next pass
		return nil
	case ha.Promote:
		promote := a.pg.Promote
		if a.wal != nil {
			// The archive was looked up ahead (a switchover's target):
			// the promotion need not ask it again.
			if history, ok := a.wal.history.promotable(v.Self.Timeline); ok {
				promote = func(ctx context.Context) error { return a.pg.PromoteWithoutArchive(ctx, history) }
			}
		}
		err := a.renewingWhile(ctx, promote)
		if a.wal != nil {
			a.wal.history.forget()
		}
		if err != nil {
			return err
		}
		// The next pass, at once, tells HAProxy (the API's /primary) that
		// this member takes writes now, rather than after loop_wait.
		a.poke()
		a.recordPromotion(ctx, v)
		return nil
	case ha.StartPostgres:
		if act.Primary {
			if err := a.pg.ConfigurePrimary(ctx); err != nil {
				return err
			}
			if err := a.renewingWhile(ctx, a.pg.Start); err != nil {
				return err
			}
			a.poke() // as after a promotion
			return nil
		}
		if act.Target != "" {
			// A standby's start waits until it is consistent, which may
			// take a while of WAL replay.
			return a.keepBusy(ctx, v, "starting", false, func() error { return a.startStandby(ctx, v, act.Target) })
		}
		return a.pg.Start(ctx)
	case ha.FollowLeader:
		return a.pg.ConfigureStandby(ctx, a.connInfo(v, act.Target), pg.SlotName(me))
	case ha.Rewind:
		// pg_rewind reads the source's files through functions only a
		// superuser may call.
		src := a.connInfo(v, act.Target)
		src.User, src.Password = a.cfg.Postgres.Superuser.User, a.cfg.Postgres.Superuser.Password
		return a.keepBusy(ctx, v, "rewinding", false, func() error {
			if err := a.pg.Rewind(ctx, src); err != nil {
				return err
			}
			return a.startStandby(ctx, v, act.Target)
		})
	case ha.CloneFromLeader, ha.Reinitialize:
		return a.keepBusy(ctx, v, "cloning", false, func() error {
			if err := a.makeReplica(ctx, v, act); err != nil {
				return err
			}
			return a.startStandby(ctx, v, act.Target)
		})
	case ha.Bootstrap:
		return a.bootstrap(ctx, v)
	case ha.AcquireLeader:
		lease, err := a.freshLease(ctx)
		if err != nil {
			return err
		}
		if _, err := a.dcs.AcquireLeader(ctx, me, lease); err != nil {
			return err
		}
		a.leaderLease = lease
		return nil
	case ha.TakeOverLeader:
		lease, err := a.freshLease(ctx)
		if err != nil {
			return err
		}
		if _, err := a.dcs.TakeOverLeader(ctx, me, lease, act.Revision); err != nil {
			_ = lease.Revoke(ctx)
			return err
		}
		a.leaderLease = lease
		return nil
	case ha.RenewLeader:
		if a.leaderLease == nil {
			return errors.New("no leader lease to renew")
		}
		// A renewal decided on a valid lease (nothing fenced) must not
		// outlast the deadline, even one that passed since the decision:
		// the next pass fences at once. After a fence it may take the
		// client's full request timeout.
		rctx, cancel := ctx, context.CancelFunc(func() {})
		if v.LeaseDeadline > 0 && v.Now < v.LeaseDeadline {
			rctx, cancel = context.WithDeadline(ctx, a.leaderLease.Deadline())
		}
		_, err := a.leaderLease.Renew(rctx)
		cancel()
		if err != nil {
			if errors.Is(err, dcs.ErrLeaseExpired) {
				a.leaderLease = nil
			}
			return err
		}
		return nil
	case ha.ReleaseLeader:
		err := a.dcs.ReleaseLeader(ctx, me, a.leaderLease)
		a.leaderLease = nil
		if errors.Is(err, dcs.ErrNotLeader) {
			return nil
		}
		return err
	case ha.RaceInitialize:
		if !strings.HasPrefix(act.Value, ha.InitializePending) {
			// An adopted data directory is marked before it is
			// registered: from then on other members may clone and lead,
			// and the adopted primary is fenced like any other.
			if a.cfg.Postgres.Adopt == me {
				if err := a.pg.MarkAdoptRegistered(a.cfg.Cluster); err != nil {
					return err
				}
			}
			_, err := a.dcs.Initialize(ctx, act.Value, nil)
			return err
		}
		// The claim to bootstrap lives on the lease that will hold the
		// leader key: if this member dies before it stored the system
		// identifier, both expire together and another member may
		// bootstrap (docs/ha.md, "Bootstrap").
		lease, err := a.freshLease(ctx)
		if err != nil {
			return err
		}
		if _, err := a.dcs.Initialize(ctx, act.Value, lease); err != nil {
			if lease != a.leaderLease {
				_ = lease.Revoke(ctx)
			}
			return err
		}
		a.leaderLease = lease
		return nil
	case ha.SetInitialize:
		return a.dcs.SetInitialize(ctx, act.Value, act.Revision)
	case ha.SetSyncStandbyNames:
		_, err := a.pg.SetSynchronousStandbyNames(ctx, act.Value)
		return err
	case ha.PublishSync:
		return a.dcs.SetSync(ctx, me, dcs.Sync{Leader: me, Standbys: act.Standbys, Quorum: act.Quorum}, act.Revision)
	case ha.ClearSwitchover:
		return a.dcs.ClearSwitchover(ctx, act.Revision, act.Value)
	}
	return fmt.Errorf("unknown action %q", act.Kind)
}

// startStandby configures the data directory as a standby of target and
// starts it (after a clone or a rewind).
//
// The member's own parameters and pg_hba.conf are written first: a clone
// or a rewind copied the leader's, which may name the leader's files (its
// TLS certificate) or predate a reload.
func (a *Agent) startStandby(ctx context.Context, v ha.View, target string) error {
	if err := a.pg.SetParameters(ctx, a.parameters()); err != nil {
		return fmt.Errorf("parameters of the standby: %w", err)
	}
	if err := a.writeHBA(); err != nil {
		return err
	}
	if err := a.pg.ConfigureStandby(ctx, a.connInfo(v, target), pg.SlotName(a.cfg.Name)); err != nil {
		return err
	}
	return a.pg.Start(ctx)
}

// freshLease grants a new leader lease; an old one is dropped (it cannot
// be renewed or the decision would not have asked for a new key).
func (a *Agent) freshLease(ctx context.Context) (*dcs.Lease, error) {
	if a.leaderLease != nil {
		if _, err := a.leaderLease.Renew(ctx); err == nil {
			return a.leaderLease, nil
		}
		a.leaderLease = nil
	}
	return a.dcs.GrantLease(ctx, a.ttl(), a.safetyMargin())
}

// connInfo is how to replicate from member name.
func (a *Agent) connInfo(v ha.View, name string) pg.ConnInfo {
	ci := pg.ConnInfo{
		User:           a.cfg.Postgres.Replication.User,
		Password:       a.cfg.Postgres.Replication.Password,
		AppName:        a.cfg.Name,
		ConnectTimeout: 3,
	}
	if a.cfg.TLS.On() {
		ci.SSLMode, ci.SSLRootCert = "verify-full", a.cfg.TLS.CAFile
	}
	if v.DCS != nil {
		if m, ok := v.DCS.Member(name); ok {
			if u, err := url.Parse(m.ConnURL); err == nil {
				ci.Host = u.Hostname()
				ci.Port, _ = strconv.Atoi(u.Port())
			}
		}
	}
	return ci
}

// bootstrap creates the cluster: initdb with checksums, this spec's
// pg_hba.conf and parameters, then starts it as primary (the leader pass
// then sets up the roles, see ensureRoles).
func (a *Agent) bootstrap(ctx context.Context, v ha.View) error {
	ok, err := a.pg.Initialized()
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	if ok {
		return nil
	}
	// initdb may outlast the ttl on a slow disk: the leader lease, which
	// also holds the initialize claim, is renewed meanwhile. Nothing
	// runs that could accept a write, so renewing from aside is safe.
	if err := a.keepBusy(ctx, v, "bootstrapping", true, func() error {
		if err := a.waitRepositories(ctx); err != nil {
			return err
		}
		return a.pg.InitDB(ctx, pg.InitOptions{Parameters: a.parameters()})
	}); err != nil {
		return err
	}
	if err := a.writeHBA(); err != nil {
		return err
	}
	if err := a.pg.ConfigurePrimary(ctx); err != nil {
		return err
	}
	// initdb took a while: renew so that the new primary starts well
	// inside its lease.
	if a.leaderLease == nil {
		return errors.New("bootstrap without the leader key")
	}
	if _, err := a.leaderLease.Renew(ctx); err != nil {
		return err
	}
	// The first start of the brand-new cluster keeps the lease, and with
	// it the initialize claim, alive too (as any start of a primary does,
	// see renewingWhile): on a slow host it may outlast the ttl, and a
	// claim lost here leaves an initdb'd directory that can never join.
	return a.renewingWhile(ctx, a.pg.Start)
}

// repositoryWait bounds how long a bootstrap waits for its backup
// repositories to be initialized: past it, the cluster is created anyway,
// since PostgreSQL keeps each segment it failed to archive and retries
// it, and a repository that is never initialized must not hold the
// cluster back forever.
const repositoryWait = 2 * time.Minute

// waitRepositories waits, before initdb, until every backup repository is
// initialized: archiving starts with the first segment, and a repository
// shared by the hosts (SFTP, S3) is initialized by the apply from the
// first PostgreSQL host only, whose agent may lose the race to bootstrap
// to another host's. Each push into it before then fails (and counts in
// pg_stat_archiver). A repository that cannot be checked (unreachable) is
// not waited for.
func (a *Agent) waitRepositories(ctx context.Context) error {
	if a.wal == nil {
		return nil
	}
	ss, _, err := a.wal.kept()
	if err != nil { // no backup section
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, repositoryWait)
	defer cancel()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for logged := false; ; logged = true {
		names, err := ss.Uninitialized(wctx)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			a.log.Warn("bootstrap: cannot check the backup repositories; bootstrapping without waiting", "err", err)
			return nil
		case len(names) == 0:
			return nil
		case !logged:
			a.log.Info("bootstrap: waiting for the backup repositories to be initialized: archiving starts with "+
				"the first segment; the apply initializes shared repositories from the first PostgreSQL host",
				"repositories", strings.Join(names, ", "), "at_most", repositoryWait)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			a.log.Warn("bootstrap: the backup repositories are still not initialized; bootstrapping anyway "+
				"(PostgreSQL retries archiving until they are)", "repositories", strings.Join(names, ", "), "waited", repositoryWait)
			return nil
		case <-tick.C:
		}
		if a.shuttingDown.Load() {
			return errors.New("bootstrap: shutting down while waiting for the backup repositories")
		}
	}
}

// ensureRoles gives the superuser its password, creates the replication
// role and the spec's roles and databases, once per agent process,
// primary and configuration: idempotent, so a bootstrap interrupted before
// it is completed by the next leader pass.
func (a *Agent) ensureRoles(ctx context.Context) error {
	su, r := a.cfg.Postgres.Superuser, a.cfg.Postgres.Replication
	if err := a.pg.EnsureRole(ctx, su.User, su.Password, "SUPERUSER LOGIN"); err != nil {
		return err
	}
	if err := a.pg.EnsureRole(ctx, r.User, r.Password, "REPLICATION LOGIN"); err != nil {
		return err
	}
	return a.pg.EnsureObjects(ctx, a.cfg.Postgres.Roles, a.cfg.Postgres.Databases)
}

// parameters are the spec's PostgreSQL parameters over what HA needs.
func (a *Agent) parameters() map[string]string {
	params := maps.Clone(requiredParameters)
	maps.Copy(params, a.cfg.TLS.postgresParameters())
	maps.Copy(params, a.cfg.Postgres.Parameters)
	return params
}

// requiredParameters are what HA needs unless the spec says otherwise.
var requiredParameters = map[string]string{
	"wal_level":             "replica",
	"hot_standby":           "on",
	"max_wal_senders":       "10",
	"max_replication_slots": "10",
	"wal_keep_size":         "128MB",
	"hot_standby_feedback":  "on",
	"wal_log_hints":         "on",
	// A replica told to follow a new primary reconnects within a second,
	// not PostgreSQL's default five.
	"wal_retrieve_retry_interval": "1s",
}

// restartForReplication are the parameters of requiredParameters that
// take effect only at a restart; an adopted primary restarts (once) when
// one of them waits for it.
var restartForReplication = map[string]bool{
	"wal_level": true, "max_wal_senders": true, "max_replication_slots": true, "wal_log_hints": true,
}

// writeHBA writes pg_hba.conf from the configuration, or a default that
// lets the members replicate and clients log in with passwords.
func (a *Agent) writeHBA() error {
	hba := a.cfg.Postgres.HBA
	if hba == "" {
		hba = "local all all peer\n" +
			"host replication " + a.cfg.Postgres.Replication.User + " 0.0.0.0/0 scram-sha-256\n" +
			"host all all 0.0.0.0/0 scram-sha-256\n"
	}
	return a.pg.WriteHBA(context.Background(), hba)
}

// recordPromotion appends the new timeline to the history key, so that a
// former primary, or a replica that replayed past the switch point, can
// tell whether it diverged. The switch point is PostgreSQL's own, from the
// new timeline's history file: the replay position observed before the
// promotion may fall short of it, and then every replica that replayed the
// same WAL would look diverged.
func (a *Agent) recordPromotion(ctx context.Context, v ha.View) {
	st, err := a.pg.Status(ctx)
	if err != nil || v.DCS == nil {
		return
	}
	switchLSN, err := a.pg.SwitchPoint(st.TimeLine)
	if err != nil {
		a.log.Warn("recording the promotion in the history key", "err", err)
		return
	}
	h := append([]dcs.HistoryEntry(nil), v.DCS.History...)
	h = append(h, dcs.HistoryEntry{Timeline: st.TimeLine, LSN: uint64(switchLSN), Reason: "promoted", Time: time.Now().UTC(), Leader: a.cfg.Name})
	if err := a.dcs.SetHistory(ctx, a.cfg.Name, h, v.DCS.HistoryRevision); err != nil {
		a.log.Warn("recording the promotion in the history key", "err", err)
	}
}

// afterPass does the bookkeeping every pass (pass publishes the member
// before acting): as leader, keep the slots, the status key and the
// dynamic configuration.
func (a *Agent) afterPass(ctx context.Context, v ha.View) {
	defer a.publishSnapshot(v)
	if v.DCS == nil {
		return
	}
	isLeader := a.leaderLease != nil && v.DCS.Leader != nil && v.DCS.Leader.Name == a.cfg.Name
	if !isLeader && v.Self.Role == ha.RoleReplica && v.DCS.Leader != nil && v.Self.Following == v.DCS.Leader.Name {
		a.syncLogicalSlots(ctx, v)
	}
	if !isLeader || a.lastStatus.State != pg.StateRunning || a.lastStatus.InRecovery {
		return
	}
	if !a.rolesDone {
		if err := a.ensureRoles(ctx); err != nil {
			a.log.Warn("setting up the superuser and replication roles", "err", err)
		} else {
			a.rolesDone = true
		}
	}
	// The logical slots as observed at the start of this pass: at most
	// as advanced as now, the safe side for the replicas' copies.
	status := dcs.Status{LastLSN: uint64(a.lastStatus.WriteLSN), Slots: map[string]dcs.LogicalSlot{}}
	for _, s := range a.lastStatus.LogicalSlots {
		status.Slots[s.Name] = dcs.LogicalSlot{Plugin: s.Plugin, Database: s.Database, ConfirmedFlush: uint64(s.ConfirmedFlushLSN)}
	}
	if err := a.dcs.SetStatus(ctx, a.cfg.Name, status); err != nil {
		a.log.Debug("publishing the status key", "err", err)
	}
	var slots []string
	for _, m := range v.DCS.Members {
		if m.Name != a.cfg.Name {
			slots = append(slots, pg.SlotName(m.Name))
		}
	}
	if err := a.pg.EnsureSlots(ctx, slots); err != nil {
		a.log.Warn("replication slots", "err", err)
	}
	if want := a.localConfig(); v.DCS.ConfigRevision == 0 || !sameConfig(v.DCS.Config, want) {
		want.Paused = v.DCS.Config.Paused
		if err := a.dcs.SetConfig(ctx, want, v.DCS.ConfigRevision); err != nil {
			a.log.Warn("publishing the dynamic configuration", "err", err)
		}
	}
}

// sameConfig compares the settings the agent's file decides.
func sameConfig(have, want dcs.Config) bool {
	want.Paused = have.Paused
	return have == want
}

func (a *Agent) registerMember(ctx context.Context, v ha.View) error {
	return a.publishMember(ctx, a.member(v))
}

// publishMember writes m on the member lease, renewing it first (or
// granting a new one when it expired).
func (a *Agent) publishMember(ctx context.Context, m dcs.Member) error {
	if a.memberLease != nil {
		if _, err := a.memberLease.Renew(ctx); err != nil {
			a.memberLease = nil
		}
	}
	if a.memberLease == nil {
		l, err := a.dcs.GrantLease(ctx, a.ttl(), 0)
		if err != nil {
			return err
		}
		a.memberLease = l
	}
	return a.dcs.RegisterMember(ctx, m, a.memberLease)
}

// checkpointBeforeStop runs a checkpoint while writes still flow, so that
// the shutdown checkpoint, which runs after writes stop, has little left
// to flush: the write pause of a switchover or a restart shrinks by the
// time a checkpoint takes (1 s and more on a busy host, far more after a
// bulk load). It is only an optimisation: the stop goes on without it.
// The lease is renewed meanwhile: a checkpoint may outlast it.
func (a *Agent) checkpointBeforeStop(ctx context.Context, why string) {
	if err := a.renewingWhile(ctx, a.pg.Checkpoint); err != nil {
		a.log.Warn("checkpoint before the "+why+"'s shutdown", "err", err)
	}
}

// renewingWhile runs fn (starting, restarting or promoting PostgreSQL as
// the leader, which crash recovery, a shutdown checkpoint or a loaded host
// can stretch past the lease's deadline) and meanwhile renews the leader
// lease every loop_wait, so that a primary which has just started is not
// fenced at once for having waited on itself. The renewals are this loop's own, made while it waits;
// the deadline still moves only with an acknowledged renewal, and each is
// bounded by it, so the fencing invariant holds. Without a lease, fn runs
// alone; once the deadline has passed it renews no more.
func (a *Agent) renewingWhile(ctx context.Context, fn func(context.Context) error) error {
	if a.leaderLease == nil {
		return fn(ctx)
	}
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	tick := time.NewTicker(a.loopWait())
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			return err
		case <-tick.C:
			if !time.Now().Before(a.leaderLease.Deadline()) {
				continue // past it, the next pass fences first
			}
			rctx, cancel := a.untilFence(ctx)
			if _, err := a.leaderLease.Renew(rctx); err != nil {
				a.log.Warn("renewing the leader lease while postgres starts", "err", err)
			}
			cancel()
		}
	}
}
