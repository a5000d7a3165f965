package modules

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// ErrGate is wrapped by the error of a rolling step whose gate failed: the
// cluster is not in a state where the step is safe. Nothing was changed on
// the member; once the cause is gone, the next apply goes on from there.
var ErrGate = errors.New("gate failed")

// Rolling defaults.
const (
	// DefaultRollMaxLag is the replication lag, in bytes, above which a
	// rolling step waits: a replica further behind is not restarted and
	// not switched over to.
	DefaultRollMaxLag = 16 << 20
	// DefaultRollMaxTransactionAge is the age above which an open
	// transaction on the member stops the step (a restart or a switchover
	// would cut it).
	DefaultRollMaxTransactionAge = 5 * time.Minute
)

// PostgresRoll is one member's turn in a rolling procedure of the HA
// cluster: a minor upgrade (the packages of postgresql-<major> moved to
// Version) and a restart onto the new binaries, or a restart for the
// parameters that wait for one (pending_restart). The compiler puts one per
// member in a serial phase, replicas first and the leader last; its address
// is "postgres_roll".
//
// The probe reads the packages (as Packages does), the installed server
// binary's version and, over the local socket, the running server's
// version, whether it is in recovery, and the parameters pending a restart.
// Steps, in order, each acting through the agents' REST API (reached from
// the host itself, with Token):
//
//  1. gates: the cluster has a leader, every expected member runs or
//     streams, no replica lags more than MaxLagBytes, nothing is paused or
//     scheduled, and no transaction on this member is older than
//     MaxTransactionAge;
//  2. on the leader only: a switchover to the most caught-up streaming
//     replica that already runs the target version (the agent stops the
//     primary cleanly and promotes the target once it has replayed every
//     WAL record, so no acknowledged write is lost);
//  3. the packages (apt-mark unhold, apt-get install =Version, hold);
//  4. POST /restart to the member's agent, then a wait until the member
//     streams again from the leader, runs the target version and has
//     nothing pending.
//
// A failing gate is an error wrapping ErrGate that says what to fix; the
// steps of earlier members stay done, and the next apply resumes with the
// members that still differ.
type PostgresRoll struct {
	// Member is the agent's member name (the host's name in the spec).
	Member string `json:"member"`
	// Members are every expected member of the cluster.
	Members []string `json:"members"`
	// Major and Version: postgresql-<Major> at Debian version Version
	// ("15.20-0+deb12u1"); an empty Version keeps what is installed.
	Major   int    `json:"major"`
	Version string `json:"version,omitempty"`
	Hold    bool   `json:"hold,omitempty"`
	// Port and SocketDir reach the local server (defaults 5432 and
	// /var/run/postgresql).
	Port      int    `json:"port,omitempty"`
	SocketDir string `json:"socket_dir,omitempty"`
	// APIPort is the agents' REST API port; Token authorizes the write
	// verbs (never printed).
	APIPort int    `json:"api_port"`
	Token   string `json:"-"`
	// TLSCA, when set, are the CAs the agents' HTTPS API is verified
	// with; the local agent is then reached at HostAddress, which its
	// certificate names.
	TLSCA       []*x509.Certificate `json:"-"`
	HostAddress string              `json:"host_address,omitempty"`
	// SuperuserPassword lets the leader's step read the version the
	// replicas run (over TCP from the leader's host; never printed).
	SuperuserPassword string `json:"-"`
	// MaxLagBytes and MaxTransactionAge are the gates (defaults
	// DefaultRollMaxLag, DefaultRollMaxTransactionAge).
	MaxLagBytes       int64         `json:"max_lag_bytes,omitempty"`
	MaxTransactionAge time.Duration `json:"max_transaction_age,omitempty"`
	// WatchList: the resources of the host whose change may leave a
	// parameter pending a restart (the agent's configuration).
	WatchList []string `json:"watch,omitempty"`
	// Timeout bounds each wait (default 5 minutes).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Address implements Resource.
func (r PostgresRoll) Address() string { return "postgres_roll" }

// Watches implements Notified.
func (r PostgresRoll) Watches() []string { return r.WatchList }

func (r PostgresRoll) packages() Packages {
	major := strconv.Itoa(r.Major)
	return Packages{Name: "postgres", Packages: []Package{
		{Name: "postgresql-" + major, Version: r.Version, Hold: r.Hold},
		{Name: "postgresql-client-" + major, Version: r.Version, Hold: r.Hold},
	}}
}

func (r PostgresRoll) psql(sql string) string {
	return executors.Join("runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-q", "-F", "|",
		"-h", orDefault(r.SocketDir, "/var/run/postgresql"), "-p", strconv.Itoa(cmpOr(r.Port, 5432)), "-d", "postgres", "-c", sql)
}

const rollLiveQuery = "select current_setting('server_version_num'), pg_is_in_recovery(), " +
	"coalesce((select string_agg(name, ',' order by name) from pg_settings where pending_restart), '')"

// Probe implements Resource: the Packages probe, then "#bin=<postgres
// --version>" and "#live=<version_num>|<in recovery t/f>|<pending,...>"
// ("#live=" when the server does not answer).
func (r PostgresRoll) Probe() string {
	bin := executors.Quote(fmt.Sprintf("/usr/lib/postgresql/%d/bin/postgres", r.Major))
	return r.packages().Probe() +
		"printf '#bin=%s\\n' \"$(" + bin + " --version 2>/dev/null)\"\n" +
		"printf '#live=%s\\n' \"$(" + r.psql(rollLiveQuery) + " 2>/dev/null)\"\n"
}

// rollFact is what the probe found.
type rollFact struct {
	binary      string // "15.18": the installed server binary; "" when none
	up          bool
	live        string // "15.18": the running server
	inRecovery  bool
	pending     []string
	packageDiff planner.Change
	pkgSteps    []Step
}

// pgVersionNum turns server_version_num (150018) into "15.18".
func pgVersionNum(num string) (string, error) {
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 100000 {
		return "", fmt.Errorf("server_version_num %q: %w", num, ErrProbe)
	}
	return fmt.Sprintf("%d.%d", n/10000, n%10000), nil
}

// upstreamVersion is the PostgreSQL version of a Debian version
// ("15.20-0+deb12u1" → "15.20").
func upstreamVersion(deb string) string {
	_, up, _ := splitDebVersion(deb)
	return up
}

func (r PostgresRoll) parse(f Fact) (rollFact, error) {
	var rf rollFact
	addr := r.Address()
	if f.ExitCode != 0 {
		return rf, probeFailed(addr, f)
	}
	var err error
	installed := ""
	for _, line := range strings.Split(string(f.Stdout), "\n") {
		switch {
		case strings.HasPrefix(line, fmt.Sprintf("postgresql-%d\t", r.Major)):
			installed = strings.SplitN(line, "\t", 3)[1]
		case strings.HasPrefix(line, "#bin="):
			// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"
			if fs := strings.Fields(strings.TrimPrefix(line, "#bin=")); len(fs) >= 3 {
				rf.binary = fs[2]
			}
		case strings.HasPrefix(line, "#live="):
			v := strings.TrimPrefix(line, "#live=")
			if v == "" {
				continue
			}
			fs := strings.Split(v, "|")
			if len(fs) != 3 {
				return rf, fmt.Errorf("%s: unexpected server answer %q: %w", addr, v, ErrProbe)
			}
			if rf.live, err = pgVersionNum(fs[0]); err != nil {
				return rf, fmt.Errorf("%s: %w", addr, err)
			}
			rf.up, rf.inRecovery = true, fs[1] == "t"
			if fs[2] != "" {
				rf.pending = strings.Split(fs[2], ",")
			}
		}
	}
	// Only another version is the rolling procedure's: holds are the host
	// phase's (Packages).
	if r.Version != "" && installed != "" && installed != r.Version {
		if rf.packageDiff, rf.pkgSteps, err = r.packages().Diff(f); err != nil {
			return rf, err
		}
	}
	return rf, nil
}

// Diff implements Resource.
func (r PostgresRoll) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: r.Address(), Action: planner.NoOp}
	rf, err := r.parse(f)
	if err != nil {
		return ch, nil, err
	}
	if rf.binary == "" {
		// Not installed yet: the host phase installs Version.
		return ch, nil, nil
	}
	target := rf.binary
	if r.Version != "" && !rf.packageDiff.IsNoOp() {
		target = upstreamVersion(r.Version)
	}
	restart := rf.up && (rf.live != target || len(rf.pending) > 0)
	if rf.packageDiff.IsNoOp() && !restart {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	var what []string
	if !rf.packageDiff.IsNoOp() {
		ch.Attrs = append(ch.Attrs, rf.packageDiff.Attrs...)
		what = append(what, "upgrade the packages")
	}
	if restart {
		if rf.live != target {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "running_version", Before: rf.live, After: target})
		}
		if len(rf.pending) > 0 {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "pending_restart", Before: strings.Join(rf.pending, ", "), After: "(none)"})
		}
		what = append(what, "restart onto "+target)
	}
	role := "replica"
	switch {
	case !rf.up:
		role = "stopped"
		ch.Impact = "no client impact (the server is not running)"
	case rf.inRecovery:
		ch.Impact = "restart: this replica's sessions are cut"
	default:
		role = "primary"
		what = append([]string{"switch over to the most caught-up replica running " + target}, what...)
		ch.Impact = "switchover: writes pause while the primary role moves"
	}
	ch.Reason = role + ": " + strings.Join(what, ", then ")
	var steps []Step
	if rf.up {
		steps = append(steps, Step{Desc: "gates: cluster health, replication lag, long transactions",
			Run: func(ctx context.Context, h Host) error { return r.gate(ctx, h) }})
	}
	if rf.up && !rf.inRecovery {
		steps = append(steps, Step{Desc: "switch over to the most caught-up replica running " + target,
			Run: func(ctx context.Context, h Host) error { return r.handOver(ctx, h, target) }})
	}
	steps = append(steps, rf.pkgSteps...)
	if restart {
		steps = append(steps, Step{Desc: "restart PostgreSQL through the agent and wait until it streams again",
			Run: func(ctx context.Context, h Host) error { return r.restart(ctx, h, target) }})
	}
	return ch, steps, nil
}

