package modules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// EtcdJoinDropIn and EtcdJoinEnvPath are the temporary override that starts
// a joining member with initial-cluster-state "existing": a systemd drop-in
// adding an EnvironmentFile read after /etc/default/etcd (a later
// EnvironmentFile wins). They exist only while a member joins; the steady
// /etc/default/etcd is never changed for it.
const (
	EtcdJoinDropIn  = "/etc/systemd/system/etcd.service.d/pgherd-join.conf"
	EtcdJoinEnvPath = "/etc/default/etcd-pgherd-join"
)

// EtcdMember is this host's own membership in a running etcd cluster: it
// (re)joins the cluster through the membership API when the member is not
// in it, never by wiping data. Its address is "etcd_member.<name>". It
// comes after /etc/default/etcd and before the etcd packages (EtcdResources),
// so that a host added to the spec joins the running cluster instead of
// bootstrapping a cluster of its own when the package's postinst first
// starts etcd.
//
// The probe asks the other members (Peers, over HTTP: the etcd v3 JSON
// gateway, through bash's /dev/tcp, so that it needs neither etcdctl nor
// curl on a host where etcd is not installed yet) for the member list. When
// none answers there is no running cluster to join (a first apply
// bootstraps all members together with initial-cluster-state "new"): no
// change. When the member list has this member's peer URL and the member has
// data (or is an initial member that never started), no change either.
//
// Otherwise (the member was removed, by hand with `etcdctl member remove`
// or it was never added), steps, in order:
//
//  1. member add <name> through a live member (skipped when the member is
//     already added and waits to start);
//  2. systemctl stop etcd (a removed member's etcd has exited already);
//  3. the data directory, when it holds a member, moved aside to
//     <data dir>.removed-<UTC time> (never deleted: the plan says so);
//  4. the join override (EtcdJoinDropIn, EtcdJoinEnvPath: state
//     "existing", the initial cluster as the running cluster lists it) and
//     systemctl daemon-reload;
//  5. etcd started (systemctl start waits until it has joined:
//     Type=notify), or, on a host without etcd, the packages installed
//     (their postinst starts it);
//  6. back to the steady configuration: the override removed, daemon-reload.
//
// etcd itself refuses the add when it would cost the cluster its quorum
// (strict reconfiguration check); the error then says so.
type EtcdMember struct {
	// Config is this member's steady configuration (its Members are the
	// spec's).
	Config EtcdConfig `json:"config"`
	// Peers are the client endpoints (host:port) of the other members.
	Peers []string `json:"peers"`
	// Packages are installed when etcd is not installed yet (step 5).
	Packages []string `json:"packages"`
}

// Address implements Resource.
func (m EtcdMember) Address() string { return "etcd_member." + m.Config.Name }

func (m EtcdMember) valid() error {
	if err := m.Config.Validate(); err != nil {
		return err
	}
	if m.Config.TLS.CertFile != "" || m.Config.TLS.PeerCertFile != "" {
		return fmt.Errorf("%s: joining a member over TLS is not supported: %w", m.Address(), ErrInvalid)
	}
	for _, p := range m.Peers {
		host, port, err := net.SplitHostPort(p)
		if err != nil || !etcdValue.MatchString(host) || strings.ContainsAny(host, "/,=") {
			return fmt.Errorf("%s: peer endpoint %q: want host:port: %w", m.Address(), p, ErrInvalid)
		}
		if n, err := strconv.Atoi(port); err != nil || !validPort(n) {
			return fmt.Errorf("%s: peer endpoint %q: bad port: %w", m.Address(), p, ErrInvalid)
		}
	}
	return nil
}

