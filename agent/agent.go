package agent

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgherd/pgherd/agent/api"
	"github.com/pgherd/pgherd/agent/dcs"
	"github.com/pgherd/pgherd/agent/ha"
	"github.com/pgherd/pgherd/agent/pg"
)

// Agent is one member's HA agent. Its loop is the only goroutine that acts
// on PostgreSQL and on the leader key; the API goroutines read snapshots
// and post requests to the DCS.
type Agent struct {
	cfg     *Config
	log     *slog.Logger
	version string
	pg      *pg.Instance
	dcs     *dcs.Client
	api     *api.Server

	// origin is the monotonic origin of the View's instants.
	origin time.Time

	// Owned by the loop goroutine.
	leaderLease *dcs.Lease
	memberLease *dcs.Lease
	downSince   time.Duration
	lastConfig  dcs.Config
	lastState   *dcs.ClusterState
	lastStatus  pg.Status
	// lastIncomplete is the unfinished operation last seen to have left
	// the data directory unusable (logged once).
	lastIncomplete string
	rolesDone      bool
	lastDecided    string
	// slotCopyFailed is when copying logical slots from the leader last
	// failed (see syncLogicalSlots).
	slotCopyFailed time.Time
	// watchedPID is the postmaster watchPostmaster waits on.
	watchedPID int

	snapshot     atomic.Pointer[api.Snapshot]
	shuttingDown atomic.Bool
	// keepRunning: exit without stopping PostgreSQL or releasing the
	// leader key (an in-place agent upgrade: the next agent process takes
	// its own key over within the ttl).
	keepRunning atomic.Bool
	wake        chan struct{}
	// reloaded holds a configuration read on SIGHUP, for the loop to
	// take up at its next pass.
	reloaded atomic.Pointer[Config]
	// backupCfg is the backup configuration in force, for the WAL socket
	// (walsocket.go), which serves from its own goroutines.
	backupCfg atomic.Pointer[BackupConfig]
	// wal serves the WAL socket (walsocket.go).
	wal *walServer

	// actMu serializes the loop's actions with the API's restart/reload.
	actMu sync.Mutex
}

// New prepares an agent from its configuration.
func New(cfg *Config, log *slog.Logger, version string) *Agent {
	a := &Agent{
		cfg:     cfg,
		log:     log,
		version: version,
		origin:  time.Now(),
		wake:    make(chan struct{}, 1),
		pg:      cfg.Instance(log.With("component", "postgres")),
	}
	a.lastConfig = a.localConfig()
	a.snapshot.Store(&api.Snapshot{Member: cfg.Name, Role: api.RoleUninitialized, Version: version})
	return a
}

// Snapshot is what the API serves: the state at the end of the last pass.
func (a *Agent) Snapshot() api.Snapshot { return *a.snapshot.Load() }

// Shutdown asks the loop to stop cleanly: a primary stops PostgreSQL and
// hands the leader key over at once. With keepPostgres, the agent exits
// leaving PostgreSQL and its leader key alone (for an in-place upgrade of
// the agent: the next one takes the key over before the lease expires).
func (a *Agent) Shutdown(keepPostgres bool) {
	a.keepRunning.Store(keepPostgres)
	a.shuttingDown.Store(true)
	a.poke()
}

// Reload hands the loop a new configuration (SIGHUP): the HA settings,
// PostgreSQL parameters and pg_hba.conf take effect at the next pass
// without a restart. The identity (cluster, name, data directory, ports,
// etcd endpoints) cannot change this way: a new value there is logged and
// ignored until the agent restarts.
func (a *Agent) Reload(cfg *Config) {
	a.reloaded.Store(cfg)
	a.poke()
}

