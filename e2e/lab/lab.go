// Package lab runs real Debian hosts for pgherd's end-to-end tests and quick
// start: Docker containers that boot systemd and sshd on a private network
// with fixed addresses, reachable over SSH with a key and known_hosts file
// the lab writes itself. It drives the docker CLI; it has no Docker SDK
// dependency.
//
// A lab named N is made of the images pgherd-lab-base:bookworm (debootstrap)
// and pgherd-lab-host:bookworm (systemd and sshd set up for a container),
// which all labs share, the network N
// and the containers N-node1 … N-nodeK, all labelled pgherd.lab=N. Its state
// directory holds the SSH key, known_hosts, lab.hcl (a spec snippet naming
// the hosts) and lab.json (what Open reads back).
package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Defaults of Config.
const (
	DefaultName   = "pgherd-lab"
	DefaultHosts  = 3
	DefaultSubnet = "10.77.0.0/24"
	// MaxHosts is the most hosts a lab runs.
	MaxHosts = 200
	// firstHostOffset is the last octet of node1's address (.11).
	firstHostOffset = 11
	// labelLab marks every container and network of a lab with its name.
	labelLab = "pgherd.lab"
	// imagePrefix names the images, which every lab shares: a recipe
	// builds the same image whatever the lab's name.
	imagePrefix = "pgherd-lab"
	// labelHost marks a container with its host name.
	labelHost = "pgherd.lab.host"
)

// Config says which lab to run. The zero value is the default lab.
type Config struct {
	// Name prefixes the lab's containers, network and images; default
	// "pgherd-lab".
	Name string
	// Hosts is the number of hosts, default 3. Open takes it from the
	// lab's state file when it is zero.
	Hosts int
	// Subnet is the lab network's IPv4 subnet, default "10.77.0.0/24";
	// hosts get .11, .12, … Open takes it from the state file when empty.
	Subnet string
	// Dir is the state directory (SSH key, known_hosts, lab.hcl); default
	// $PGHERD_LAB_DIR, else ~/.cache/pgherd/lab/<name>.
	Dir string
	// Log receives progress; nil discards it.
	Log *slog.Logger
	// DataDisk, when set (a tmpfs size such as "768m"), gives each host a
	// disk of its own at /data: a tmpfs of that size mounted on the
	// machine under the state directory and bound into the host, so that
	// it survives Kill and Start and can be filled up (a disk-full fault).
	// Down unmounts it.
	DataDisk string
}

// Host is one lab host.
type Host struct {
	Name      string // host name inside the lab and in lab.hcl: node1, node2, …
	Address   string // fixed IPv4 address on the lab network
	Container string // docker container name
}

// Lab is a set of hosts on a lab network. Its methods are safe for
// concurrent use: a Lab holds no mutable state.
type Lab struct {
	name   string
	subnet netip.Prefix
	dir    string
	hosts  []Host
	log    *slog.Logger
	// dataDisk is Config.DataDisk.
	dataDisk string
}

// state is lab.json, what Up leaves for Open.
type state struct {
	Name   string `json:"name"`
	Subnet string `json:"subnet"`
	Hosts  []Host `json:"hosts"`
}

// Open describes an existing lab without touching it. It reads the lab's
// state file (lab.json) when there is one, for the number of hosts and the
// subnet that Config leaves unset; without one it describes the lab Config
// would bring up. Down works on the result whether or not the lab exists.
func Open(cfg Config) (*Lab, error) {
	cfg, err := withState(cfg)
	if err != nil {
		return nil, err
	}
	return newLab(cfg)
}

// withState fills in Config's defaults, taking the number of hosts and the
// subnet from the lab's state file when Config leaves them unset.
func withState(cfg Config) (Config, error) {
	cfg, err := withDefaultsName(cfg)
	if err != nil {
		return cfg, err
	}
	b, err := os.ReadFile(filepath.Join(cfg.Dir, "lab.json"))
	switch {
	case err == nil:
		var st state
		if err := json.Unmarshal(b, &st); err != nil {
			return cfg, fmt.Errorf("lab %s: read state: %w", cfg.Name, err)
		}
		if cfg.Hosts == 0 {
			cfg.Hosts = len(st.Hosts)
		}
		if cfg.Subnet == "" {
			cfg.Subnet = st.Subnet
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return cfg, fmt.Errorf("lab %s: read state: %w", cfg.Name, err)
	}
	return cfg, nil
}

func withDefaultsName(cfg Config) (Config, error) {
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if !validName(cfg.Name) {
		return cfg, fmt.Errorf("lab name %q: use lower-case letters, digits, '-' and '_', starting with a letter or digit", cfg.Name)
	}
	if cfg.Dir == "" {
		cfg.Dir = os.Getenv("PGHERD_LAB_DIR")
	}
	if cfg.Dir == "" {
		cache, err := os.UserCacheDir()
		if err != nil {
			return cfg, fmt.Errorf("lab state directory: %w (set PGHERD_LAB_DIR)", err)
		}
		cfg.Dir = filepath.Join(cache, "pgherd", "lab", cfg.Name)
	}
	if abs, err := filepath.Abs(cfg.Dir); err == nil {
		cfg.Dir = abs
	}
	return cfg, nil
}

func newLab(cfg Config) (*Lab, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Hosts == 0 {
		cfg.Hosts = DefaultHosts
	}
	if cfg.Subnet == "" {
		cfg.Subnet = DefaultSubnet
	}
	if cfg.Hosts < 1 || cfg.Hosts > MaxHosts {
		return nil, fmt.Errorf("lab %s: %d hosts: want 1 to %d", cfg.Name, cfg.Hosts, MaxHosts)
	}
	prefix, err := netip.ParsePrefix(cfg.Subnet)
	if err != nil || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("lab %s: subnet %q: want an IPv4 CIDR such as %s", cfg.Name, cfg.Subnet, DefaultSubnet)
	}
	prefix = prefix.Masked()
	addrs, err := hostAddrs(prefix, cfg.Hosts)
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", cfg.Name, err)
	}
	l := &Lab{
		name:   cfg.Name,
		subnet: prefix,
		dir:    cfg.Dir,
		log:    cfg.Log.With("lab", cfg.Name),

		dataDisk: cfg.DataDisk,
	}
	for i, a := range addrs {
		n := "node" + strconv.Itoa(i+1)
		l.hosts = append(l.hosts, Host{Name: n, Address: a.String(), Container: cfg.Name + "-" + n})
	}
	return l, nil
}

