package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// statusHost is what status and switchover need of a host: run a
// read-only command, and open TCP connections from it.
type statusHost interface {
	Run(ctx context.Context, cmd string, stdin io.Reader) (executors.Result, error)
	DialContext(ctx context.Context, network, addr string) (net.Conn, error)
}

// hostConnector reaches a host of the spec by name.
type hostConnector func(ctx context.Context, name string) (statusHost, error)

// poolConnector reaches the hosts of m over SSH through pool.
func poolConnector(m *spec.Model, pool *executors.Pool) hostConnector {
	return func(ctx context.Context, name string) (statusHost, error) {
		i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("host %q is not in the spec", name)
		}
		return pool.Get(ctx, sshConfig(m, m.Hosts[i]))
	}
}

// apiClient talks to one host's agent API at 127.0.0.1:port as seen from
// that host, through its SSH connection, so that a firewalled API port
// does not matter.
type apiClient struct {
	host string
	port int
	base string // "http://127.0.0.1:8008"
	http *http.Client
}

func newAPIClient(h statusHost, c *spec.Cluster, name string, port int) *apiClient {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return h.DialContext(ctx, "tcp", addr)
		},
		// Each open connection holds an SSH session slot.
		DisableKeepAlives: true,
	}
	a := &apiClient{host: name, port: port, base: "http://" + addr, http: &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
	if c != nil && c.TLS != nil {
		// HTTPS, verified with the spec's CAs against the host's name,
		// which the certificates pgherd issues name.
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM([]byte(c.TLS.CACert))
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: name}
		a.base = "https://" + addr
	}
	return a
}

func (c *apiClient) url(path string) string { return c.base + path }

// getJSON reads path into v; any status but 200 is an error.
func (c *apiClient) getJSON(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent API on %s: %w", c.host, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("agent API on %s: GET %s: %w", c.host, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("agent API on %s: GET %s: %s: %s", c.host, path, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("agent API on %s: GET %s: %w", c.host, path, err)
	}
	return nil
}

// memberStatus is the part of GET /patroni that status shows.
type memberStatus struct {
	State            string `json:"state"`
	Role             string `json:"role"`
	Timeline         int    `json:"timeline"`
	ReplicationState string `json:"replication_state"`
	Pause            bool   `json:"pause"`
	Pgherd           struct {
		IsLeader              bool     `json:"is_leader"`
		LeaseValid            bool     `json:"lease_valid"`
		LeaseRemainingSeconds *float64 `json:"lease_remaining_seconds"`
		LagBytes              *int64   `json:"lag_bytes"`
		Streaming             bool     `json:"streaming"`
		DCSReachable          bool     `json:"dcs_reachable"`
	} `json:"pgherd"`
}

// clusterStatus is the part of GET /cluster that status and switchover use.
type clusterStatus struct {
	Scope   string `json:"scope"`
	Leader  string `json:"leader"`
	Pause   bool   `json:"pause"`
	Members []struct {
		Name  string `json:"name"`
		Role  string `json:"role"`
		State string `json:"state"`
	} `json:"members"`
	ScheduledSwitchover *struct {
		At   string `json:"at"`
		From string `json:"from"`
		To   string `json:"to"`
	} `json:"scheduled_switchover"`
}

// StatusReport is what `pgherd status -json` prints.
type StatusReport struct {
	Cluster string `json:"cluster"`
	// Health is "healthy", "degraded" or "error" (a host could not be
	// reached); the exit code is 0, 2 or 1.
	Health  string         `json:"health"`
	Verdict string         `json:"verdict"`
	Members []MemberReport `json:"members"`
	VIP     *VIPReport     `json:"vip,omitempty"`
	Etcd    *EtcdReport    `json:"etcd,omitempty"`
	Paused  bool           `json:"paused,omitempty"`
	// Limited: -limit left hosts out, so the absence of a primary or of the
	// VIP among those shown says nothing.
	Limited bool `json:"limited,omitempty"`
}

