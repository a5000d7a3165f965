package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// The kinds of fault the nemesis injects.
var faultKinds = []string{
	"host-kill",     // docker kill, then start: power loss and reboot
	"partition",     // the host reaches no other host (the checker still reaches it)
	"pause",         // docker pause: a frozen VM
	"agent-kill",    // SIGKILL to the agent alone; systemd restarts it
	"postgres-kill", // SIGKILL to the postmaster; the agent restarts it
	"etcd-loss",     // the host's etcd member killed and kept down
	"front-loss",    // HAProxy and keepalived stopped on node1 or node2
	"disk-full",     // a replica's data disk filled to the last byte
}

// fronts are the hosts that run HAProxy and keepalived (examples/ha).
var fronts = []string{"node1", "node2"}

// nemesis injects one fault at a time, on a host the seeded RNG picks
// (the primary half of the time), holds it for a random time and heals
// it, until ctx ends.
type nemesis struct {
	rng    *rand.Rand
	hosts  []string
	faults []Fault
	logf   func(format string, args ...any)
	// withRole names a host the agents report in role ("primary",
	// "replica"), "" when there is none.
	withRole func(ctx context.Context, role string) string
}

func (n *nemesis) run(ctx context.Context) {
	for ctx.Err() == nil {
		kind := faultKinds[n.rng.IntN(len(faultKinds))]
		host := n.hosts[n.rng.IntN(len(n.hosts))]
		toPrimary := n.rng.IntN(2) == 0
		// Most faults are short; three in ten outlast the leader key's
		// ttl (10 s), so that a frozen or cut-off primary is replaced
		// and comes back.
		hold := time.Duration(1000+n.rng.IntN(4000)) * time.Millisecond
		if n.rng.IntN(10) < 3 {
			hold = time.Duration(12000+n.rng.IntN(8000)) * time.Millisecond
		}
		rest := time.Duration(500+n.rng.IntN(2000)) * time.Millisecond
		switch {
		case kind == "front-loss":
			host = fronts[n.rng.IntN(len(fronts))]
		case kind == "disk-full":
			if host = n.withRole(ctx, "replica"); host == "" {
				continue
			}
		case toPrimary:
			if p := n.withRole(ctx, "primary"); p != "" {
				host = p
			}
		}
		n.inject(ctx, kind, host, hold)
		sleep(ctx, rest)
	}
}

// inject runs one fault: it is healed before inject returns, even when
// ctx ends while it holds.
func (n *nemesis) inject(ctx context.Context, kind, host string, hold time.Duration) {
	f := Fault{Kind: kind, Host: host, Start: time.Now()}
	heal, err := n.start(kind, host)
	if err != nil {
		f.Missed, f.Err = true, err.Error()
	}
	n.logf("fault %d: %s on %s (hold %s) %s", len(n.faults)+1, kind, host, hold.Round(100*time.Millisecond), f.Err)
	if heal != nil {
		sleep(ctx, hold)
		if err := heal(); err != nil {
			f.Err = strings.TrimSpace(f.Err + " heal: " + err.Error())
			n.logf("fault %d: heal %s on %s: %v", len(n.faults)+1, kind, host, err)
		}
		f.Healed = time.Now()
	}
	n.faults = append(n.faults, f)
}

// start injects a fault and returns what heals it (nil when it heals by
// itself).
func (n *nemesis) start(kind, host string) (heal func() error, err error) {
	sh := func(script string) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			out, err := theLab.Exec(ctx, host, "sh", "-c", script)
			if err != nil {
				return fmt.Errorf("%s: %w %s", script, err, strings.TrimSpace(out))
			}
			return nil
		}
	}
	lab := func(op func(context.Context, string) error) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			return op(ctx, host)
		}
	}
	var inject func() error
	switch kind {
	case "host-kill":
		inject, heal = lab(theLab.Kill), lab(theLab.Start)
	case "partition":
		// Every packet to the lab's subnet is dropped, except to the
		// machine running the soak (the gateway): the checker keeps
		// seeing the host, as Jepsen's control node does.
		inject = sh(fmt.Sprintf("ip rule add priority 90 to %s.1 lookup main && ip rule add priority 91 to %s blackhole", labNet, labSubnet))
		heal = sh("ip rule del priority 91; ip rule del priority 90")
	case "pause":
		inject, heal = lab(theLab.Pause), lab(theLab.Unpause)
	case "agent-kill":
		inject = sh("systemctl kill --kill-whom=main -s KILL pgherd-agent.service")
	case "postgres-kill":
		inject = sh("kill -9 $(head -1 " + dataDir + "/postmaster.pid)")
	case "etcd-loss":
		inject = sh("systemctl kill -s KILL etcd.service; systemctl stop etcd.service")
		heal = sh("systemctl start etcd.service")
	case "front-loss":
		inject = sh("systemctl stop keepalived.service haproxy.service")
		heal = sh("systemctl start haproxy.service keepalived.service")
	case "disk-full":
		// fallocate takes all but the last page at once, dd the rest.
		inject = sh("fallocate -l $(( $(df --output=avail -B1 /data | tail -1) - 4096 )) /data/chaos-fill; dd if=/dev/zero of=/data/chaos-fill2 bs=4k 2>/dev/null; df /data | tail -1")
		heal = sh("rm -f /data/chaos-fill /data/chaos-fill2")
	default:
		return nil, fmt.Errorf("unknown fault %q", kind)
	}
	if err := inject(); err != nil {
		// Not injected (the process was already down, say): heal
		// anyway, the fault may be half done.
		return heal, err
	}
	return heal, nil
}
