package api

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// knownRoles are exported by pgherd_role, 1 for the member's role and 0 for
// the others, so that a role change shows as two series moving.
var knownRoles = []string{RolePrimary, RoleReplica, RoleStandbyLeader, RoleUninitialized, RoleStopped, RoleFenced}

// Metrics is the agent's Prometheus registry. The snapshot gauges are read
// from the Source at scrape time, so they are never staler than the
// snapshot itself; the loop reports its pass durations with ObserveLoop.
type Metrics struct {
	Registry *prometheus.Registry
	loop     prometheus.Histogram
}

// NewMetrics builds a registry (no global state) with the snapshot
// collector, the loop duration histogram and the Go runtime and process
// collectors. now is the clock of pgherd_lease_remaining_seconds.
func NewMetrics(src Source, now func() time.Time) *Metrics {
	reg := prometheus.NewRegistry()
	loop := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "pgherd_loop_duration_seconds",
		Help:    "Duration of the HA loop's passes.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
	})
	reg.MustRegister(
		loop,
		&snapshotCollector{src: src, now: now},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return &Metrics{Registry: reg, loop: loop}
}

// ObserveLoop records the duration of one pass of the loop.
func (m *Metrics) ObserveLoop(d time.Duration) { m.loop.Observe(d.Seconds()) }

var (
	descInfo = prometheus.NewDesc("pgherd_info", "Always 1; labels name the member, its cluster and pgherd's version.",
		[]string{"member", "scope", "version"}, nil)
	descRole    = prometheus.NewDesc("pgherd_role", "1 for the member's current role, 0 for the others.", []string{"role"}, nil)
	descLeader  = prometheus.NewDesc("pgherd_is_leader", "1 if the member holds the leader key with an unexpired lease.", nil, nil)
	descRunning = prometheus.NewDesc("pgherd_postgres_running", "1 if PostgreSQL is running.", nil, nil)
	descTL      = prometheus.NewDesc("pgherd_timeline", "PostgreSQL timeline.", nil, nil)
	descLag     = prometheus.NewDesc("pgherd_replication_lag_bytes",
		"Replica: bytes behind the leader's last published WAL position; -1 unknown; 0 on the primary.", nil, nil)
	descLease = prometheus.NewDesc("pgherd_lease_remaining_seconds",
		"Seconds left before the leader lease's fencing deadline; 0 when not the leader.", nil, nil)
	descDCS     = prometheus.NewDesc("pgherd_dcs_reachable", "1 if the last pass reached etcd.", nil, nil)
	descPending = prometheus.NewDesc("pgherd_pending_restart", "1 if PostgreSQL needs a restart to apply its settings.", nil, nil)
	descPaused  = prometheus.NewDesc("pgherd_paused", "1 if the cluster is in maintenance mode.", nil, nil)
	descSync    = prometheus.NewDesc("pgherd_sync_standby", "1 if the member is a synchronous standby.", nil, nil)
	descXLog    = prometheus.NewDesc("pgherd_xlog_location_bytes",
		"Primary: current WAL position; replica: replayed WAL position.", nil, nil)
	descLoopAge = prometheus.NewDesc("pgherd_loop_last_run_timestamp_seconds",
		"Unix time when the loop last finished a pass; 0 never.", nil, nil)
)

// snapshotCollector turns the Source's Snapshot into gauges at scrape time.
type snapshotCollector struct {
	src Source
	now func() time.Time
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descInfo, descRole, descLeader, descRunning, descTL, descLag, descLease, descDCS, descPending, descPaused, descSync, descXLog, descLoopAge} {
		ch <- d
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Snapshot()
	now := c.now()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(descInfo, 1, s.Member, s.Cluster.Scope, s.Version)
	seen := false
	for _, r := range knownRoles {
		gauge(descRole, b2f(s.Role == r), r)
		seen = seen || s.Role == r
	}
	if !seen && s.Role != "" {
		gauge(descRole, 1, s.Role)
	}
	valid, _ := leaseValid(&s, now)
	gauge(descLeader, b2f(valid))
	gauge(descRunning, b2f(s.PostgresRunning))
	gauge(descTL, float64(s.Timeline))
	lag := float64(s.LagBytes)
	if s.Role != RoleReplica {
		lag = 0
	}
	gauge(descLag, lag)
	remaining := 0.0
	if valid {
		remaining = s.LeaseDeadline.Sub(now).Seconds()
	}
	gauge(descLease, remaining)
	gauge(descDCS, b2f(s.DCSReachable))
	gauge(descPending, b2f(s.PendingRestart))
	gauge(descPaused, b2f(s.Paused))
	gauge(descSync, b2f(s.SyncStandby))
	gauge(descXLog, float64(s.XLogLocation))
	last := 0.0
	if !s.LastLoop.IsZero() {
		last = float64(s.LastLoop.UnixNano()) / 1e9
	}
	gauge(descLoopAge, last)
}