// MemberReport is one PostgreSQL host's row.
type MemberReport struct {
	Member   string `json:"member"`
	Host     string `json:"host"` // its address
	Role     string `json:"role,omitempty"`
	State    string `json:"state,omitempty"`
	Timeline int    `json:"timeline,omitempty"`
	// LagBytes is a replica's lag: nil when not a replica, -1 unknown.
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	// LeaseSeconds is the leader's lease left before its fencing deadline.
	LeaseSeconds *float64 `json:"lease_remaining_seconds,omitempty"`
	DCSReachable bool     `json:"dcs_reachable"`
	Paused       bool     `json:"paused,omitempty"`
	// Unreachable: the host could not be reached over SSH. Error says why,
	// or why its agent did not answer.
	Unreachable bool   `json:"unreachable,omitempty"`
	Error       string `json:"error,omitempty"`
}

// HostProblem is a host that could not be probed, and why.
type HostProblem struct {
	Host        string `json:"host"`
	Unreachable bool   `json:"unreachable,omitempty"` // over SSH
	Error       string `json:"error"`
}

// probeError records err, from connecting to host or from what ran there.
func probeError(host string, connectErr, err error) HostProblem {
	if connectErr != nil {
		return HostProblem{Host: host, Unreachable: true, Error: connectErr.Error()}
	}
	return HostProblem{Host: host, Error: err.Error()}
}

// VIPReport says which keepalived host holds the virtual IP.
type VIPReport struct {
	Address string        `json:"address"`
	Holders []string      `json:"holders"`
	Errors  []HostProblem `json:"errors,omitempty"` // hosts that could not be probed
}

// EtcdReport is the health of the etcd members.
type EtcdReport struct {
	Expected  int          `json:"expected"`
	Endpoints []EtcdHealth `json:"endpoints"`
	// Errors are set when no etcd host could tell etcd's health.
	Errors []HostProblem `json:"errors,omitempty"`
}

// EtcdHealth is one etcd member's health, as etcdctl reports it.
type EtcdHealth struct {
	Name     string `json:"name"`
	Endpoint string `json:"endpoint"`
	Healthy  bool   `json:"healthy"`
	Took     string `json:"took,omitempty"`
	Error    string `json:"error,omitempty"`
}

// statusOptions are what status gathers and how long it waits.
type statusOptions struct {
	limit   []string
	timeout time.Duration // per host
}

func (o statusOptions) keep(host string) bool {
	return len(o.limit) == 0 || slices.Contains(o.limit, host)
}

// gatherStatus reads every PostgreSQL host's agent, the keepalived hosts'
// addresses and etcd's health, in parallel. Unreachable hosts are recorded
// in the report; gatherStatus itself does not fail.
func gatherStatus(ctx context.Context, m *spec.Model, connect hostConnector, o statusOptions) *StatusReport {
	c := m.Cluster
	if o.timeout <= 0 {
		o.timeout = 15 * time.Second
	}
	r := &StatusReport{Cluster: c.Name, Limited: len(o.limit) > 0}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, hn := range c.Postgres.Hosts {
		if !o.keep(hn) {
			continue
		}
		i := len(r.Members)
		r.Members = append(r.Members, MemberReport{Member: hn, Host: hostAddress(m, hn)})
		wg.Go(func() {
			row := readMember(ctx, connect, c, hn, c.HA.APIPort, o.timeout)
			mu.Lock()
			row.Member, row.Host = r.Members[i].Member, r.Members[i].Host
			r.Members[i] = row
			mu.Unlock()
		})
	}
	if k := c.Keepalived; k != nil {
		var hosts []string
		for _, hn := range k.Hosts {
			if o.keep(hn) {
				hosts = append(hosts, hn)
			}
		}
		if len(hosts) > 0 {
			r.VIP = &VIPReport{Address: k.VIP, Holders: []string{}}
			for _, hn := range hosts {
				wg.Go(func() {
					held, prob := probeVIP(ctx, connect, hn, k.VIP, o.timeout)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case prob != nil:
						r.VIP.Errors = append(r.VIP.Errors, *prob)
					case held:
						r.VIP.Holders = append(r.VIP.Holders, hn)
					}
				})
			}
		}
	}
	var etcdHosts []string
	for _, hn := range c.Etcd.Hosts {
		if o.keep(hn) {
			etcdHosts = append(etcdHosts, hn)
		}
	}
	if len(etcdHosts) > 0 {
		r.Etcd = &EtcdReport{Expected: len(c.Etcd.Hosts), Endpoints: []EtcdHealth{}}
		wg.Go(func() {
			e := probeEtcd(ctx, m, connect, etcdHosts, o.timeout)
			mu.Lock()
			*r.Etcd = e
			mu.Unlock()
		})
	}
	wg.Wait()
	if r.VIP != nil {
		slices.Sort(r.VIP.Holders)
		slices.SortFunc(r.VIP.Errors, func(a, b HostProblem) int { return strings.Compare(a.Host, b.Host) })
	}
	for _, mr := range r.Members {
		r.Paused = r.Paused || mr.Paused
	}
	r.Health, r.Verdict = verdict(r, c.HA.MaximumLagOnFailover)
	return r
}

