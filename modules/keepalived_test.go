package modules

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var keepalivedOK = KeepalivedConfig{
	VIP: "10.77.0.100/24", Interface: "eth0", RouterID: 51, Priority: 100,
	UnicastSrcIP: "10.77.0.21", UnicastPeers: []string{"10.77.0.22", "10.77.0.23"},
}

func TestRenderKeepalived(t *testing.T) {
	full := keepalivedOK
	full.Instance, full.Priority, full.Preempt = "VI_main", 150, true
	full.AuthPass, full.Notify = "s3cr3tpw", "/usr/local/lib/pgherd/vip-notify"
	v6 := KeepalivedConfig{VIP: "fd00::100/64", Interface: "eth0", RouterID: 7, Priority: 90,
		UnicastSrcIP: "fd00::21", UnicastPeers: []string{"fd00::22"}}
	keepalived, _ := exec.LookPath("keepalived")
	for _, tc := range []struct {
		name string
		cfg  KeepalivedConfig
	}{{"defaults", keepalivedOK}, {"preempt-auth-notify", full}, {"ipv6", v6}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RenderKeepalived(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "keepalived/"+tc.name+".conf", got)
			if keepalived == "" {
				t.Skip("keepalived not installed (apt-get install keepalived): config not checked")
			}
			path := filepath.Join(t.TempDir(), "keepalived.conf")
			if err := os.WriteFile(path, []byte(onLocalInterface(got)), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(keepalived, "--config-test", "-f", path).CombinedOutput(); err != nil {
				t.Errorf("keepalived --config-test: %v\n%s", err, out)
			}
		})
	}
}

// onLocalInterface moves a rendered config to the loopback interface when
// this machine has no eth0: keepalived --config-test rejects an interface
// that does not exist (a useful check on a real host).
func onLocalInterface(conf string) string {
	if _, err := net.InterfaceByName("eth0"); err == nil {
		return conf
	}
	return strings.NewReplacer("interface eth0", "interface lo", "dev eth0", "dev lo").Replace(conf)
}

// TestKeepalivedConfigTestCatchesErrors makes sure the Validate command of
// the config file rejects a broken file, so that it is a real guard.
func TestKeepalivedConfigTestCatchesErrors(t *testing.T) {
	keepalived, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived not installed (apt-get install keepalived)")
	}
	good, err := RenderKeepalived(keepalivedOK)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	bad := strings.Replace(onLocalInterface(good), "advert_int 1", "advert_intt 1", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(keepalived, "--config-test", "-f", path).CombinedOutput(); err == nil {
		t.Errorf("keepalived --config-test accepted an unknown keyword:\n%s", out)
	}
}

func TestRenderKeepalivedInvalid(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*KeepalivedConfig)
	}{
		{"vip without prefix", func(c *KeepalivedConfig) { c.VIP = "10.77.0.100" }},
		{"interface", func(c *KeepalivedConfig) { c.Interface = "eth0 dev lo" }},
		{"router id 0", func(c *KeepalivedConfig) { c.RouterID = 0 }},
		{"router id 256", func(c *KeepalivedConfig) { c.RouterID = 256 }},
		{"priority 255", func(c *KeepalivedConfig) { c.Priority = 255 }},
		{"src not ip", func(c *KeepalivedConfig) { c.UnicastSrcIP = "db1" }},
		{"no peers", func(c *KeepalivedConfig) { c.UnicastPeers = nil }},
		{"self as peer", func(c *KeepalivedConfig) { c.UnicastPeers = []string{"10.77.0.21"} }},
		{"long pass", func(c *KeepalivedConfig) { c.AuthPass = "123456789" }},
		{"pass with quote", func(c *KeepalivedConfig) { c.AuthPass = `a"b` }},
		{"relative notify", func(c *KeepalivedConfig) { c.Notify = "notify.sh" }},
		{"instance", func(c *KeepalivedConfig) { c.Instance = "a b" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := keepalivedOK
			c.UnicastPeers = append([]string(nil), keepalivedOK.UnicastPeers...)
			tc.edit(&c)
			if _, err := RenderKeepalived(c); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestKeepalivedResources(t *testing.T) {
	c := keepalivedOK
	c.AuthPass = "pw"
	rs, err := KeepalivedResources(c)
	if err != nil {
		t.Fatal(err)
	}
	f := rs[1].(File)
	if !f.Sensitive || f.Mode != "0600" || f.Validate == "" {
		t.Errorf("file with an auth pass = %+v: want sensitive, 0600, validated", f)
	}
	s := rs[2].(Service)
	_, steps := s.Notify([]string{f.Address()})
	if len(steps) != 1 || steps[0].Cmd != "systemctl try-reload-or-restart keepalived.service" {
		t.Errorf("notify steps = %+v, want a reload", steps)
	}
	rs, _ = KeepalivedResources(keepalivedOK)
	if f := rs[1].(File); f.Sensitive || f.Mode != "0644" {
		t.Errorf("file without secret = %+v: want 0644, not sensitive", f)
	}
}