// Notify implements Notified: the watched configuration changed, so a
// parameter may now wait for a restart; the step probes again and rolls
// when it does.
func (r PostgresRoll) Notify(changed []string) (planner.Change, []Step) {
	ch := planner.Change{Resource: r.Address(), Action: planner.Update,
		Reason: "restart in turn if a changed parameter needs one",
		Impact: "a restart, or a switchover on the leader, when a parameter needs one"}
	return ch, []Step{{Desc: "probe again and roll if a parameter waits for a restart", Run: func(ctx context.Context, h Host) error {
		res, err := h.Run(ctx, r.Probe(), nil)
		if err != nil {
			return err
		}
		_, steps, err := r.Diff(Fact{Stdout: res.Stdout, ExitCode: res.ExitCode})
		if err != nil {
			return err
		}
		for _, s := range steps {
			if err := RunStep(ctx, h, s); err != nil {
				return fmt.Errorf("%s: %w", s.Desc, err)
			}
		}
		return nil
	}}}
}

// RunStep runs one step on h; a command's non-zero exit is an error.
func RunStep(ctx context.Context, h Host, s Step) error {
	switch {
	case s.Cmd != "" && s.Run != nil:
		return fmt.Errorf("step %q has both Cmd and Run", s.Desc)
	case s.Cmd != "":
		res, err := h.Run(ctx, s.Cmd, nil)
		if err != nil {
			return err
		}
		return res.Err(h.Name(), s.Cmd)
	case s.Run != nil:
		return s.Run(ctx, h)
	default:
		return fmt.Errorf("step %q has neither Cmd nor Run", s.Desc)
	}
}

