// Package agent is `pgherd agent`: on each database host it keeps exactly
// one writable primary in the cluster (the role Patroni plays), gluing the
// pure decision (agent/ha), etcd (agent/dcs), the local PostgreSQL
// (agent/pg) and the REST API (agent/api).
package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgherd/pgherd/agent/pg"
)

// ConfigPath is where pgherd apply writes the agent's configuration.
const ConfigPath = "/etc/pgherd/agent.json"

// Duration is a time.Duration written as "10s" in JSON.
type Duration struct{ time.Duration }

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// Credentials are a PostgreSQL role's name and password.
type Credentials struct {
	User     string `json:"user"`
	Password string `json:"password"`
}

// Config is the agent's configuration file, written by pgherd apply (mode
// 0600, owned by postgres).
type Config struct {
	Cluster string `json:"cluster"`
	Name    string `json:"name"`
	// Address is this host's address as the other members reach it, for
	// replication and the API.
	Address string `json:"address"`
	// RunDir holds the agent's runtime files (default /run/pgherd).
	RunDir string `json:"run_dir,omitempty"`

	Postgres struct {
		BinDir    string `json:"bin_dir"`
		DataDir   string `json:"data_dir"`
		Port      int    `json:"port"`
		SocketDir string `json:"socket_dir"`
		Listen    string `json:"listen"`
		// LogFile receives PostgreSQL's own log (default: beside the data
		// directory).
		LogFile    string            `json:"log_file,omitempty"`
		Parameters map[string]string `json:"parameters,omitempty"`
		// HBA is the content of pg_hba.conf, rendered by pgherd.
		HBA         string      `json:"hba"`
		Superuser   Credentials `json:"superuser"`
		Replication Credentials `json:"replication"`
		// Roles and Databases are created (never dropped) by the leader.
		Roles     []pg.Role     `json:"roles,omitempty"`
		Databases []pg.Database `json:"databases,omitempty"`
		// OSUser is the user PostgreSQL runs as when the agent runs as
		// root (tests); the agent normally runs as postgres itself.
		OSUser string `json:"os_user,omitempty"`
		// Adopt names the member whose running PostgreSQL, started by
		// someone else, becomes the new cluster's first primary (see
		// ha.View.Adopt); "" for a cluster bootstrapped with initdb.
		Adopt string `json:"adopt,omitempty"`
	} `json:"postgres"`

	Etcd struct {
		Endpoints []string `json:"endpoints"`
	} `json:"etcd"`

	API struct {
		Listen string `json:"listen"` // ":8008"
		Token  string `json:"token,omitempty"`
	} `json:"api"`

	// TLS, when set, is used everywhere: etcd (https endpoints, this
	// certificate as client certificate), the API (HTTPS), PostgreSQL
	// (ssl = on) and replication (sslmode=verify-full). The files are read
	// again when they change, so that renewed certificates need no
	// restart.
	TLS TLSFiles `json:"tls,omitzero"`

	// Backup configures archiving and base backups (see backupconfig.go);
	// nil when the spec has no backup block.
	Backup *BackupConfig `json:"backup,omitempty"`

	HA struct {
		TTL                  Duration `json:"ttl"`
		LoopWait             Duration `json:"loop_wait"`
		RetryTimeout         Duration `json:"retry_timeout"`
		MaximumLagOnFailover int64    `json:"maximum_lag_on_failover"`
		SynchronousMode      string   `json:"synchronous_mode"`
		SynchronousNodeCount int      `json:"synchronous_node_count"`
		SynchronousQuorum    bool     `json:"synchronous_quorum"`
		Priority             int      `json:"priority"`
		NoFailover           bool     `json:"nofailover"`
		NoSync               bool     `json:"nosync"`
		// SwitchoverTimeout bounds a switchover (see
		// dcs.Config.SwitchoverTimeout); 0: the default.
		SwitchoverTimeout Duration `json:"switchover_timeout,omitzero"`
	} `json:"ha"`
}

// Instance is the local PostgreSQL the configuration describes.
func (c *Config) Instance(log *slog.Logger) *pg.Instance {
	return &pg.Instance{
		Name:            c.Name,
		BinDir:          c.Postgres.BinDir,
		DataDir:         c.Postgres.DataDir,
		Port:            c.Postgres.Port,
		SocketDir:       c.Postgres.SocketDir,
		ListenAddresses: c.Postgres.Listen,
		Superuser:       c.Postgres.Superuser.User,
		User:            c.Postgres.OSUser,
		LogFile:         c.Postgres.LogFile,
		Log:             log,
	}
}

// LoadConfig reads and checks the configuration file at path.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	return &c, nil
}

func (c *Config) check() error {
	var errs []error
	need := func(ok bool, what string) {
		if !ok {
			errs = append(errs, errors.New(what))
		}
	}
	need(c.Cluster != "", "cluster is required")
	need(c.Name != "", "name is required")
	need(c.Address != "", "address is required")
	need(c.Postgres.BinDir != "", "postgres.bin_dir is required")
	need(c.Postgres.DataDir != "", "postgres.data_dir is required")
	need(c.Postgres.Port > 0, "postgres.port is required")
	need(len(c.Etcd.Endpoints) > 0, "etcd.endpoints is required")
	need(c.Postgres.Superuser.User != "", "postgres.superuser.user is required")
	need(c.Postgres.Replication.User != "" && c.Postgres.Replication.Password != "", "postgres.replication user and password are required")
	if err := c.TLS.check(); err != nil {
		errs = append(errs, err)
	}
	need(c.HA.TTL.Duration >= 2*time.Second, "ha.ttl must be at least 2s")
	need(c.HA.LoopWait.Duration > 0 && c.HA.LoopWait.Duration*2 <= c.HA.TTL.Duration, "ha.loop_wait must be positive and at most half of ttl")
	if c.Postgres.SocketDir == "" {
		c.Postgres.SocketDir = "/var/run/postgresql"
	}
	if c.Postgres.Listen == "" {
		c.Postgres.Listen = "*"
	}
	if c.RunDir == "" {
		c.RunDir = "/run/pgherd"
	}
	if c.Backup != nil && c.Backup.KeyCacheDir == "" {
		c.Backup.KeyCacheDir = filepath.Join(c.RunDir, "backup-keys")
	}
	if c.API.Listen == "" {
		c.API.Listen = ":8008"
	}
	if c.HA.RetryTimeout.Duration == 0 {
		c.HA.RetryTimeout.Duration = c.HA.TTL.Duration / 2
	}
	return errors.Join(errs...)
}
