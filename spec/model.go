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

	// Cluster is the highly available PostgreSQL cluster, nil when the
	// spec has no cluster block.
	Cluster *Cluster

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

// Cluster is a highly available PostgreSQL cluster. Host lists are
// resolved: they hold host names, in the order the hosts are declared.
type Cluster struct {
	Name     string
	Postgres Postgres
	Etcd     Etcd
	HA       HA
	Rolling  Rolling
	// Members holds one entry per PostgreSQL host, in the order of
	// Postgres.Hosts, with defaults for a host without a member block.
	Members    []Member
	HAProxy    *HAProxy    // nil when not wanted
	Keepalived *Keepalived // nil when not wanted
	Backup     *Backup     // nil when not wanted
	TLS        *TLS        // nil when the cluster does not use TLS
	Range      hcl.Range
}

// Member returns the HA settings of a PostgreSQL host, and false when the
// host is not one.
func (c *Cluster) Member(host string) (Member, bool) {
	for _, m := range c.Members {
		if m.Host == host {
			return m, true
		}
	}
	return Member{}, false
}

// Postgres is PostgreSQL on the cluster's hosts.
type Postgres struct {
	Version        int    // major version
	PackageVersion string // exact Debian version, "" for any
	Port           int
	DataDir        string
	Hosts          []string
	// Adopt names the host whose running PostgreSQL (installed by hand,
	// Debian's <version>/main cluster) becomes the cluster's first primary
	// without a restart; "" when the cluster is bootstrapped afresh.
	Adopt string
	// SuperuserPassword is the password of the postgres role.
	SuperuserPassword   string
	ReplicationUser     string
	ReplicationPassword string
	Parameters          map[string]string
	HBA                 []HBARule
	Roles               []Role
	Databases           []Database
	Range               hcl.Range
}

// HBARule is a pg_hba.conf line.
type HBARule struct {
	Type     string // local, host, hostssl, hostnossl
	Database string
	User     string
	Address  string // "" for local
	Method   string
	Range    hcl.Range
}

// Role is a PostgreSQL role.
type Role struct {
	Name            string
	Password        string // "" for none
	Login           bool
	Superuser       bool
	CreateDB        bool
	CreateRole      bool
	Replication     bool
	ConnectionLimit int // -1 for none
	MemberOf        []string
	Range           hcl.Range
}

// Database is a PostgreSQL database.
type Database struct {
	Name       string
	Owner      string
	Extensions []string
	Range      hcl.Range
}

// Etcd is the etcd cluster the agents use as their DCS.
type Etcd struct {
	Hosts             []string
	ClientPort        int
	PeerPort          int
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration
	// TLS is true when the cluster has a tls block.
	TLS   bool
	Range hcl.Range // the cluster's when there is no etcd block
}

// SyncMode is the HA synchronous replication mode.
type SyncMode string

// Synchronous modes.
const (
	SyncOff    SyncMode = "off"
	SyncOn     SyncMode = "on"
	SyncStrict SyncMode = "strict"
)

// HA is how the agents run the cluster.
type HA struct {
	TTL                  time.Duration
	LoopWait             time.Duration
	RetryTimeout         time.Duration
	SwitchoverTimeout    time.Duration
	MaximumLagOnFailover int64 // bytes
	SynchronousMode      SyncMode
	SynchronousNodeCount int
	SynchronousQuorum    bool
	APIPort              int
	APIToken             string // "" when the write verbs are refused
	Pause                bool
	Range                hcl.Range // the cluster's when there is no ha block
}

// Rolling is the gates and the wait bound of rolling procedures.
type Rolling struct {
	MaxLag            int64 // bytes
	MaxTransactionAge time.Duration
	Timeout           time.Duration
	Range             hcl.Range // the cluster's when there is no rolling block
}

// Member is the HA settings of one PostgreSQL host.
type Member struct {
	Host       string
	Priority   int
	NoFailover bool
	NoSync     bool
	Range      hcl.Range // the cluster's for a host without a member block
}