func (r PostgresRoll) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return 5 * time.Minute
}

func (r PostgresRoll) maxLag() int64 {
	if r.MaxLagBytes > 0 {
		return r.MaxLagBytes
	}
	return DefaultRollMaxLag
}

func (r PostgresRoll) maxXactAge() time.Duration {
	if r.MaxTransactionAge > 0 {
		return r.MaxTransactionAge
	}
	return DefaultRollMaxTransactionAge
}

// Dialer is a host that opens TCP connections from itself
// (executors.SSH): the rolling steps reach the agents' API through it.
type Dialer interface {
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// agentAPI talks to the agents' REST API from a host.
type agentAPI struct {
	http  *http.Client
	local string // "http://127.0.0.1:8008", "https://10.0.0.1:8008"
	token string
}

func (r PostgresRoll) api(h Host) (*agentAPI, error) {
	d, ok := h.(Dialer)
	if !ok {
		return nil, fmt.Errorf("rolling steps need a host reached over SSH (to call the agents' API from it): %w", ErrInvalid)
	}
	if r.Token == "" {
		return nil, fmt.Errorf("rolling steps need the cluster's api_token (ha { api_token = ... }): %w", ErrInvalid)
	}
	a := &agentAPI{
		http: &http.Client{Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
			DisableKeepAlives: true,
		}, Timeout: 2 * time.Minute},
		local: "http://127.0.0.1:" + strconv.Itoa(r.APIPort),
		token: r.Token,
	}
	if len(r.TLSCA) > 0 {
		// The host's own address, which its certificate names.
		roots := x509.NewCertPool()
		for _, c := range r.TLSCA {
			roots.AddCert(c)
		}
		a.http.Transport.(*http.Transport).TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
		a.local = "https://" + net.JoinHostPort(r.HostAddress, strconv.Itoa(r.APIPort))
	}
	return a, nil
}

