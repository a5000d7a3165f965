package modules

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
)

// KeepalivedConfigPath is where Debian's keepalived package reads its
// configuration.
const KeepalivedConfigPath = "/etc/keepalived/keepalived.conf"

// KeepalivedCheckScript is how keepalived tells that HAProxy runs on its
// host: systemd's view of the unit (active, reloading included, so a
// graceful reload never moves the VIP). Two alternatives failed here:
// pidof is killall5 on Debian 12 and refuses to run under its resolved
// name, and vrrp_track_process needs the kernel's process events, which a
// container outside the initial network namespace does not get (the lab's
// hosts: keepalived stays in FAULT). A VIP holder whose haproxy is down goes
// to FAULT and the VIP moves.
const KeepalivedCheckScript = "/usr/bin/systemctl is-active --quiet haproxy.service"

// KeepalivedConfig is one host's VRRP instance holding the cluster's VIP.
//
// Every host starts as BACKUP and the highest Priority wins the election.
// With Preempt false (the default) keepalived runs with nopreempt: a host
// that comes back, even with a higher priority, does not take the VIP back
// from a healthy holder, so clients are cut once per failure rather than
// twice. Preempt true lets the preferred host take the VIP back.
//
// When the check script fails twice in a row (1 s interval) the instance
// enters FAULT and releases the VIP; it needs two successes to return.
type KeepalivedConfig struct {
	// Instance names the vrrp_instance (default "pgherd_vip").
	Instance string
	// VIP is the virtual address with its prefix: "10.77.0.100/24".
	VIP string
	// Interface carries the VIP and the VRRP adverts: "eth0".
	Interface string
	// RouterID is the VRRP virtual router id, 1–255, the same on all
	// hosts of the VIP and unique on the network segment.
	RouterID int
	// Priority of this host, 1–254; the highest wins.
	Priority int
	// UnicastSrcIP is this host's address; UnicastPeers are the other
	// hosts' addresses. Adverts go by unicast to the peers only.
	UnicastSrcIP string
	UnicastPeers []string
	// Preempt: see the type's documentation.
	Preempt bool
	// AuthPass, when set, enables VRRP PASS authentication (at most 8
	// characters, all hosts alike). It is a weak shared secret: the file
	// is then written 0600 and treated as sensitive.
	AuthPass string
	// Notify, when set, is an absolute path to a script keepalived runs
	// on every state change (arguments: type, name, state, priority).
	Notify string
}

var (
	kaName   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	kaIface  = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	kaPath   = regexp.MustCompile(`^/[A-Za-z0-9_./-]+$`)
	kaSecret = regexp.MustCompile(`^[!-~]{1,8}$`) // printable, no space, no quote issues below
)

func (c KeepalivedConfig) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("keepalived: "+format+": %w", append(args, ErrInvalid)...)
	}
	if !kaName.MatchString(c.Instance) {
		return bad("instance name %q", c.Instance)
	}
	if _, err := netip.ParsePrefix(c.VIP); err != nil {
		return bad("vip %q: want an address with its prefix, like 10.0.0.100/24", c.VIP)
	}
	if !kaIface.MatchString(c.Interface) || strings.HasPrefix(c.Interface, "-") {
		return bad("interface %q", c.Interface)
	}
	if c.RouterID < 1 || c.RouterID > 255 {
		return bad("router id %d: want 1-255", c.RouterID)
	}
	if c.Priority < 1 || c.Priority > 254 {
		return bad("priority %d: want 1-254", c.Priority)
	}
	if net.ParseIP(c.UnicastSrcIP) == nil {
		return bad("unicast source %q: want an IP address", c.UnicastSrcIP)
	}
	if len(c.UnicastPeers) == 0 {
		return bad("no unicast peers")
	}
	for _, p := range c.UnicastPeers {
		if net.ParseIP(p) == nil || p == c.UnicastSrcIP {
			return bad("unicast peer %q: want the IP address of another host", p)
		}
	}
	if c.AuthPass != "" && (!kaSecret.MatchString(c.AuthPass) || strings.ContainsAny(c.AuthPass, `"\#!`)) {
		return bad("auth pass: want 1-8 printable characters without spaces, quotes, '\\', '#' or '!'")
	}
	if c.Notify != "" && !kaPath.MatchString(c.Notify) {
		return bad("notify %q: want an absolute path", c.Notify)
	}
	return nil
}

// RenderKeepalived renders keepalived.conf for one host of the VIP.
// Scripts run as root with enable_script_security (keepalived then refuses
// a script any other user could modify).
func RenderKeepalived(cfg KeepalivedConfig) (string, error) {
	c := cfg
	if c.Instance == "" {
		c.Instance = "pgherd_vip"
	}
	if err := c.validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# Managed by pgherd: changes are overwritten.")
	w("global_defs {")
	w("    router_id %s", c.Instance)
	w("    script_user root")
	w("    enable_script_security")
	w("}")
	w("")
	w("vrrp_script chk_haproxy {")
	w("    script %q", KeepalivedCheckScript)
	w("    interval 1")
	w("    timeout 2")
	w("    fall 2")
	w("    rise 1")
	w("}")
	w("")
	w("vrrp_instance %s {", c.Instance)
	w("    state BACKUP")
	w("    interface %s", c.Interface)
	w("    virtual_router_id %d", c.RouterID)
	w("    priority %d", c.Priority)
	w("    advert_int 1")
	if !c.Preempt {
		w("    nopreempt")
	}
	w("    unicast_src_ip %s", c.UnicastSrcIP)
	w("    unicast_peer {")
	for _, p := range c.UnicastPeers {
		w("        %s", p)
	}
	w("    }")
	if c.AuthPass != "" {
		w("    authentication {")
		w("        auth_type PASS")
		w("        auth_pass %s", c.AuthPass)
		w("    }")
	}
	w("    virtual_ipaddress {")
	w("        %s dev %s", c.VIP, c.Interface)
	w("    }")
	w("    track_script {")
	w("        chk_haproxy")
	w("    }")
	if c.Notify != "" {
		w("    notify %q", c.Notify)
	}
	w("}")
	return b.String(), nil
}

// KeepalivedResources are the resources of a keepalived host, in order: the
// keepalived package, the configuration file (checked with
// `keepalived --config-test` before it replaces the old one; 0600 and
// sensitive when it holds an auth pass), and the keepalived service, enabled
// and running, reloaded when the configuration changes. Debian's
// keepalived.service reloads with SIGHUP, which rereads the configuration and
// keeps the VIP where it is when the instance is unchanged; a restart would
// drop the VIP on this host and force a new election.
func KeepalivedResources(cfg KeepalivedConfig) ([]Resource, error) {
	content, err := RenderKeepalived(cfg)
	if err != nil {
		return nil, err
	}
	file := File{
		Path:       KeepalivedConfigPath,
		Content:    content,
		Owner:      "root",
		Group:      "root",
		Mode:       "0644",
		Validate:   "keepalived --config-test -f %s",
		NotifyList: []string{"service.keepalived"},
	}
	if cfg.AuthPass != "" {
		file.Mode = "0600"
		file.Sensitive = true
	}
	return []Resource{
		Packages{Name: "keepalived", Packages: []Package{{Name: "keepalived"}}},
		file,
		Service{Name: "keepalived", Enabled: new(true), State: Running, Reload: true, Watch: []string{file.Address()}},
	}, nil
}