// etcdPost is a bash command that POSTs a JSON body to an etcd member's v3
// gateway and prints the response body; it fails unless the answer is HTTP
// 200. Arguments: host, port, path, body.
const etcdPost = `bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1
printf "POST %s HTTP/1.0\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" "$2" "$0" "$1" "${#3}" "$3" >&3
r=$(cat <&3) || exit 1
case "$r" in "HTTP/1."?" 200"*) ;; *) printf "%s\n" "$r" | head -c 400 >&2; exit 1;; esac
printf "%s\n" "$r" | sed "1,/^\r*$/d"'`

func etcdPostCmd(endpoint, path, body string) string {
	host, port, _ := net.SplitHostPort(endpoint)
	return "timeout 10 " + etcdPost + " " + executors.Join(host, port, path, body)
}

const etcdMembersMarker = "#members"

// Probe implements Resource.
func (m EtcdMember) Probe() string {
	if m.valid() != nil {
		return invalidProbe
	}
	c := m.Config.withDefaults()
	var b strings.Builder
	fmt.Fprintf(&b, "if [ -d %s ]; then echo data=yes; else echo data=no; fi\n", executors.Quote(c.DataDir+"/member"))
	b.WriteString("if command -v etcd >/dev/null; then echo installed=yes; else echo installed=no; fi\n")
	for _, p := range m.Peers {
		fmt.Fprintf(&b, "if out=$(%s 2>/dev/null); then echo from=%s; echo '%s'; printf '%%s\\n' \"$out\"; exit 0; fi\n",
			etcdPostCmd(p, "/v3/cluster/member/list", "{}"), executors.Quote(p), etcdMembersMarker)
	}
	return b.String()
}

// gatewayMember is a member as the v3 JSON gateway prints it (uint64 IDs
// are strings).
type gatewayMember struct {
	ID         string   `json:"ID"`
	Name       string   `json:"name"`
	PeerURLs   []string `json:"peerURLs"`
	ClientURLs []string `json:"clientURLs"`
}