// rollCluster is the part of GET /cluster the rolling steps read.
type rollCluster struct {
	Leader              string              `json:"leader"`
	Pause               bool                `json:"pause"`
	ScheduledSwitchover json.RawMessage     `json:"scheduled_switchover"`
	SynchronousMode     bool                `json:"synchronous_mode"`
	SyncStandbys        []string            `json:"sync_standbys"`
	Members             []rollClusterMember `json:"members"`
}

type rollClusterMember struct {
	Name   string            `json:"name"`
	Role   string            `json:"role"`
	State  string            `json:"state"`
	APIURL string            `json:"api_url"`
	Host   string            `json:"host"`
	Port   int               `json:"port"`
	Lag    any               `json:"lag"` // bytes, or "unknown"
	Tags   map[string]string `json:"tags"`
}

// rollMember is the part of GET /patroni the rolling steps read.
type rollMember struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	ReplicationState string `json:"replication_state"`
}

func (a *agentAPI) do(ctx context.Context, method, url string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if method != http.MethodGet {
		req.Header.Set("Authorization", "Bearer "+a.token)
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	// The health checks answer 503 with a status body; the body counts.
	if method != http.MethodGet && resp.StatusCode/100 != 2 {
		return &apiError{code: resp.StatusCode, msg: fmt.Sprintf("%s %s: %s: %s", method, url, resp.Status, strings.TrimSpace(string(b)))}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: %s: %w", method, url, resp.Status, err)
	}
	return nil
}

// apiError is a write verb the agent did not answer with 2xx.
type apiError struct {
	code int
	msg  string
}

func (e *apiError) Error() string { return e.msg }

func (a *agentAPI) cluster(ctx context.Context) (*rollCluster, error) {
	var c rollCluster
	return &c, a.do(ctx, http.MethodGet, a.local+"/cluster", nil, &c)
}

// member reads a member's status at its api_url ("http://10.0.0.2:8008/patroni").
func (a *agentAPI) member(ctx context.Context, apiURL string) (*rollMember, error) {
	var m rollMember
	return &m, a.do(ctx, http.MethodGet, apiURL, nil, &m)
}

func lagOf(v any) (int64, bool) {
	f, ok := v.(float64)
	return int64(f), ok
}

// clusterProblems lists why the cluster is not healthy enough for a
// rolling step (nil when it is).
func (r PostgresRoll) clusterProblems(c *rollCluster) []string {
	var out []string
	if c.Leader == "" {
		out = append(out, "the cluster has no leader")
	}
	if c.Pause {
		out = append(out, "the cluster is paused (pgherd resumes nothing on its own: unpause it first)")
	}
	if len(c.ScheduledSwitchover) > 0 && string(c.ScheduledSwitchover) != "null" {
		out = append(out, "a switchover is scheduled")
	}
	for _, name := range r.Members {
		i := slices.IndexFunc(c.Members, func(m rollClusterMember) bool { return m.Name == name })
		if i < 0 {
			out = append(out, name+" is not registered in the cluster")
			continue
		}
		m := c.Members[i]
		if m.Name == c.Leader {
			if m.State != "running" {
				out = append(out, fmt.Sprintf("the leader %s is %s", name, m.State))
			}
			continue
		}
		if m.State != "streaming" {
			// "running" is a replica that replays from the archive or
			// waits for a primary: not one to restart or rely on now.
			out = append(out, fmt.Sprintf("%s is %s, not streaming from the leader", name, m.State))
			continue
		}
		if lag, ok := lagOf(m.Lag); !ok {
			out = append(out, name+"'s replication lag is unknown")
		} else if lag > r.maxLag() {
			out = append(out, fmt.Sprintf("%s lags %d bytes behind the leader (the gate is %d)", name, lag, r.maxLag()))
		}
	}
	return out
}

// gate checks the cluster and this member's open transactions.
func (r PostgresRoll) gate(ctx context.Context, h Host) error {
	api, err := r.api(h)
	if err != nil {
		return err
	}
	c, err := api.cluster(ctx)
	if err != nil {
		return fmt.Errorf("%w: the local agent does not answer: %w", ErrGate, err)
	}
	problems := r.clusterProblems(c)
	age := int64(r.maxXactAge() / time.Second)
	res, err := h.Run(ctx, r.psql(fmt.Sprintf("select count(*), coalesce(max(extract(epoch from now() - xact_start))::bigint, 0) "+
		"from pg_stat_activity where backend_type = 'client backend' and pid <> pg_backend_pid() "+
		"and xact_start < now() - interval '%d seconds'", age)), nil)
	if err != nil {
		return err
	}
	if res.ExitCode != 0 {
		problems = append(problems, "the server does not answer: "+strings.TrimSpace(string(res.Stderr)))
	} else if n, oldest, _ := strings.Cut(strings.TrimSpace(string(res.Stdout)), "|"); n != "0" {
		problems = append(problems, fmt.Sprintf("%s transaction(s) open longer than %s on %s (the oldest for %ss): "+
			"they would be cut; end them or wait", n, r.maxXactAge(), r.Member, oldest))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w on %s, nothing done to it: %s; the next apply goes on from here", ErrGate, r.Member, strings.Join(problems, "; "))
	}
	return nil
}

// handOver switches over from this member, the leader, to the most
// caught-up streaming replica that runs the target version, and waits until
// this member streams from the new leader.
func (r PostgresRoll) handOver(ctx context.Context, h Host, target string) error {
	api, err := r.api(h)
	if err != nil {
		return err
	}
	c, err := api.cluster(ctx)
	if err != nil {
		return fmt.Errorf("%w: the local agent does not answer: %w", ErrGate, err)
	}
	if c.Leader != r.Member {
		return nil // already handed over (a resumed apply)
	}
	best, bestLag := "", int64(-1)
	var others []string
	for _, m := range c.Members {
		if m.Name == r.Member || m.State != "streaming" || m.Tags["nofailover"] == "true" {
			continue
		}
		if c.SynchronousMode && !slices.Contains(c.SyncStandbys, m.Name) {
			// In synchronous mode the agents promote a synchronous standby only.
			others = append(others, m.Name+" (not a synchronous standby)")
			continue
		}
		v, err := r.remoteVersion(ctx, h, m.Host, m.Port)
		if err != nil {
			others = append(others, fmt.Sprintf("%s (version unknown: %v)", m.Name, err))
			continue
		}
		lag, ok := lagOf(m.Lag)
		if v != target || !ok || lag > r.maxLag() {
			others = append(others, fmt.Sprintf("%s (runs %s, lag %v)", m.Name, v, m.Lag))
			continue
		}
		if best == "" || lag < bestLag {
			best, bestLag = m.Name, lag
		}
	}
	if best == "" {
		return fmt.Errorf("%w on %s: no streaming replica runs %s within the lag gate to switch over to (%s): the replicas go first",
			ErrGate, r.Member, target, strings.Join(others, ", "))
	}
	err = api.do(ctx, http.MethodPost, api.local+"/switchover",
		map[string]string{"leader": r.Member, "candidate": best}, nil)
	// 503: the agents took the request but it did not finish within the
	// agent's action timeout (a slow shutdown checkpoint, a slow host):
	// it goes on, and the wait below sees it through. A refusal (412,
	// 409, 400) stops here.
	if ae := (*apiError)(nil); err != nil && !(errors.As(err, &ae) && ae.code == http.StatusServiceUnavailable) {
		return fmt.Errorf("switchover to %s: %w", best, err)
	}
	return r.waitMember(ctx, api, func(c *rollCluster, m *rollMember) string {
		switch {
		case c.Leader == r.Member || c.Leader == "":
			return "the leader is still " + orDefault(c.Leader, "(none)")
		case m.Role != "replica" || m.ReplicationState != "streaming":
			return fmt.Sprintf("%s is %s/%s, not a streaming replica yet", r.Member, m.Role, m.ReplicationState)
		}
		return ""
	})
}

// remoteVersion reads the version another member runs, with psql from h
// over TCP as the superuser (the password goes through stdin).
func (r PostgresRoll) remoteVersion(ctx context.Context, h Host, host string, port int) (string, error) {
	cmd := "IFS= read -r PGPASSWORD && export PGPASSWORD && " + executors.Join("psql", "-X", "-A", "-t", "-q",
		"-h", host, "-p", strconv.Itoa(cmpOr(port, 5432)), "-U", "postgres", "-d", "postgres",
		"-c", "select current_setting('server_version_num')")
	res, err := h.Run(ctx, cmd, strings.NewReader(r.SuperuserPassword+"\n"))
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("psql: %s", strings.TrimSpace(string(res.Stderr)))
	}
	return pgVersionNum(string(res.Stdout))
}

