package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// defaultMaxLagOnFailover is Patroni's maximum_lag_on_failover default,
// used by /readiness when the cluster sets none.
const defaultMaxLagOnFailover = 1 << 20

// checkFunc decides a health check from a snapshot: 200 or 503, with a
// reason for a 503 (logged at debug, sent in the X-Pgherd-Reason header).
// A malformed query is answered 400.
type checkFunc func(s *Snapshot, now time.Time, q url.Values) (int, string)

// validateQuery rejects a malformed ?lag= or ?mode= before any check runs,
// so that a typo in a load balancer's check line is a loud 400 on every
// member rather than a silently ignored limit.
func validateQuery(q url.Values) error {
	if _, _, err := lagLimit(q); err != nil {
		return err
	}
	if m := q.Get("mode"); m != "" && m != "write" && m != "apply" {
		return fmt.Errorf("mode: %q, want write or apply", m)
	}
	return nil
}

// checks are the health-check endpoints, by path. GET answers the status
// JSON with the code, HEAD and OPTIONS only the code.
var checks = map[string]checkFunc{
	"/":                      checkPrimary,
	"/primary":               checkPrimary,
	"/master":                checkPrimary,
	"/read-write":            checkPrimary,
	"/leader":                checkLeader,
	"/standby-leader":        checkStandbyLeader,
	"/standby_leader":        checkStandbyLeader,
	"/replica":               withTags(checkReplica),
	"/read-only":             withTags(checkReadOnly),
	"/synchronous":           withTags(checkSync),
	"/sync":                  withTags(checkSync),
	"/asynchronous":          withTags(checkAsync),
	"/async":                 withTags(checkAsync),
	"/read-only-sync":        withTags(checkReadOnlySync),
	"/read-only-synchronous": withTags(checkReadOnlySync),
	"/health":                checkHealth,
	"/readiness":             checkReadiness,
}

// statusOnly are the checks that answer GET without a body, as Patroni's.
var statusOnly = map[string]bool{"/liveness": true, "/readiness": true}

func pass() (int, string) { return http.StatusOK, "" }

func unavailable(format string, args ...any) (int, string) {
	return http.StatusServiceUnavailable, fmt.Sprintf(format, args...)
}

// leaseValid tells whether the member holds leadership at now: the loop
// says it holds the leader key and the fencing deadline has not passed. A
// zero deadline is no lease. This is what makes /primary fail at once when
// the loop stalls: the snapshot is stale but the deadline moves on.
func leaseValid(s *Snapshot, now time.Time) (bool, string) {
	switch {
	case !s.IsLeader:
		return false, "not the leader"
	case s.LeaseDeadline.IsZero():
		return false, "leader without a lease deadline"
	case !now.Before(s.LeaseDeadline):
		return false, fmt.Sprintf("leader lease expired %s ago", now.Sub(s.LeaseDeadline).Round(time.Millisecond))
	}
	return true, ""
}

func running(s *Snapshot) (bool, string) {
	if !s.PostgresRunning || s.State != StateRunning {
		return false, fmt.Sprintf("postgres not running (state %q)", s.State)
	}
	return true, ""
}

// runningAs: running with the given role and a valid lease.
func runningAs(s *Snapshot, now time.Time, roles ...string) (int, string) {
	okRole := false
	for _, r := range roles {
		okRole = okRole || s.Role == r
	}
	if !okRole {
		return unavailable("role is %q", s.Role)
	}
	if ok, why := running(s); !ok {
		return unavailable("%s", why)
	}
	if ok, why := leaseValid(s, now); !ok {
		return unavailable("%s", why)
	}
	return pass()
}

// checkPrimary: running as the primary and holding an unexpired lease.
func checkPrimary(s *Snapshot, now time.Time, _ url.Values) (int, string) {
	return runningAs(s, now, RolePrimary)
}

// checkLeader: holding the leader lease, as primary or standby leader.
func checkLeader(s *Snapshot, now time.Time, _ url.Values) (int, string) {
	return runningAs(s, now, RolePrimary, RoleStandbyLeader)
}

// checkStandbyLeader: the leader of a standby cluster.
func checkStandbyLeader(s *Snapshot, now time.Time, _ url.Values) (int, string) {
	return runningAs(s, now, RoleStandbyLeader)
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "on", "yes", "1", "y", "t":
		return true
	}
	return false
}

// lagLimit reads ?lag=; ok is false when it is absent.
func lagLimit(q url.Values) (limit int64, ok bool, err error) {
	v, present := q["lag"]
	if !present || len(v) == 0 {
		return 0, false, nil
	}
	n, err := ParseSize(v[0])
	if err != nil {
		return 0, false, fmt.Errorf("lag: %w", err)
	}
	return n, true, nil
}

// replicationState is Patroni's replication_state of a replica.
func replicationState(s *Snapshot) string {
	if s.Role != RoleReplica || !s.PostgresRunning {
		return ""
	}
	if s.Streaming {
		return "streaming"
	}
	return "in archive recovery"
}

