package modules

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// AgentUnitPath is the unit file of the pgherd agent service.
const AgentUnitPath = SystemdUnitDir + "/" + AgentUnit

// DetachedMember is a host of the spec that is not (or no longer) one of the
// cluster's database hosts: if the pgherd agent of the cluster still runs
// there, the host is drained and detached. Its address is
// "detached_member.<cluster>".
//
// The probe reads whether the agent's unit is there, enabled and active,
// which cluster its configuration names, the member's role from the local
// agent API, and whether the data directory exists. Steps, when the agent
// of this cluster is enabled or active:
//
//  1. systemctl disable --now the agent. A leader hands over first: the
//     agent's clean shutdown stops PostgreSQL only after the most advanced
//     replica has received every WAL record, and that replica takes the
//     leader key (a switchover). The member's key leaves the DCS with the
//     agent, so the new leader drops its replication slot.
//  2. wait until no other member (Others) lists this one any more.
//  3. only with RemoveData: the data directory deleted. Without it (the
//     default) the data stays where it is, and the plan says so.
//
// etcd on the host is not this resource's business: a member removed from
// the spec's etcd hosts is removed through the membership API
// (EtcdMembership).
type DetachedMember struct {
	Cluster string `json:"cluster"`
	Name    string `json:"name"`
	// API is the local agent's address ("127.0.0.1:8008"); Others are the
	// agent addresses of the cluster's database hosts.
	API    string   `json:"api"`
	TLSCA  string   `json:"tls_ca,omitempty"` // the CA bundle of an HTTPS API
	Others []string `json:"others"`
	// DataDir is the PostgreSQL data directory; RemoveData deletes it
	// (the -remove-data flag of plan and apply).
	DataDir    string `json:"data_dir"`
	RemoveData bool   `json:"remove_data,omitempty"`
	// Timeout bounds step 2 (default 2 minutes).
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Address implements Resource.
func (d DetachedMember) Address() string { return "detached_member." + d.Cluster }

func (d DetachedMember) valid() error {
	if d.Cluster == "" || strings.ContainsAny(d.Cluster, "\n\"") || d.Name == "" {
		return fmt.Errorf("%s: cluster and member names required: %w", d.Address(), ErrInvalid)
	}
	if !strings.HasPrefix(d.DataDir, "/") || d.DataDir == "/" {
		return fmt.Errorf("%s: data dir %q: want an absolute path: %w", d.Address(), d.DataDir, ErrInvalid)
	}
	return nil
}

// Probe implements Resource.
func (d DetachedMember) Probe() string {
	if d.valid() != nil {
		return invalidProbe
	}
	return "if [ -f " + AgentUnitPath + " ]; then echo unit=yes; else echo unit=no; fi\n" +
		"echo enabled=$(systemctl is-enabled " + AgentUnit + " 2>/dev/null)\n" +
		"echo active=$(systemctl is-active " + AgentUnit + " 2>/dev/null)\n" +
		"if grep -qF " + executors.Quote(`"cluster": `+jsonString(d.Cluster)) + " /etc/pgherd/agent.json 2>/dev/null; then echo ours=yes; fi\n" +
		"if [ -d " + executors.Quote(d.DataDir) + " ]; then echo data=yes; fi\n" +
		"if [ -x " + AgentBinaryPath + " ]; then echo '#cluster'; " + agentStatusCmd(d.API, d.TLSCA) + " 2>/dev/null; fi\nexit 0\n"
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Diff implements Resource.
func (d DetachedMember) Diff(f Fact) (planner.Change, []Step, error) {
	addr := d.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if err := d.valid(); err != nil {
		return ch, nil, err
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	head, cluster, _ := bytes.Cut(f.Stdout, []byte("#cluster\n"))
	kv := parseKV(head)
	role := ""
	var doc clusterDoc
	if json.Unmarshal(cluster, &doc) == nil {
		if i := slices.IndexFunc(doc.Members, func(m clusterMember) bool { return m.Name == d.Name }); i >= 0 {
			role = doc.Members[i].Role
		}
	}
	enabled, active := kv["enabled"] == "enabled", kv["active"] == "active" || kv["active"] == "activating"
	ours, data := kv["ours"] == "yes", kv["data"] == "yes"
	running := kv["unit"] == "yes" && ours && (enabled || active)
	if !running && !(data && d.RemoveData && ours) {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	var steps []Step
	if running {
		ch.Reason = d.Name + " is not a database host of cluster " + d.Cluster + " in the spec: drained and detached"
		state := strings.Trim(kv["enabled"]+"/"+kv["active"], "/")
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "agent", Before: state, After: "disabled/inactive"})
		if role != "" {
			after := "(detached)"
			if role == "leader" || role == "primary" {
				after = "(switchover first, then detached)"
				ch.Impact = "switchover: the primary moves to the most advanced replica"
			}
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "role", Before: role, After: after})
		}
		steps = append(steps, Step{Desc: "systemctl disable --now " + AgentUnit + " (a leader hands over first)",
			Cmd: "systemctl disable --now " + AgentUnit})
		if len(d.Others) > 0 {
			steps = append(steps, Step{Desc: "wait until the other members no longer list " + d.Name + " (its replication slot is dropped)",
				Run: d.waitGone})
		}
	}
	switch {
	case d.RemoveData && data:
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "data directory", Before: d.DataDir, After: "(deleted: -remove-data)"})
		if ch.Reason == "" {
			ch.Reason = "-remove-data names " + d.Name
		}
		steps = append(steps, Step{Desc: "rm -rf " + d.DataDir + " (-remove-data)", Cmd: "rm -rf " + executors.Quote(d.DataDir)})
	case data:
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "data directory", Before: d.DataDir, After: d.DataDir + " (kept; -remove-data " + d.Name + " deletes it)"})
	}
	return ch, steps, nil
}

// waitGone polls the other members' agents until one answers without this
// member in its /cluster document.
func (d DetachedMember) waitGone(ctx context.Context, h Host) error {
	timeout := d.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	deadline := time.Now().Add(timeout)
	last := "no member answered"
	for {
		for _, api := range d.Others {
			res, err := h.Run(ctx, AgentBinaryPath+" agent status --api "+executors.Quote(api), nil)
			if err != nil {
				return err
			}
			var doc clusterDoc
			if res.ExitCode != 0 || json.Unmarshal(res.Stdout, &doc) != nil {
				continue
			}
			if !slices.ContainsFunc(doc.Members, func(m clusterMember) bool { return m.Name == d.Name }) {
				return nil
			}
			last = api + " still lists " + d.Name
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still a member after %s: %s", d.Name, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