func hostAddress(m *spec.Model, name string) string {
	for _, h := range m.Hosts {
		if h.Name == name {
			return h.Address
		}
	}
	return ""
}

func readMember(ctx context.Context, connect hostConnector, c *spec.Cluster, name string, port int, timeout time.Duration) MemberReport {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := connect(ctx, name)
	if err != nil {
		return MemberReport{Unreachable: true, Error: err.Error()}
	}
	var st memberStatus
	if err := newAPIClient(h, c, name, port).getJSON(ctx, "/patroni", &st); err != nil {
		return MemberReport{Error: err.Error()}
	}
	row := MemberReport{
		Role:         st.Role,
		State:        st.State,
		Timeline:     st.Timeline,
		LagBytes:     st.Pgherd.LagBytes,
		DCSReachable: st.Pgherd.DCSReachable,
		Paused:       st.Pause,
	}
	if st.Role == "replica" && st.ReplicationState != "" {
		row.State = st.ReplicationState
	}
	if st.Pgherd.IsLeader && st.Pgherd.LeaseValid {
		row.LeaseSeconds = st.Pgherd.LeaseRemainingSeconds
		if row.LeaseSeconds == nil {
			row.LeaseSeconds = new(float64)
		}
	}
	return row
}

func probeVIP(ctx context.Context, connect hostConnector, name, vip string, timeout time.Duration) (bool, *HostProblem) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h, err := connect(ctx, name)
	if err != nil {
		p := probeError(name, err, nil)
		return false, &p
	}
	res, err := h.Run(ctx, "ip -o addr show", nil)
	if err == nil {
		err = res.Err(name, "ip -o addr show")
	}
	if err != nil {
		p := probeError(name, nil, err)
		return false, &p
	}
	return holdsVIP(string(res.Stdout), vip), nil
}

// holdsVIP reports whether the output of `ip -o addr show` lists the
// address of vip ("10.0.0.100/24" or "10.0.0.100").
func holdsVIP(ipAddrOutput, vip string) bool {
	addr, _, _ := strings.Cut(vip, "/")
	want := net.ParseIP(addr)
	if want == nil {
		return false
	}
	for line := range strings.Lines(ipAddrOutput) {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] != "inet" && f[i] != "inet6" {
				continue
			}
			a, _, _ := strings.Cut(f[i+1], "/")
			if ip := net.ParseIP(a); ip != nil && ip.Equal(want) {
				return true
			}
		}
	}
	return false
}

// probeEtcd asks etcdctl on the first etcd host that answers for the health
// of every member of the cluster.
func probeEtcd(ctx context.Context, m *spec.Model, connect hostConnector, hosts []string, timeout time.Duration) EtcdReport {
	c := m.Cluster
	r := EtcdReport{Expected: len(c.Etcd.Hosts), Endpoints: []EtcdHealth{}}
	for _, hn := range hosts {
		cmd := etcdHealthCmd(m, hn)
		out, prob := func() ([]byte, *HostProblem) {
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			h, err := connect(ctx, hn)
			if err != nil {
				p := probeError(hn, err, nil)
				return nil, &p
			}
			res, err := h.Run(ctx, cmd, nil)
			// etcdctl exits 1 when a member is unhealthy, after printing
			// every member's health.
			if err == nil && len(strings.TrimSpace(string(res.Stdout))) == 0 {
				err = res.Err(hn, "etcdctl endpoint health")
				if err == nil {
					err = fmt.Errorf("%s: etcdctl endpoint health printed nothing", hn)
				}
			}
			if err != nil {
				p := probeError(hn, nil, err)
				return nil, &p
			}
			return res.Stdout, nil
		}()
		if prob != nil {
			r.Errors = append(r.Errors, *prob)
			continue
		}
		eps, err := parseEtcdHealth(out, m)
		if err != nil {
			r.Errors = append(r.Errors, probeError(hn, nil, fmt.Errorf("%s: etcdctl endpoint health: %w", hn, err)))
			continue
		}
		r.Endpoints, r.Errors = eps, nil
		return r
	}
	return r
}