// HAProxy routes clients to the primary and the replicas.
type HAProxy struct {
	Hosts          []string
	PrimaryPort    int
	ReplicaPort    int
	StatsPort      int
	CheckInterval  time.Duration
	MaxConnections int
	Range          hcl.Range
}

// Keepalived moves a virtual IP between HAProxy hosts.
type Keepalived struct {
	Hosts     []string
	VIP       string // address/prefix length, such as "10.0.0.100/24"
	Interface string
	RouterID  int
	Password  string // "" for none
	Range     hcl.Range
}

// Backup is the cluster's backups: WAL archiving and scheduled base
// backups by the pgherd agent into one or more repositories.
type Backup struct {
	// Repositories are in the spec's order (the first is the default of
	// the commands); each has a unique Name when there are several.
	Repositories         []BackupRepository
	CompressionLevel     int
	EncryptionPassphrase string // "" for an unencrypted repository
	Parallel             int
	Schedule             BackupSchedule
	Retention            BackupRetention
	From                 BackupFrom
	// CreateReplicaFromBackup makes new replicas restore the latest
	// backup instead of copying the primary.
	CreateReplicaFromBackup bool
	// SpoolDir, when set, makes WAL archiving asynchronous and WAL
	// fetching prefetch, through this local directory.
	SpoolDir string
	Range    hcl.Range
}

// BackupFrom is where base backups are taken.
type BackupFrom string

// Where base backups are taken.
const (
	BackupFromStandby BackupFrom = "standby"
	BackupFromPrimary BackupFrom = "primary"
)

// Repository types.
const (
	RepoPath = "path"
	RepoSFTP = "sftp"
	RepoS3   = "s3"
)

// BackupRepository is where backups and archived WAL are stored. The
// fields that do not belong to its Type are empty.
type BackupRepository struct {
	// Name is "" for a single repository given without one.
	Name string
	// Retention is the repository's own retention (its retention block,
	// with the backup block's for what it leaves out); nil without one.
	Retention *BackupRetention
	Type      string // RepoPath, RepoSFTP or RepoS3
	// Path is the directory of a path repository.
	Path string
	// SFTP: the server, its user, the key and known_hosts files on the
	// PostgreSQL hosts, and the repository's directory on the server.
	Host       string
	Port       int
	User       string
	KeyFile    string
	KnownHosts string
	// PrivateKey and HostKey are the key and the server's public key
	// given by value instead of KeyFile and KnownHosts.
	PrivateKey string
	HostKey    string
	Root       string
	// S3: the endpoint URL, region, bucket, key prefix and credentials.
	Endpoint  string
	Region    string
	Bucket    string
	Prefix    string
	AccessKey string
	SecretKey string
	Range     hcl.Range
}

// BackupSchedule says when base backups run, as systemd OnCalendar
// expressions.
type BackupSchedule struct {
	Full        string
	Incremental string // "" for none
	Range       hcl.Range
}

// BackupRetention says which backups are kept.
type BackupRetention struct {
	// Full is how many full backups are kept, with their incrementals.
	Full int
	// Age also keeps every full backup younger than this (0 for none).
	Age   time.Duration
	Range hcl.Range
}

// TLS is the cluster's TLS: the CAs every host trusts and where each host's
// certificate comes from.
type TLS struct {
	// CACert holds the trusted CA certificates, PEM, in the spec's order.
	CACert string
	// CAKey is the private key (PEM) of the CA of CACert that issues the
	// hosts' certificates; "" when every host has a supplied certificate.
	CAKey string
	// Hosts are the certificates given by host blocks, by host name.
	Hosts map[string]HostCert
	Range hcl.Range
}

// HostCert is a certificate given for one host.
type HostCert struct {
	Cert  string // PEM
	Key   string // PEM, sensitive
	Range hcl.Range
}