// Diff implements Resource.
func (m EtcdMember) Diff(f Fact) (planner.Change, []Step, error) {
	addr := m.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if err := m.valid(); err != nil {
		return ch, nil, err
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	head, list, found := bytes.Cut(f.Stdout, []byte(etcdMembersMarker+"\n"))
	if !found {
		return ch, nil, nil // no running cluster to join
	}
	kv := parseKV(head)
	var ml struct {
		Members []gatewayMember `json:"members"`
	}
	if err := json.Unmarshal(list, &ml); err != nil {
		return ch, nil, fmt.Errorf("%s: member list from %s: %v: %w", addr, kv["from"], err, ErrProbe)
	}
	c := m.Config.withDefaults()
	self := EtcdPeerURL(c.Address, c.PeerPort, false)
	hasData, installed := kv["data"] == "yes", kv["installed"] == "yes"
	i := slices.IndexFunc(ml.Members, func(lm gatewayMember) bool { return slices.Contains(lm.PeerURLs, self) })
	added := i >= 0
	if added {
		lm := ml.Members[i]
		switch {
		case lm.Name != "" && lm.Name != c.Name:
			return ch, nil, fmt.Errorf("%s: peer URL %s belongs to member %q, the spec names it %q: %w", addr, self, lm.Name, c.Name, ErrConflict)
		case lm.Name != "" && (hasData || len(lm.ClientURLs) == 0):
			// A member with its data, or an initial member that never
			// started: a start with the steady configuration joins.
			return ch, nil, nil
		case lm.Name != "":
			ch.Action = planner.Update
			ch.Attrs = []planner.Attr{{Name: "member " + c.Name, Before: "in the cluster, its data directory " + c.DataDir + " empty", After: "(refused)"}}
			ch.Reason = "member " + c.Name + " has run but its data directory is gone: remove it (etcdctl member remove) and apply again to add it afresh"
			return ch, nil, nil
		}
	}

	// The initial cluster the joining member starts with: the running
	// cluster's members, this one included.
	initial := []string{c.Name + "=" + self}
	for _, lm := range ml.Members {
		if slices.Contains(lm.PeerURLs, self) {
			continue
		}
		name := lm.Name
		if name == "" {
			return ch, nil, fmt.Errorf("%s: member %s was added but has not started; etcd allows one unstarted member at a time: start it first: %w",
				addr, strings.Join(lm.PeerURLs, ","), ErrConflict)
		}
		for _, u := range lm.PeerURLs {
			initial = append(initial, name+"="+u)
		}
	}
	slices.Sort(initial)
	from := kv["from"]
	aside := c.DataDir + ".removed-<UTC time of apply>"

	ch.Action = planner.Update
	before := "(not in the cluster)"
	if added {
		before = "(added, not started)"
	}
	ch.Attrs = []planner.Attr{{Name: "member " + c.Name, Before: before, After: self}}
	ch.Reason = "member " + c.Name + " is not a running member of the etcd cluster (removed, or new); it joins through the membership API"
	ch.Impact = c.Name + " starts etcd with initial-cluster-state existing"
	var steps []Step
	step := func(desc string, s Step) {
		s.Desc = desc
		steps = append(steps, s)
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: fmt.Sprintf("step %d", len(steps)), After: desc})
	}
	if !added {
		body := `{"peerURLs":["` + self + `"]}`
		step("member add "+c.Name+" --peer-urls="+self+" through "+from,
			Step{Cmd: etcdPostCmd(from, "/v3/cluster/member/add", body) + " >/dev/null"})
	}
	if installed {
		step("systemctl stop etcd", Step{Cmd: "systemctl stop etcd"})
	}
	if hasData {
		ch.Impact += "; its old data directory is kept as " + aside
		dir := executors.Quote(c.DataDir)
		step("move "+c.DataDir+" aside to "+aside,
			Step{Cmd: "to=" + dir + ".removed-$(date -u +%Y%m%dT%H%M%SZ) && mv " + dir + ` "$to" && echo "moved aside to $to"`})
	}
	env := "# Written by pgherd while " + c.Name + " joins the etcd cluster; removed once it has.\n" +
		"ETCD_INITIAL_CLUSTER_STATE=existing\nETCD_INITIAL_CLUSTER=" + strings.Join(initial, ",") + "\n"
	dropIn := "# Written by pgherd while " + c.Name + " joins the etcd cluster; removed once it has.\n[Service]\nEnvironmentFile=" + EtcdJoinEnvPath + "\n"
	step("start with initial-cluster-state existing (override "+EtcdJoinDropIn+")", Step{Run: func(ctx context.Context, h Host) error {
		for _, f := range []struct{ path, content string }{{EtcdJoinEnvPath, env}, {EtcdJoinDropIn, dropIn}} {
			if r, err := h.Run(ctx, "mkdir -p "+executors.Quote(pathDir(f.path)), nil); err != nil {
				return err
			} else if err := r.Err(h.Name(), "mkdir"); err != nil {
				return err
			}
			if err := h.PutFile(ctx, f.path, strings.NewReader(f.content), executors.FileAttrs{Owner: "root", Group: "root", Mode: 0o644}); err != nil {
				return fmt.Errorf("write %s: %w", f.path, err)
			}
		}
		if !installed {
			return aptInstall(ctx, h, "systemctl daemon-reload && "+aptInstallCmd(false, false, m.Packages...))
		}
		cmd := "systemctl daemon-reload && systemctl start etcd"
		r, err := h.Run(ctx, cmd, nil)
		if err != nil {
			return err
		}
		return r.Err(h.Name(), cmd)
	}})
	step("back to the steady configuration (remove the override)", Step{Cmd: "rm -f " +
		executors.Quote(EtcdJoinDropIn) + " " + executors.Quote(EtcdJoinEnvPath) + " && rmdir --ignore-fail-on-non-empty " +
		executors.Quote(pathDir(EtcdJoinDropIn)) + " && systemctl daemon-reload"})
	return ch, steps, nil
}

func pathDir(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}