// parseEtcdHealth reads `etcdctl endpoint health -w json` and names each
// endpoint after the spec host with its address.
func parseEtcdHealth(out []byte, m *spec.Model) ([]EtcdHealth, error) {
	var raw []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Took     string `json:"took"`
		Error    string `json:"error"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, err
	}
	eps := make([]EtcdHealth, 0, len(raw))
	for _, e := range raw {
		name := e.Endpoint
		if u, err := url.Parse(e.Endpoint); err == nil && u.Hostname() != "" {
			for _, hn := range m.Cluster.Etcd.Hosts {
				if hostAddress(m, hn) == u.Hostname() || hn == u.Hostname() {
					name = hn
				}
			}
		}
		eps = append(eps, EtcdHealth{Name: name, Endpoint: e.Endpoint, Healthy: e.Health, Took: e.Took, Error: e.Error})
	}
	slices.SortFunc(eps, func(a, b EtcdHealth) int { return strings.Compare(a.Name, b.Name) })
	return eps, nil
}

// verdict sums the report up in one line and says whether the cluster is
// healthy, degraded, or could not be fully seen (error).
func verdict(r *StatusReport, maxLag int64) (health, line string) {
	if maxLag <= 0 {
		maxLag = 1 << 20
	}
	var unreachable, problems []string
	var primaries, streaming, replicas []string
	timelines := map[int]bool{}
	for _, mr := range r.Members {
		switch {
		case mr.Unreachable:
			unreachable = append(unreachable, mr.Member)
			continue
		case mr.Error != "":
			problems = append(problems, mr.Member+"'s agent does not answer")
			continue
		}
		if mr.Timeline != 0 {
			timelines[mr.Timeline] = true
		}
		if !mr.DCSReachable {
			problems = append(problems, mr.Member+" cannot reach etcd")
		}
		switch mr.Role {
		case "primary", "standby_leader":
			if mr.LeaseSeconds == nil {
				problems = append(problems, mr.Member+" runs as "+mr.Role+" without a valid leader lease")
				break
			}
			primaries = append(primaries, mr.Member)
		case "replica":
			replicas = append(replicas, mr.Member)
			if mr.State != "streaming" {
				problems = append(problems, fmt.Sprintf("%s is not streaming (%s)", mr.Member, mr.State))
				break
			}
			streaming = append(streaming, mr.Member)
			switch {
			case mr.LagBytes == nil || *mr.LagBytes < 0:
				problems = append(problems, mr.Member+"'s lag is unknown")
			case *mr.LagBytes > maxLag:
				problems = append(problems, fmt.Sprintf("%s lags %s (more than maximum_lag_on_failover, %s)", mr.Member, formatMB(*mr.LagBytes), formatMB(maxLag)))
			}
		default:
			role := mr.Role
			if role == "" {
				role = "unknown"
			}
			problems = append(problems, fmt.Sprintf("%s is %s (%s)", mr.Member, role, mr.State))
		}
	}
	switch {
	case len(primaries) == 0 && !r.Limited && slices.ContainsFunc(r.Members, func(mr MemberReport) bool { return mr.Error == "" }):
		problems = append([]string{"no primary"}, problems...)
	case len(primaries) > 1:
		problems = append([]string{fmt.Sprintf("%d primaries (%s)", len(primaries), strings.Join(primaries, ", "))}, problems...)
	}
	if len(timelines) > 1 {
		problems = append(problems, fmt.Sprintf("members on %d different timelines", len(timelines)))
	}
	if v := r.VIP; v != nil {
		for _, e := range v.Errors {
			if e.Unreachable {
				unreachable = append(unreachable, e.Host)
			} else {
				problems = append(problems, "the VIP could not be looked for on "+e.Host)
			}
		}
		switch {
		case len(v.Holders) == 0 && len(v.Errors) == 0 && !r.Limited:
			problems = append(problems, "no host holds the VIP "+v.Address)
		case len(v.Holders) > 1:
			problems = append(problems, fmt.Sprintf("the VIP %s is held by %d hosts (%s)", v.Address, len(v.Holders), strings.Join(v.Holders, ", ")))
		}
	}
	if e := r.Etcd; e != nil {
		if len(e.Errors) > 0 {
			for _, p := range e.Errors {
				if p.Unreachable {
					unreachable = append(unreachable, p.Host)
				}
			}
			problems = append(problems, "etcd's health could not be read")
		} else {
			healthy := 0
			for _, ep := range e.Endpoints {
				if ep.Healthy {
					healthy++
				}
			}
			if healthy < e.Expected {
				problems = append(problems, fmt.Sprintf("etcd: %d of %d members healthy", healthy, e.Expected))
			}
		}
	}
	slices.Sort(unreachable)
	unreachable = slices.Compact(unreachable)
	var parts []string
	if len(unreachable) > 0 {
		parts = append(parts, plural(len(unreachable), "host")+" unreachable ("+strings.Join(unreachable, ", ")+")")
	}
	parts = append(parts, problems...)
	summary := fmt.Sprintf("%s, %s streaming", plural(len(primaries), "primary"), plural(len(streaming), "replica"))
	if len(replicas) > len(streaming) {
		summary += fmt.Sprintf(" of %d", len(replicas))
	}
	if r.Paused {
		summary += ", paused"
	}
	switch {
	case len(unreachable) > 0:
		return "error", "error: " + strings.Join(parts, "; ")
	case len(problems) > 0:
		return "degraded", "degraded: " + strings.Join(parts, "; ") + " (" + summary + ")"
	default:
		return "healthy", "healthy: " + summary
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "y") && word != "key" {
		return strconv.Itoa(n) + " " + strings.TrimSuffix(word, "y") + "ies"
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func formatMB(b int64) string {
	return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) + " MB"
}

// renderStatus writes the report as a table, then the VIP, etcd and the
// verdict.
func renderStatus(w io.Writer, r *StatusReport) error {
	var b strings.Builder
	rows := [][]string{{"MEMBER", "HOST", "ROLE", "STATE", "TIMELINE", "LAG(MB)", "LEADER-LEASE"}}
	for _, mr := range r.Members {
		if mr.Error != "" {
			state := "no agent"
			if mr.Unreachable {
				state = "unreachable"
			}
			rows = append(rows, []string{mr.Member, mr.Host, "?", state, "-", "-", "-"})
			continue
		}
		lag, lease, tl := "-", "-", "-"
		if mr.LagBytes != nil {
			if *mr.LagBytes < 0 {
				lag = "unknown"
			} else {
				lag = strconv.FormatFloat(float64(*mr.LagBytes)/(1<<20), 'f', 1, 64)
			}
		}
		if mr.LeaseSeconds != nil {
			lease = strconv.FormatFloat(*mr.LeaseSeconds, 'f', 1, 64) + "s"
		}
		if mr.Timeline != 0 {
			tl = strconv.Itoa(mr.Timeline)
		}
		rows = append(rows, []string{mr.Member, mr.Host, orDash(mr.Role), orDash(mr.State), tl, lag, lease})
	}
	writeTable(&b, rows)
	for _, mr := range r.Members {
		if mr.Error != "" {
			fmt.Fprintf(&b, "  %s\n", mr.Error)
		}
	}
	if v := r.VIP; v != nil {
		holder := "none"
		if len(v.Holders) > 0 {
			holder = strings.Join(v.Holders, ", ")
		}
		fmt.Fprintf(&b, "\nVIP %s: held by %s\n", v.Address, holder)
		for _, e := range v.Errors {
			fmt.Fprintf(&b, "  %s\n", e.Error)
		}
	}
	if e := r.Etcd; e != nil {
		healthy := 0
		for _, ep := range e.Endpoints {
			if ep.Healthy {
				healthy++
			}
		}
		if len(e.Errors) > 0 {
			fmt.Fprintf(&b, "\netcd: health could not be read\n")
			for _, p := range e.Errors {
				fmt.Fprintf(&b, "  %s\n", p.Error)
			}
		} else {
			fmt.Fprintf(&b, "\netcd: %d of %d members healthy\n", healthy, e.Expected)
			for _, ep := range e.Endpoints {
				state := "healthy"
				if !ep.Healthy {
					state = "unhealthy"
					if ep.Error != "" {
						state += ": " + ep.Error
					}
				}
				fmt.Fprintf(&b, "  %s (%s): %s\n", ep.Name, ep.Endpoint, state)
			}
		}
	}
	fmt.Fprintf(&b, "\n%s\n", r.Verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeTable writes rows in columns two spaces apart.
func writeTable(b *strings.Builder, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		var line strings.Builder
		for i, cell := range row {
			if i == len(row)-1 {
				line.WriteString(cell)
				break
			}
			fmt.Fprintf(&line, "%-*s  ", widths[i], cell)
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// errNoCluster is what status and switchover say of a spec without one.
func errNoCluster(verb string) error {
	return fmt.Errorf("the spec has no cluster block: %s works on a PostgreSQL cluster (see docs/spec.md, cluster)", verb)
}

func (a *app) statusCommand() *cobra.Command {
	var f specFlags
	var limit []string
	var asJSON bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "status [flags] [SPEC...]",
		Short: "Show the cluster's members, roles, lag, VIP and etcd health",
		Long: `status reads the spec, then asks every PostgreSQL host's agent for its state
(through SSH, at 127.0.0.1:<api_port> on the host, so a firewalled API port does
not matter), looks for the virtual IP on the keepalived hosts and asks etcd for
the health of its members, all in parallel. It prints a table of the members,
who holds the VIP, etcd's health and a one-line verdict. It changes nothing.

Exit codes: 0 healthy; 1 error (a host could not be reached: it is named, and
the others are shown); 2 degraded (no primary, a replica not streaming or
lagging, the VIP on no host or on two, an etcd member down, ...).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := a.load(args, &f)
			if err != nil {
				return err
			}
			if m.Cluster == nil {
				return errNoCluster("status")
			}
			for _, l := range limit {
				if !slices.ContainsFunc(m.Hosts, func(h spec.Host) bool { return h.Name == l }) {
					return fmt.Errorf("-limit %s: no such host in the spec", l)
				}
			}
			pool := executors.NewPool(a.logger())
			defer pool.Close()
			r := gatherStatus(cmd.Context(), m, poolConnector(m, pool), statusOptions{limit: limit, timeout: timeout})
			var b strings.Builder
			if asJSON {
				enc := json.NewEncoder(&b)
				enc.SetIndent("", "  ")
				err = enc.Encode(r)
			} else {
				err = renderStatus(&b, r)
			}
			if err != nil {
				return err
			}
			if _, err := io.WriteString(a.env.Stdout, m.Mask(b.String())); err != nil {
				return err
			}
			switch r.Health {
			case "error":
				return &exitError{code: exitError1}
			case "degraded":
				return &exitError{code: exitChanges}
			}
			return nil
		},
	}
	f.register(c)
	c.Flags().StringSliceVar(&limit, "limit", nil, "only these hosts (comma-separated names)")
	c.Flags().BoolVar(&asJSON, "json", false, "machine-readable JSON output")
	c.Flags().DurationVar(&timeout, "timeout", 15*time.Second, "how long to wait for each host")
	return c
}

// etcdHealthCmd asks etcdctl on host hn for the health of every member;
// with TLS, over HTTPS to the host's own address with its certificate.
func etcdHealthCmd(m *spec.Model, hn string) string {
	c := m.Cluster
	words := []string{"env", "ETCDCTL_API=3", "etcdctl", "--endpoints=http://127.0.0.1:" + strconv.Itoa(c.Etcd.ClientPort)}
	if c.TLS != nil {
		addr := hn
		if i := slices.IndexFunc(m.Hosts, func(h spec.Host) bool { return h.Name == hn }); i >= 0 {
			addr = m.Hosts[i].Address
		}
		words = []string{"env", "ETCDCTL_API=3", "etcdctl", "--endpoints=https://" + net.JoinHostPort(addr, strconv.Itoa(c.Etcd.ClientPort)),
			"--cacert=" + modules.TLSCAFile, "--cert=" + modules.TLSCertFile, "--key=" + modules.TLSKeyFile("etcd")}
	}
	return executors.Join(append(words, "--dial-timeout=2s", "--command-timeout=5s", "endpoint", "health", "--cluster", "-w", "json")...)
}
