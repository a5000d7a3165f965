package spec

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Model is a decoded, validated spec: what the hosts should look like.
// Every value is resolved (variables substituted, defaults filled in); a
// sensitive value is marked so that plans and logs never print it.
type Model struct {
	// Sources are the spec files the model was read from.
	Sources []string
	SSH     SSH
	Hosts   []Host

	Packages    []Package
	Files       []File
	Directories []Directory
	Groups      []Group
	Users       []User
	Services    []Service
	Sysctls     []Sysctl

	// Sensitive holds every sensitive value of the spec, so that output
	// filters can mask them wherever they would appear.
	Sensitive []string
}

// HostKeyCheck is how strictly a host's SSH key is checked.
type HostKeyCheck string

const (
	// HostKeyStrict refuses hosts not in known_hosts and changed keys.
	HostKeyStrict HostKeyCheck = "strict"
	// HostKeyAcceptNew records the key of a host seen for the first time
	// and refuses a changed one.
	HostKeyAcceptNew HostKeyCheck = "accept-new"
)

// SSH is how pgherd reaches the hosts. A host block may override User and
// Port.
type SSH struct {
	User           string
	Port           int
	PrivateKeyFile string // "" when not set; "~" expanded
	UseAgent       bool
	KnownHostsFile string // default ~/.ssh/known_hosts
	HostKeyCheck   HostKeyCheck
	JumpHost       string // "user@host:port", "" for none
	Sudo           bool   // run commands through sudo -n when User is not root
	ConnectTimeout time.Duration
	CommandTimeout time.Duration
}

// Host is one machine pgherd manages.
type Host struct {
	Name    string
	Address string
	User    string // "" means SSH.User
	Port    int    // 0 means SSH.Port
	Labels  map[string]string
	Roles   []string
	Range   hcl.Range
}

// Target selects the hosts a resource applies to: the named hosts, and the
// hosts that have any of the roles. Both empty means every host.
type Target struct {
	Hosts []string
	Roles []string
}

// State says whether a resource should exist.
type State string

const (
	Present State = "present"
	Absent  State = "absent"
)

// Package is a Debian package.
type Package struct {
	Name    string
	Version string // "" for any; an exact version pins it
	Hold    bool   // apt-mark hold
	State   State
	Target  Target
	Range   hcl.Range
}

// File is a regular file with its content.
type File struct {
	Path      string
	Content   string // from content, or read from source at decode time
	Owner     string // default root
	Group     string // default root
	Mode      string // octal, default "0644"
	Sensitive bool   // content never shown in plans or logs
	State     State
	Notify    []string // addresses of resources notified when it changes; a service's is normalised as its Name ("service.nginx" → "service.nginx.service")
	Target    Target
	Range     hcl.Range
}

// Directory is a directory.
type Directory struct {
	Path   string
	Owner  string
	Group  string
	Mode   string // default "0755"
	State  State
	Target Target
	Range  hcl.Range
}

// Group is a Unix group.
type Group struct {
	Name   string
	GID    int // 0 means any
	System bool
	State  State
	Target Target
	Range  hcl.Range
}

// User is a Unix user.
type User struct {
	Name   string
	UID    int // 0 means any
	Group  string
	Groups []string
	Home   string
	Shell  string
	System bool
	State  State
	Target Target
	Range  hcl.Range
}

// Service is a systemd unit.
type Service struct {
	Name    string // unit name; ".service" added when no suffix is given
	Enabled *bool  // nil: leave as it is
	State   string // "running", "stopped", or "" to leave as it is
	// Reload, when true, makes a notification reload the unit instead of
	// restarting it.
	Reload bool
	// Unit, when set, is the unit file's content, written to
	// /etc/systemd/system/<name>.
	Unit   string
	Target Target
	Range  hcl.Range
}

// Sysctl is a kernel parameter, set live and persisted in
// /etc/sysctl.d/99-pgherd.conf.
type Sysctl struct {
	Key    string
	Value  string
	Target Target
	Range  hcl.Range
}