// hostAddrs gives n addresses in prefix from .11 on.
func hostAddrs(prefix netip.Prefix, n int) ([]netip.Addr, error) {
	a := prefix.Addr()
	for range firstHostOffset {
		a = a.Next()
	}
	out := make([]netip.Addr, 0, n)
	for range n {
		out = append(out, a)
		a = a.Next()
	}
	// The last address must leave the broadcast address free.
	if last := out[len(out)-1]; !prefix.Contains(last) || !prefix.Contains(last.Next()) {
		return nil, fmt.Errorf("subnet %s is too small for %d hosts from .%d", prefix, n, firstHostOffset)
	}
	return out, nil
}

func validName(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for i, r := range s {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || i > 0 && (r == '-' || r == '_')
		if !ok {
			return false
		}
	}
	return true
}

// Name is the lab's name.
func (l *Lab) Name() string { return l.name }

// Dir is the lab's state directory.
func (l *Lab) Dir() string { return l.dir }

// Subnet is the lab network's subnet.
func (l *Lab) Subnet() string { return l.subnet.String() }

// Hosts lists the lab's hosts in order, node1 first.
func (l *Lab) Hosts() []Host { return append([]Host(nil), l.hosts...) }

// KeyFile is the path of the private key that logs in as root on every host.
func (l *Lab) KeyFile() string { return filepath.Join(l.dir, "id_ed25519") }

// KnownHostsFile is the path of the known_hosts file holding every host's key.
func (l *Lab) KnownHostsFile() string { return filepath.Join(l.dir, "known_hosts") }

// SpecFile is the path of lab.hcl, the text of SpecSnippet.
func (l *Lab) SpecFile() string { return filepath.Join(l.dir, "lab.hcl") }

func (l *Lab) stateFile() string { return filepath.Join(l.dir, "lab.json") }

func (l *Lab) network() string { return l.name }

func (l *Lab) baseImage() string { return imagePrefix + "-base:" + Suite }

func (l *Lab) hostImage() string { return imagePrefix + "-host:" + Suite }

// host finds a host by name ("node1") or container name.
func (l *Lab) host(name string) (Host, error) {
	for _, h := range l.hosts {
		if h.Name == name || h.Container == name {
			return h, nil
		}
	}
	return Host{}, fmt.Errorf("%w %q in lab %s (hosts: node1 to node%d)", ErrUnknownHost, name, l.name, len(l.hosts))
}

// SpecSnippet is a pgherd spec fragment that reaches the lab's hosts: an
// ssh block with the lab's key and known_hosts file, and one host block
// per host. Up writes the same text to lab.hcl.
func (l *Lab) SpecSnippet() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# pgherd lab %q: %d hosts on %s. Written by `pgherd lab up`.\n\n", l.name, len(l.hosts), l.subnet)
	b.WriteString("ssh {\n")
	b.WriteString("  user             = \"root\"\n")
	fmt.Fprintf(&b, "  private_key_file = %s\n", hclString(l.KeyFile()))
	fmt.Fprintf(&b, "  known_hosts_file = %s\n", hclString(l.KnownHostsFile()))
	b.WriteString("  host_key_check   = \"strict\"\n")
	b.WriteString("}\n")
	for _, h := range l.hosts {
		fmt.Fprintf(&b, "\nhost %s {\n  address = %s\n}\n", hclString(h.Name), hclString(h.Address))
	}
	return b.String()
}

// hclString quotes s as an HCL string literal.
func hclString(s string) string {
	q := strconv.Quote(s)
	// HCL reads "${" and "%{" as template sequences.
	q = strings.ReplaceAll(q, "${", "$${")
	return strings.ReplaceAll(q, "%{", "%%{")
}