// restart asks this member's agent to restart PostgreSQL and waits until
// it streams again on the target version with nothing pending.
func (r PostgresRoll) restart(ctx context.Context, h Host, target string) error {
	api, err := r.api(h)
	if err != nil {
		return err
	}
	if err := api.do(ctx, http.MethodPost, api.local+"/restart", map[string]any{}, nil); err != nil {
		return err
	}
	return r.waitMember(ctx, api, func(c *rollCluster, m *rollMember) string {
		res, err := h.Run(ctx, r.Probe(), nil)
		if err != nil {
			return err.Error()
		}
		rf, err := r.parse(Fact{Stdout: res.Stdout, ExitCode: res.ExitCode})
		switch {
		case err != nil:
			return err.Error()
		case !rf.up:
			return r.Member + " does not answer yet"
		case rf.live != target:
			return fmt.Sprintf("%s runs %s, not %s", r.Member, rf.live, target)
		case len(rf.pending) > 0:
			return r.Member + " still has parameters pending a restart: " + strings.Join(rf.pending, ", ")
		case c.Leader == r.Member:
			if m.State != "running" {
				return r.Member + " is " + m.State
			}
		case m.ReplicationState != "streaming":
			return fmt.Sprintf("%s is %s/%s, not streaming yet", r.Member, m.State, m.ReplicationState)
		}
		return ""
	})
}

// waitMember polls the local agent until missing reports nothing.
func (r PostgresRoll) waitMember(ctx context.Context, api *agentAPI, missing func(*rollCluster, *rollMember) string) error {
	deadline := time.Now().Add(r.timeout())
	last := "no answer yet"
	for time.Now().Before(deadline) {
		c, err := api.cluster(ctx)
		if err == nil {
			var m *rollMember
			if m, err = api.member(ctx, api.local+"/patroni"); err == nil {
				if last = missing(c, m); last == "" {
					return nil
				}
			}
		}
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not back after %s: %s (see journalctl -u %s on it)", r.Member, r.timeout(), last, AgentUnit)
}
