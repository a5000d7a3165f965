package modules

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/internal/porttest"
)

var etcdMembers = []EtcdPeer{
	{Name: "db1", PeerURL: "http://10.77.0.11:2380"},
	{Name: "db2", PeerURL: "http://10.77.0.12:2380"},
	{Name: "db3", PeerURL: "http://10.77.0.13:2380"},
}

func TestRenderEtcdEnv(t *testing.T) {
	tlsMembers := make([]EtcdPeer, len(etcdMembers))
	for i, m := range etcdMembers {
		tlsMembers[i] = EtcdPeer{Name: m.Name, PeerURL: strings.Replace(m.PeerURL, "http:", "https:", 1)}
	}
	for _, tc := range []struct {
		name string
		cfg  EtcdConfig
	}{
		{"new", EtcdConfig{Name: "db1", Address: "10.77.0.11", Members: etcdMembers, Token: "pgherd-main"}},
		{"existing-tuned", EtcdConfig{Name: "db3", Address: "10.77.0.13", Members: etcdMembers, Token: "pgherd-main",
			ClusterState: "existing", Heartbeat: 100 * time.Millisecond, ElectionTimeout: time.Second, DataDir: "/srv/etcd"}},
		{"tls-hostname", EtcdConfig{Name: "db2", Address: "db2.lab", Members: []EtcdPeer{
			{Name: "db1", PeerURL: "https://db1.lab:2380"}, {Name: "db2", PeerURL: "https://db2.lab:2380"}}, Token: "t",
			TLS: EtcdTLS{CertFile: "/etc/pgherd/etcd.crt", KeyFile: "/etc/pgherd/etcd.key", TrustedCAFile: "/etc/pgherd/ca.crt", ClientCertAuth: true,
				PeerCertFile: "/etc/pgherd/peer.crt", PeerKeyFile: "/etc/pgherd/peer.key", PeerTrustedCAFile: "/etc/pgherd/ca.crt"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			golden(t, "etcd/env/"+tc.name+".env", RenderEtcdEnv(tc.cfg))
		})
	}
}

func TestEtcdConfigInvalid(t *testing.T) {
	ok := EtcdConfig{Name: "db1", Address: "10.77.0.11", Members: etcdMembers, Token: "pgherd-main"}
	for _, tc := range []struct {
		name string
		edit func(*EtcdConfig)
	}{
		{"name", func(c *EtcdConfig) { c.Name = "-db1" }},
		{"self not member", func(c *EtcdConfig) { c.Name = "db9" }},
		{"address", func(c *EtcdConfig) { c.Address = "10.77.0.11 x" }},
		{"same ports", func(c *EtcdConfig) { c.ClientPort, c.PeerPort = 2380, 2380 }},
		{"state", func(c *EtcdConfig) { c.ClusterState = "join" }},
		{"token", func(c *EtcdConfig) { c.Token = "" }},
		{"election short", func(c *EtcdConfig) { c.Heartbeat, c.ElectionTimeout = 100*time.Millisecond, 300*time.Millisecond }},
		{"relative data dir", func(c *EtcdConfig) { c.DataDir = "etcd" }},
		{"dup member", func(c *EtcdConfig) { c.Members = []EtcdPeer{etcdMembers[0], etcdMembers[0]} }},
		{"peer url path", func(c *EtcdConfig) { c.Members = []EtcdPeer{etcdMembers[0], {Name: "x", PeerURL: "http://a:1/p"}} }},
		{"cert without key", func(c *EtcdConfig) { c.TLS.CertFile = "/etc/x.crt" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate = %v, want ErrInvalid", err)
			}
			if _, err := EtcdResources(c); !errors.Is(err, ErrInvalid) {
				t.Errorf("EtcdResources = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestEtcdResourcesOrder(t *testing.T) {
	rs, err := EtcdResources(EtcdConfig{Name: "db1", Address: "10.77.0.11", Members: etcdMembers, Token: "pgherd-main"})
	if err != nil {
		t.Fatal(err)
	}
	var addrs []string
	for _, r := range rs {
		addrs = append(addrs, r.Address())
	}
	// The file must come before the package: Debian starts etcd on install.
	want := "file./etc/default/etcd etcd_member.db1 packages.etcd directory./var/lib/etcd/pgherd service.etcd"
	if got := strings.Join(addrs, " "); got != want {
		t.Errorf("order = %q, want %q", got, want)
	}
}

// startEtcd runs a real etcd with the environment RenderEtcdEnv gives for
// cfg, as Debian's etcd.service would, and waits until it serves clients.
// The process is killed at the end of the test.
func startEtcd(t *testing.T, cfg EtcdConfig) *exec.Cmd {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("etcd")
	sc := bufio.NewScanner(strings.NewReader(RenderEtcdEnv(cfg)))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for sc.Scan() {
		if l := sc.Text(); l != "" && !strings.HasPrefix(l, "#") {
			cmd.Env = append(cmd.Env, l)
		}
	}
	log, err := os.Create(filepath.Join(t.TempDir(), cfg.Name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); log.Close() })
	return cmd
}

// waitHealthy polls etcdctl endpoint health until endpoint answers (up to 30 s).
func waitHealthy(t *testing.T, endpoint string) {
	t.Helper()
	for i := 0; ; i++ {
		err := exec.Command("etcdctl", "--endpoints="+endpoint, "--dial-timeout=1s", "--command-timeout=2s", "endpoint", "health").Run()
		if err == nil {
			return
		}
		if i == 60 {
			t.Fatalf("etcd at %s not healthy after 30 s: %v", endpoint, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestEtcdMembershipLive grows a real one-member etcd cluster to two
// through EtcdMembership, then checks the quorum guard refuses to remove
// the last healthy member while the other is down, and removes the dead
// one.
func TestEtcdMembershipLive(t *testing.T) {
	for _, bin := range []string{"etcd", "etcdctl"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (apt-get install etcd-server etcd-client)", bin)
		}
	}
	h := localHost{}
	dir := t.TempDir()
	cp1, pp1, cp2, pp2 := porttest.Free(t), porttest.Free(t), porttest.Free(t), porttest.Free(t)
	e1 := EtcdPeer{Name: "e1", PeerURL: EtcdPeerURL("127.0.0.1", pp1, false)}
	e2 := EtcdPeer{Name: "e2", PeerURL: EtcdPeerURL("127.0.0.1", pp2, false)}
	base := EtcdConfig{Address: "127.0.0.1", Token: "pgherd-test", Heartbeat: 50 * time.Millisecond, ElectionTimeout: 500 * time.Millisecond}
	c1 := base
	c1.Name, c1.ClientPort, c1.PeerPort, c1.DataDir, c1.Members = "e1", cp1, pp1, filepath.Join(dir, "e1"), []EtcdPeer{e1}
	startEtcd(t, c1)
	ep1, ep2 := etcdURL("127.0.0.1", cp1, false), etcdURL("127.0.0.1", cp2, false)
	waitHealthy(t, ep1)

	m := EtcdMembership{Cluster: "test", Endpoints: []string{ep1}, Members: []EtcdPeer{e1, e2}}
	ch, steps, err := m.Diff(probe(t, h, m))
	if err != nil || len(steps) != 1 || !strings.Contains(steps[0].Cmd, "member add e2") {
		t.Fatalf("grow: %+v %+v %v", ch, steps, err)
	}
	run(t, h, steps...)
	// Added, not started yet: nothing more to do, and no second add.
	if ch, steps, err := m.Diff(probe(t, h, m)); err != nil || !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("after add: %+v %+v %v", ch, steps, err)
	}
	c2 := base
	c2.Name, c2.ClientPort, c2.PeerPort, c2.DataDir = "e2", cp2, pp2, filepath.Join(dir, "e2")
	c2.Members, c2.ClusterState = []EtcdPeer{e1, e2}, "existing"
	p2 := startEtcd(t, c2)
	waitHealthy(t, ep2)
	if ch, steps, err := m.Diff(probe(t, h, m)); err != nil || !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("after start: %+v %+v %v", ch, steps, err)
	}

	// e2 goes down: the cluster of two has lost quorum, and etcd reports
	// even e1 unhealthy. No membership change can go through: both
	// removals are refused with the reason.
	p2.Process.Kill()
	p2.Wait()
	only1 := EtcdMembership{Cluster: "test", Endpoints: []string{ep1}, Members: []EtcdPeer{e1}}
	only2 := EtcdMembership{Cluster: "test", Endpoints: []string{ep1}, Members: []EtcdPeer{e2}}
	for _, m := range []EtcdMembership{only1, only2} {
		ch, steps, err = m.Diff(probe(t, h, m))
		if err != nil || len(steps) != 0 || !strings.Contains(ch.Reason, "lost quorum") {
			t.Fatalf("remove without quorum: %+v %+v %v", ch, steps, err)
		}
	}

	// Both up: removing e2 leaves a healthy quorum of one.
	startEtcd(t, c2)
	waitHealthy(t, ep2)
	waitHealthy(t, ep1)
	ch, steps, err = only1.Diff(probe(t, h, only1))
	if err != nil || len(steps) != 1 || !strings.Contains(steps[0].Cmd, "member remove") {
		t.Fatalf("remove e2: %+v %+v %v", ch, steps, err)
	}
	// etcd itself refuses a removal until its leader has seen every
	// remaining member connected for a few seconds ("unhealthy cluster"):
	// the next apply retries; here, poll.
	for i := 0; ; i++ {
		res, err := h.Run(t.Context(), steps[0].Cmd, nil)
		if err == nil && res.ExitCode == 0 {
			break
		}
		if i == 30 || !bytes.Contains(res.Stderr, []byte("unhealthy cluster")) {
			t.Fatalf("member remove: %v %s", err, res.Stderr)
		}
		time.Sleep(time.Second)
	}
	if ch, steps, err := only1.Diff(probe(t, h, only1)); err != nil || !ch.IsNoOp() || len(steps) != 0 {
		t.Fatalf("after remove: %+v %+v %v", ch, steps, err)
	}
}

// run carries out steps on h, failing the test on the first error.
func run(t *testing.T, h Host, steps ...Step) {
	t.Helper()
	for _, s := range steps {
		if s.Cmd != "" {
			res, err := h.Run(t.Context(), s.Cmd, nil)
			if err == nil {
				err = res.Err(h.Name(), s.Cmd)
			}
			if err != nil {
				t.Fatalf("step %q: %v", s.Desc, err)
			}
			continue
		}
		if err := s.Run(t.Context(), h); err != nil {
			t.Fatalf("step %q: %v", s.Desc, fmt.Errorf("%w", err))
		}
	}
}
