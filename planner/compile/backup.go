package compile

import (
	"maps"
	"net"
	"path"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/modules"
	"github.com/pgherd/pgherd/spec"
)

// archiveParameters turn WAL archiving on through pgherd wal-push when the
// cluster has a backup block; restore_command lets a replica that fell
// behind the primary's WAL catch up from the archive.
func archiveParameters(c *spec.Cluster) map[string]string {
	params := maps.Clone(c.Postgres.Parameters)
	if params == nil {
		params = map[string]string{}
	}
	if c.Backup == nil {
		return params
	}
	params["archive_mode"] = "on"
	params["archive_command"] = modules.AgentBinaryPath + " wal-push %p"
	params["restore_command"] = modules.AgentBinaryPath + " wal-fetch %f %p"
	return params
}

// sftpKeyFiles are where an sftp repository's private_key and host_key go
// on the database hosts, beside the agent's configuration: backup-sftp.key
// and backup-sftp.known_hosts for an unnamed repository,
// backup-sftp-<name>.key and .known_hosts for a named one.
func sftpKeyFiles(r spec.BackupRepository) (key, knownHosts string) {
	base := "backup-sftp"
	if r.Name != "" {
		base += "-" + r.Name
	}
	return path.Join(agentConfigDir, base+".key"), path.Join(agentConfigDir, base+".known_hosts")
}

// agentRetention is the retention r as the agent's configuration says it.
func agentRetention(r spec.BackupRetention) agent.BackupRetention {
	a := agent.BackupRetention{Full: r.Full}
	a.Age.Duration = r.Age
	return a
}

// backupConfig is the backup section of the agent's configuration.
func backupConfig(c *spec.Cluster) *agent.BackupConfig {
	b := c.Backup
	if b == nil || len(b.Repositories) == 0 {
		return nil
	}
	cfg := &agent.BackupConfig{
		CompressionLevel:        b.CompressionLevel,
		EncryptionPassphrase:    b.EncryptionPassphrase,
		Parallel:                b.Parallel,
		From:                    string(b.From),
		CreateReplicaFromBackup: b.CreateReplicaFromBackup,
		SpoolDir:                b.SpoolDir,
		Retention:               agentRetention(b.Retention),
	}
	for _, r := range b.Repositories {
		ar := agent.BackupRepository{Name: r.Name, Type: r.Type, Path: r.Path}
		if r.Retention != nil {
			ret := agentRetention(*r.Retention)
			ar.Retention = &ret
		}
		switch r.Type {
		case spec.RepoSFTP:
			ar.SFTP = &agent.SFTPRepository{Host: r.Host, Port: r.Port, User: r.User, KeyFile: r.KeyFile,
				KnownHosts: r.KnownHosts, Root: r.Root}
			key, knownHosts := sftpKeyFiles(r)
			if r.PrivateKey != "" {
				ar.SFTP.KeyFile = key
			}
			if r.HostKey != "" {
				ar.SFTP.KnownHosts = knownHosts
			}
		case spec.RepoS3:
			ar.S3 = &agent.S3Repository{Endpoint: r.Endpoint, Region: r.Region, Bucket: r.Bucket, Prefix: r.Prefix,
				AccessKey: r.AccessKey, SecretKey: r.SecretKey}
		}
		cfg.Repositories = append(cfg.Repositories, ar)
	}
	return cfg
}

// backupResources are what backups need on a database host: for each
// repository, a path repository's directory, an sftp repository's key
// files, and the repository initialized (once; a path repository is per
// host unless it is on shared storage); and the systemd timers of the
// schedule, which take a backup into each repository in turn. The timers
// run on every database host; `pgherd backup` exits 3 (skipped, a success
// for the unit) where it should not run (on the primary when backups come
// from a standby).
func backupResources(c *spec.Cluster, h spec.Host) []modules.Resource {
	b := c.Backup
	if b == nil || len(b.Repositories) == 0 {
		return nil
	}
	var rs []modules.Resource
	if b.SpoolDir != "" {
		rs = append(rs, modules.Directory{Path: b.SpoolDir, Owner: "postgres", Group: "postgres", Mode: "0700"})
	}
	for _, r := range b.Repositories {
		if r.Type == spec.RepoPath {
			rs = append(rs, modules.Directory{Path: r.Path, Owner: "postgres", Group: "postgres", Mode: "0750"})
		}
		key, knownHosts := sftpKeyFiles(r)
		if r.PrivateKey != "" {
			rs = append(rs, modules.File{Path: key, Content: strings.TrimRight(r.PrivateKey, "\n") + "\n",
				Owner: "postgres", Group: "postgres", Mode: "0600", Sensitive: true})
		}
		if r.HostKey != "" {
			addr := knownhosts.Normalize(net.JoinHostPort(r.Host, strconv.Itoa(r.Port)))
			rs = append(rs, modules.File{Path: knownHosts, Content: addr + " " + r.HostKey + "\n",
				Owner: "root", Group: "postgres", Mode: "0640"})
		}
	}
	for _, r := range b.Repositories {
		if r.Type == spec.RepoPath || h.Name == c.Postgres.Hosts[0] {
			rs = append(rs, modules.BackupRepository{Cluster: c.Name, Repo: r.Name, Watch: []string{"file." + agent.ConfigPath}})
		}
	}
	backupArgs := " --expire"
	if len(b.Repositories) > 1 {
		backupArgs += " --all-repos"
	}
	enabled := true
	for _, s := range []struct{ kind, calendar string }{{"full", b.Schedule.Full}, {"incr", b.Schedule.Incremental}} {
		if s.calendar == "" {
			continue
		}
		name := "pgherd-backup-" + s.kind
		rs = append(rs,
			modules.Service{Name: name + ".service", Unit: `[Unit]
Description=pgherd ` + s.kind + ` backup
After=pgherd-agent.service

[Service]
Type=oneshot
User=postgres
ExecStart=` + modules.AgentBinaryPath + ` backup --type ` + s.kind + backupArgs + `
# 3: not this host's turn (see pgherd backup --help).
SuccessExitStatus=3
`},
			modules.Service{Name: name + ".timer", Enabled: &enabled, State: modules.Running, Unit: `[Unit]
Description=pgherd ` + s.kind + ` backup schedule

[Timer]
OnCalendar=` + s.calendar + `
Persistent=true
RandomizedDelaySec=60

[Install]
WantedBy=timers.target
`})
	}
	return rs
}