// takeReload applies a configuration handed over by Reload.
func (a *Agent) takeReload(ctx context.Context) {
	cfg := a.reloaded.Swap(nil)
	if cfg == nil {
		return
	}
	if cfg.Cluster != a.cfg.Cluster || cfg.Name != a.cfg.Name || cfg.Postgres.DataDir != a.cfg.Postgres.DataDir ||
		cfg.Postgres.Port != a.cfg.Postgres.Port {
		a.log.Warn("reload: the cluster, name, data directory and port only change with a restart of the agent")
	}
	a.cfg.HA = cfg.HA
	a.cfg.API.Token = cfg.API.Token
	a.cfg.Postgres.Parameters = cfg.Postgres.Parameters
	a.cfg.Postgres.HBA = cfg.Postgres.HBA
	a.cfg.Postgres.Superuser = cfg.Postgres.Superuser
	a.cfg.Postgres.Replication = cfg.Postgres.Replication
	a.cfg.Postgres.Roles = cfg.Postgres.Roles
	a.cfg.Postgres.Databases = cfg.Postgres.Databases
	a.rolesDone = false // the leader applies roles and databases again
	a.cfg.Backup = cfg.Backup
	a.backupCfg.Store(cfg.Backup)
	if ok, _ := a.pg.Initialized(); !ok {
		return
	}
	if err := a.pg.SetParameters(ctx, a.parameters()); err != nil {
		a.log.Warn("reload: applying parameters", "err", err)
	}
	if err := a.writeHBA(); err != nil {
		a.log.Warn("reload: writing pg_hba.conf", "err", err)
	}
	if a.cfg.TLS.On() {
		// PostgreSQL reads its certificate and key again on a reload
		// (pgherd apply reloads the agent after writing new ones).
		if running, _ := a.pg.Running(); running {
			if err := a.pg.Reload(ctx); err != nil {
				a.log.Warn("reload: PostgreSQL", "err", err)
			}
		}
	}
	a.log.Info("configuration reloaded")
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// now is the View's monotonic instant.
func (a *Agent) now() time.Duration { return time.Since(a.origin) }

// mono converts a lease deadline to the View's monotonic instants.
func (a *Agent) mono(t time.Time) time.Duration {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(a.origin)
	if d <= 0 {
		d = 1 // a deadline at or before the origin has passed, but is not "none"
	}
	return d
}

// localConfig is the dynamic configuration this agent's file asks for.
func (a *Agent) localConfig() dcs.Config {
	c := dcs.DefaultConfig()
	h := a.cfg.HA
	c.TTL = int(h.TTL.Round(time.Second) / time.Second)
	c.LoopWait = max(1, int(h.LoopWait.Round(time.Second)/time.Second))
	c.RetryTimeout = max(1, int(h.RetryTimeout.Round(time.Second)/time.Second))
	c.MaximumLagOnFailover = uint64(h.MaximumLagOnFailover)
	if h.SynchronousMode != "" {
		c.SynchronousMode = dcs.SyncMode(h.SynchronousMode)
	}
	if h.SynchronousNodeCount > 0 {
		c.SynchronousNodeCount = h.SynchronousNodeCount
	}
	c.SynchronousQuorum = h.SynchronousQuorum
	if h.SwitchoverTimeout.Duration > 0 {
		c.SwitchoverTimeout = max(1, int((h.SwitchoverTimeout.Duration+time.Second-1)/time.Second))
	}
	c.MasterStartTimeout = 0 // a crashed primary releases at once: failover beats a slow local restart
	c.UsePgRewind = true
	return c
}

// ttl and loopWait are the timings in force.
func (a *Agent) ttl() time.Duration {
	return time.Duration(max(2, a.lastConfig.TTL)) * time.Second
}

func (a *Agent) loopWait() time.Duration {
	// The file's loop_wait may be below a second; the DCS keeps seconds.
	return min(a.cfg.HA.LoopWait.Duration, time.Duration(max(1, a.lastConfig.LoopWait))*time.Second)
}

// safetyMargin is how long before the lease could expire on the server the
// primary stops writing: it covers the fence itself (tens of ms) and clock
// rate drift between hosts, with room to spare.
func (a *Agent) safetyMargin() time.Duration {
	return min(time.Second, a.ttl()/3)
}

// untilFence bounds an etcd call of a leader whose fencing deadline is
// still ahead by that deadline: while a pass waits on an unreachable etcd
// the loop cannot wake at the deadline (Decision.WakeAt), and the
// request timeout alone would let it fence seconds late, after a new
// primary was promoted. Past the deadline (or without a lease) ctx is
// returned as is: the decision fences first whatever etcd says, and a
// fenced member must still be able to reach etcd to recover.
func (a *Agent) untilFence(ctx context.Context) (context.Context, context.CancelFunc) {
	if a.leaderLease == nil {
		return ctx, func() {}
	}
	d := a.leaderLease.Deadline()
	if d.IsZero() || !time.Now().Before(d) {
		return ctx, func() {}
	}
	return context.WithDeadline(ctx, d)
}

// Run serves the API and runs the loop until ctx ends or Shutdown was
// called and the loop finished shutting down.
func (a *Agent) Run(ctx context.Context) error {
	cli, err := dcs.New(ctx, dcs.Options{
		Endpoints: a.cfg.Etcd.Endpoints,
		Cluster:   a.cfg.Cluster,
		// A request may take as long as the lease can wait for it (the
		// fencing deadline counts from when a renewal was sent, so a
		// slow answer is still safe): on a loaded host etcd answers in
		// up to a second, and a tighter bound turned slow renewals into
		// failed ones, and those into fencing (seen in the lab e2e).
		RequestTimeout: min(2*time.Second, 2*a.cfg.HA.TTL.Duration/3),
		TLS:            a.cfg.TLS.Client(),
		Logger:         a.log.With("component", "dcs"),
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	a.dcs = cli
	// The configuration may have changed while the agent was down: the
	// first pass applies it as a reload would.
	a.reloaded.CompareAndSwap(nil, a.cfg)
	a.adoptLease(ctx)

	a.api = &api.Server{Source: a, Control: &controller{a: a}, Token: a.cfg.API.Token, Log: a.log.With("component", "api"),
		MaxLoopAge: 3*a.cfg.HA.TTL.Duration + 10*time.Second}
	apiCtx, stopAPI := context.WithCancel(context.WithoutCancel(ctx))
	apiDone := make(chan error, 1)
	go func() { apiDone <- a.api.ListenAndServe(apiCtx, a.cfg.API.Listen, a.cfg.TLS.Server()) }()
	defer func() {
		stopAPI()
		<-apiDone
	}()

	a.backupCfg.Store(a.cfg.Backup)
	walCtx, stopWAL := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWAL()
	a.wal = &walServer{log: a.log.With("component", "wal"), cfg: a.backupCfg.Load}
	go a.serveWAL(walCtx)

	go func() {
		<-ctx.Done()
		a.Shutdown(a.keepRunning.Load())
	}()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	var leaderEvents, switchoverEvents, memberEvents <-chan dcs.LeaderEvent

	for {
		start := time.Now()
		dec, done := a.pass(context.Background())
		a.api.ObserveLoop(time.Since(start))
		if done {
			return nil
		}
		a.watchPostmaster(watchCtx)
		if leaderEvents == nil && a.lastState != nil {
			leaderEvents = a.dcs.WatchLeader(watchCtx, a.lastState.Revision+1)
		}
		if switchoverEvents == nil && a.lastState != nil {
			switchoverEvents = a.dcs.WatchSwitchover(watchCtx, a.lastState.Revision+1)
		}
		if memberEvents == nil && a.lastState != nil {
			memberEvents = a.dcs.WatchNewMembers(watchCtx, a.lastState.Revision+1)
		}
		wait := a.loopWait()
		if dec.WakeAt > 0 {
			if d := dec.WakeAt - a.now(); d < wait {
				wait = max(d, 0)
			}
		}
		timer := time.NewTimer(wait)
		select {
		case <-timer.C:
		case <-a.wake:
		case ev, ok := <-leaderEvents:
			if !ok {
				leaderEvents = nil
			} else if ev.Deleted {
				a.log.Info("leader key gone: deciding now", "former", ev.Name)
			}
		case ev, ok := <-switchoverEvents:
			// The target of a switchover passes at once: the leader is
			// stopping, and waits for the target's published position.
			if !ok {
				switchoverEvents = nil
			} else if !ev.Deleted {
				a.log.Info("switchover requested: deciding now")
			}
		case ev, ok := <-memberEvents:
			// A new member clones through the slot the leader creates
			// for it: the leader passes at once (afterPass), the others
			// pass early for nothing, which is cheap and rare.
			if !ok {
				memberEvents = nil
			} else if a.leaderLease != nil {
				a.log.Info("new member: creating its slot now", "member", ev.Name)
			}
		}
		timer.Stop()
	}
}

// watchPostmaster has the loop woken the moment the postmaster now
// running exits: a primary whose postgres crashed or was killed is
// restarted (or hands over) at once instead of at the next loop_wait.
func (a *Agent) watchPostmaster(ctx context.Context) {
	pid, err := a.pg.PostmasterPID()
	if err != nil || pid == 0 || pid == a.watchedPID {
		return
	}
	a.watchedPID = pid
	go func() {
		if err := pg.WaitExit(ctx, pid); err == nil {
			a.log.Info("postmaster exited: deciding now", "pid", pid)
			a.poke()
		} else if ctx.Err() == nil {
			a.log.Warn("cannot watch the postmaster: its exit is seen at the next loop", "pid", pid, "err", err)
		}
	}()
}

// pass gathers the view, decides and acts once. done reports that a
// requested shutdown is complete.
func (a *Agent) pass(ctx context.Context) (ha.Decision, bool) {
	a.actMu.Lock()
	defer a.actMu.Unlock()
	a.takeReload(ctx)
	v := a.observe(ctx)
	// The API serves what was just observed (a member promoted by the
	// previous pass answers /primary now, not after this pass's
	// bookkeeping); the end of the pass publishes it again with the
	// renewed lease.
	a.publishSnapshot(v)
	if a.shuttingDown.Load() && a.keepRunning.Load() {
		a.handOverLease()
		a.log.Info("exiting, leaving postgres and the leader key to the next agent")
		return ha.Decision{}, true
	}
	dec := ha.Decide(v)
	a.lookUpHistoryAhead(v)
	// Each decision is logged with its reason when it differs from the
	// previous pass's; a steady state (renewing, replicating) is not
	// repeated every loop_wait.
	if d := dec.String(); d != a.lastDecided {
		a.log.Info("decision", "decision", d)
		a.lastDecided = d
	} else {
		a.log.Debug("decision", "decision", d)
	}
	// A member without the leader key is published before acting: a
	// replica's start waits until it streams, which needs the slot the
	// leader creates only for the members it sees (an old primary
	// rejoining after a reboot or a partition would otherwise wait out
	// pg_ctl's timeout). A leader with a valid lease publishes after
	// acting, so that nothing stands between its decision and the
	// renewal of its lease.
	registered := false
	if v.DCS != nil && (a.leaderLease == nil || v.Now >= v.LeaseDeadline) {
		registered = true
		if err := a.registerMember(ctx, v); err != nil {
			a.log.Warn("publishing this member", "err", err)
		}
	}
	for _, act := range dec.Actions {
		if err := a.doBounded(ctx, v, act); err != nil {
			a.log.Warn("action failed", "action", act.String(), "err", err)
			break
		}
	}
	// A leader's bookkeeping is bounded by its (renewed) fencing
	// deadline: nothing after the renewal may delay the next pass, whose
	// renewal or fence is due by then.
	actx, cancel := a.untilFence(ctx)
	defer cancel()
	if v.DCS != nil && !registered {
		if err := a.registerMember(actx, v); err != nil {
			a.log.Warn("publishing this member", "err", err)
		}
	}
	a.afterPass(actx, v)
	if v.Self.ShuttingDown && a.leaderLease == nil {
		if up, err := a.pg.Running(); err == nil && !up {
			return dec, true
		}
	}
	return dec, false
}