// checkReplica: a running, streaming replica without noloadbalance, within
// ?lag= and matching ?replication_state= and the ?tag_<key>=<value> filters.
func checkReplica(s *Snapshot, _ time.Time, q url.Values) (int, string) {
	limit, hasLimit, err := lagLimit(q)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	if s.Role != RoleReplica {
		return unavailable("role is %q", s.Role)
	}
	if ok, why := running(s); !ok {
		return unavailable("%s", why)
	}
	if !s.Streaming {
		return unavailable("not streaming from the leader")
	}
	if truthy(s.Tags["noloadbalance"]) {
		return unavailable("tagged noloadbalance")
	}
	if want := q.Get("replication_state"); want != "" && want != replicationState(s) {
		return unavailable("replication state is %q, not %q", replicationState(s), want)
	}
	if hasLimit {
		if s.LagBytes < 0 {
			return unavailable("replication lag unknown")
		}
		if s.LagBytes > limit {
			return unavailable("replication lag %d bytes exceeds %d", s.LagBytes, limit)
		}
	}
	return pass()
}

// matchTags applies the ?tag_<key>=<value> filters to a 200.
func matchTags(s *Snapshot, q url.Values) (int, string) {
	for k, vs := range q {
		key, isTag := strings.CutPrefix(k, "tag_")
		if !isTag || len(vs) == 0 {
			continue
		}
		have, set := s.Tags[key]
		if !set {
			return unavailable("tag %q not set", key)
		}
		if have != vs[0] {
			return unavailable("tag %q is %q, not %q", key, have, vs[0])
		}
	}
	return pass()
}

// withTags wraps a check with the tag filters, as Patroni applies them to
// every check but the leader ones.
func withTags(c checkFunc) checkFunc {
	return func(s *Snapshot, now time.Time, q url.Values) (int, string) {
		code, why := c(s, now, q)
		if code != http.StatusOK {
			return code, why
		}
		return matchTags(s, q)
	}
}

// checkReadOnly: the primary (or standby leader), or a replica that passes
// /replica.
func checkReadOnly(s *Snapshot, now time.Time, q url.Values) (int, string) {
	if code, _ := checkLeader(s, now, q); code == http.StatusOK {
		return pass()
	}
	return checkReplica(s, now, q)
}

// checkSync: a synchronous standby that passes /replica. Like Patroni it
// needs the DCS, since the sync key is read from it.
func checkSync(s *Snapshot, now time.Time, q url.Values) (int, string) {
	if !s.DCSReachable {
		return unavailable("DCS not reachable")
	}
	if !s.SyncStandby {
		return unavailable("not a synchronous standby")
	}
	return checkReplica(s, now, q)
}

// checkAsync: an asynchronous replica that passes /replica.
func checkAsync(s *Snapshot, now time.Time, q url.Values) (int, string) {
	if !s.DCSReachable {
		return unavailable("DCS not reachable")
	}
	if s.SyncStandby {
		return unavailable("a synchronous standby")
	}
	return checkReplica(s, now, q)
}

// checkReadOnlySync: the primary or a synchronous standby.
func checkReadOnlySync(s *Snapshot, now time.Time, q url.Values) (int, string) {
	if code, _ := checkLeader(s, now, q); code == http.StatusOK {
		return pass()
	}
	return checkSync(s, now, q)
}

// checkHealth: PostgreSQL is up and running, whatever its role.
func checkHealth(s *Snapshot, _ time.Time, _ url.Values) (int, string) {
	if ok, why := running(s); !ok {
		return unavailable("%s", why)
	}
	return pass()
}

// checkLiveness: the loop finished a pass within maxAge.
func checkLiveness(s *Snapshot, now time.Time, maxAge time.Duration) (int, string) {
	if s.LastLoop.IsZero() {
		return unavailable("the loop has not run yet")
	}
	if age := now.Sub(s.LastLoop); age > maxAge {
		return unavailable("the loop last ran %s ago (max %s)", age.Round(time.Millisecond), maxAge)
	}
	return pass()
}

// checkReadiness: the leader, running; or a replica streaming within
// ?lag= (default maximum_lag_on_failover). ?mode=write measures the lag
// from the received rather than the replayed WAL.
func checkReadiness(s *Snapshot, now time.Time, q url.Values) (int, string) {
	limit, hasLimit, err := lagLimit(q)
	if err != nil {
		return http.StatusBadRequest, err.Error()
	}
	mode := q.Get("mode")
	if mode != "" && mode != "write" && mode != "apply" {
		return http.StatusBadRequest, fmt.Sprintf("mode: %q, want write or apply", mode)
	}
	if code, _ := checkLeader(s, now, q); code == http.StatusOK {
		return pass()
	}
	if ok, why := running(s); !ok {
		return unavailable("%s", why)
	}
	if s.Role != RoleReplica {
		return unavailable("role is %q", s.Role)
	}
	if !s.Streaming {
		return unavailable("not streaming from the leader")
	}
	if !hasLimit {
		limit = s.Cluster.MaximumLagOnFailover
		if limit <= 0 {
			limit = defaultMaxLagOnFailover
		}
	}
	lag := s.LagBytes
	if mode == "write" && s.Cluster.LeaderLSN > 0 {
		lag = 0
		if s.Cluster.LeaderLSN > s.ReceivedLSN {
			lag = int64(s.Cluster.LeaderLSN - s.ReceivedLSN)
		}
	}
	if lag < 0 {
		return unavailable("replication lag unknown")
	}
	if lag > limit {
		return unavailable("replication lag %d bytes exceeds %d", lag, limit)
	}
	return pass()
}
