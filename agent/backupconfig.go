package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/pgherd/pgherd/agent/backup"
)

// Repository types of BackupRepository.Type.
const (
	RepoPath = "path"
	RepoSFTP = "sftp"
	RepoS3   = "s3"
)

// Where base backups are taken from (BackupConfig.From).
const (
	FromStandby = "standby"
	FromPrimary = "primary"
)

// BackupConfig is the backup section of the agent's configuration: where
// the repository is and how to reach it, and how backups are taken and
// kept. It holds secrets (the encryption passphrase, the S3 secret key):
// pgherd apply writes the file 0600, owned by postgres.
type BackupConfig struct {
	Repository BackupRepository `json:"repository"`
	// CompressionLevel is the zstd level (1 to 22; 0 = the repository's,
	// 3 at init).
	CompressionLevel int `json:"compression_level,omitempty"`
	// EncryptionPassphrase encrypts the repository when set at init; it
	// must then be given to open it.
	EncryptionPassphrase string `json:"encryption_passphrase,omitempty"`
	// Parallel is the number of files copied at once by backup and
	// restore, and of concurrent WAL uploads (default 2).
	Parallel int `json:"parallel,omitempty"`
	// SpoolDir, when set, makes wal-push asynchronous (pushing ahead the
	// segments PostgreSQL marked ready) and wal-fetch prefetch; it must be
	// local and private to this host.
	SpoolDir string `json:"spool_dir,omitempty"`
	// KeyCacheDir keeps the key derived from EncryptionPassphrase for the
	// next wal-push and wal-fetch (backup.Options.KeyCacheDir); default
	// <run_dir>/backup-keys.
	KeyCacheDir string `json:"key_cache_dir,omitempty"`
	// Prefetch is how many segments wal-fetch keeps ready in SpoolDir
	// (default 8 when SpoolDir is set).
	Prefetch  int             `json:"prefetch,omitempty"`
	Retention BackupRetention `json:"retention"`
	// From is where `pgherd backup` takes the copy: FromStandby (default)
	// or FromPrimary.
	From string `json:"from,omitempty"`
	// CreateReplicaFromBackup makes a new replica restore the latest
	// backup instead of copying the primary with pg_basebackup.
	CreateReplicaFromBackup bool `json:"create_replica_from_backup,omitempty"`
	// ArchiveTimeout bounds how long a backup waits for its last WAL
	// segment to be archived (default 60s).
	ArchiveTimeout Duration `json:"archive_timeout,omitzero"`
}

// BackupRetention says which backups `pgherd backup expire` keeps.
type BackupRetention struct {
	// Full is how many full backups to keep, with their incrementals
	// (default 2).
	Full int `json:"full,omitempty"`
	// Age also keeps every full backup younger than this (0 = none).
	Age Duration `json:"age,omitzero"`
}

// BackupRepository says where the repository is.
type BackupRepository struct {
	// Type is RepoPath, RepoSFTP or RepoS3.
	Type string `json:"type"`
	// Path is the directory of a "path" repository (local disk or NFS).
	Path string          `json:"path,omitempty"`
	SFTP *SFTPRepository `json:"sftp,omitempty"`
	S3   *S3Repository   `json:"s3,omitempty"`
}

// SFTPRepository is how to reach an "sftp" repository.
type SFTPRepository struct {
	Host string `json:"host"`
	Port int    `json:"port,omitempty"` // default 22
	User string `json:"user"`
	// KeyFile is the private key (unencrypted) the agent authenticates
	// with.
	KeyFile string `json:"key_file"`
	// KnownHosts is the known_hosts file that must hold the server's key.
	KnownHosts string `json:"known_hosts"`
	// Root is the repository's absolute directory on the server.
	Root string `json:"root"`
}

// S3Repository is how to reach an "s3" repository.
type S3Repository struct {
	// Endpoint is the service's base URL, such as
	// https://s3.eu-west-1.amazonaws.com.
	Endpoint  string `json:"endpoint"`
	Region    string `json:"region,omitempty"`
	Bucket    string `json:"bucket"`
	Prefix    string `json:"prefix,omitempty"`
	AccessKey string `json:"access_key"`
	SecretKey string `json:"secret_key"`
}

// ErrNoBackup: the agent configuration has no backup section.
var ErrNoBackup = errors.New("the agent configuration has no backup section (add a backup block to the cluster)")

// Check reports every problem of the backup section and fills in the
// defaults.
func (b *BackupConfig) Check() error {
	if b == nil {
		return ErrNoBackup
	}
	var errs []error
	need := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("backup: "+format, args...))
		}
	}
	r := &b.Repository
	switch r.Type {
	case RepoPath:
		need(filepath.IsAbs(r.Path), "repository.path must be an absolute path, not %q", r.Path)
	case RepoSFTP:
		s := r.SFTP
		if need(s != nil, "repository.sftp is required for an sftp repository"); s != nil {
			need(s.Host != "", "repository.sftp.host is required")
			need(s.User != "", "repository.sftp.user is required")
			need(s.KeyFile != "", "repository.sftp.key_file is required")
			need(s.KnownHosts != "", "repository.sftp.known_hosts is required")
			need(filepath.IsAbs(s.Root), "repository.sftp.root must be an absolute path, not %q", s.Root)
			need(s.Port >= 0 && s.Port < 65536, "repository.sftp.port %d is not a port", s.Port)
			if s.Port == 0 {
				s.Port = 22
			}
		}
	case RepoS3:
		s := r.S3
		if need(s != nil, "repository.s3 is required for an s3 repository"); s != nil {
			need(s.Endpoint != "", "repository.s3.endpoint is required")
			need(s.Bucket != "", "repository.s3.bucket is required")
			need(s.AccessKey != "" && s.SecretKey != "", "repository.s3.access_key and secret_key are required")
		}
	default:
		need(false, "repository.type must be %q, %q or %q, not %q", RepoPath, RepoSFTP, RepoS3, r.Type)
	}
	need(b.CompressionLevel >= 0 && b.CompressionLevel <= 22, "compression_level must be from 1 to 22, not %d", b.CompressionLevel)
	need(b.Parallel >= 0, "parallel must be positive, not %d", b.Parallel)
	need(b.Prefetch >= 0, "prefetch must be positive, not %d", b.Prefetch)
	need(b.SpoolDir == "" || filepath.IsAbs(b.SpoolDir), "spool_dir must be an absolute path, not %q", b.SpoolDir)
	need(b.Retention.Full >= 0, "retention.full must be positive, not %d", b.Retention.Full)
	need(b.Retention.Age.Duration >= 0, "retention.age must not be negative")
	need(b.From == "" || b.From == FromStandby || b.From == FromPrimary, "from must be %q or %q, not %q", FromStandby, FromPrimary, b.From)
	if b.Parallel == 0 {
		b.Parallel = 2
	}
	if b.From == "" {
		b.From = FromStandby
	}
	if b.Retention.Full == 0 {
		b.Retention.Full = 2
	}
	if b.SpoolDir != "" && b.Prefetch == 0 {
		b.Prefetch = 8
	}
	if b.ArchiveTimeout.Duration == 0 {
		b.ArchiveTimeout.Duration = 60 * time.Second
	}
	return errors.Join(errs...)
}

// NewRepository connects to the configured repository. An SFTP repository
// holds a connection: close it (it is an io.Closer) when done.
func (b *BackupConfig) NewRepository(ctx context.Context) (backup.Repository, error) {
	r := b.Repository
	switch r.Type {
	case RepoPath:
		return backup.NewLocal(r.Path)
	case RepoSFTP:
		s := r.SFTP
		if s == nil {
			return nil, errors.New("backup: repository.sftp is missing")
		}
		key, err := os.ReadFile(s.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("backup: sftp key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("backup: sftp key %s: %w", s.KeyFile, err)
		}
		hk, err := knownhosts.New(s.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("backup: sftp known_hosts: %w", err)
		}
		port := s.Port
		if port == 0 {
			port = 22
		}
		return backup.DialSFTP(ctx, backup.SFTPConfig{
			Addr: net.JoinHostPort(s.Host, strconv.Itoa(port)), User: s.User,
			Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: hk, Root: s.Root,
		})
	case RepoS3:
		s := r.S3
		if s == nil {
			return nil, errors.New("backup: repository.s3 is missing")
		}
		return backup.NewS3(backup.S3Config{Endpoint: s.Endpoint, Region: s.Region, Bucket: s.Bucket,
			Prefix: s.Prefix, AccessKey: s.AccessKey, SecretKey: s.SecretKey})
	default:
		return nil, fmt.Errorf("backup: unknown repository type %q", r.Type)
	}
}

// WALFetchOptions are wal-fetch's options from this configuration.
func (b *BackupConfig) WALFetchOptions() backup.WALFetchOptions {
	opts := backup.WALFetchOptions{Parallel: b.Parallel}
	if b.SpoolDir != "" {
		opts.SpoolDir, opts.Prefetch = filepath.Join(b.SpoolDir, "fetch"), b.Prefetch
	}
	return opts
}

// WALPushOptions are wal-push's options from this configuration.
func (b *BackupConfig) WALPushOptions() backup.WALPushOptions {
	return backup.WALPushOptions{Async: b.SpoolDir != "", SpoolDir: filepath.Join(b.SpoolDir, "push"), Parallel: b.Parallel}
}

// StoreOptions are the options Open and Init give the store.
func (b *BackupConfig) StoreOptions(log *slog.Logger) backup.Options {
	return backup.Options{Passphrase: b.EncryptionPassphrase, Level: b.CompressionLevel, KeyCacheDir: b.KeyCacheDir, Log: log}
}

// Open connects to the repository and opens its store (backup.ErrNoConfig
// when it was never initialized, backup.ErrWrongKey for a wrong
// passphrase). When the repository holds a connection (SFTP),
// Store.Repository() is an io.Closer.
func (b *BackupConfig) Open(ctx context.Context, log *slog.Logger) (*backup.Store, error) {
	return b.open(ctx, log, backup.Open)
}

// Init connects to the repository and creates its configuration, with
// encryption when a passphrase is set (backup.ErrExists when there is one
// already).
func (b *BackupConfig) Init(ctx context.Context, log *slog.Logger) (*backup.Store, error) {
	return b.open(ctx, log, backup.Init)
}

func (b *BackupConfig) open(ctx context.Context, log *slog.Logger,
	fn func(context.Context, backup.Repository, backup.Options) (*backup.Store, error)) (*backup.Store, error) {
	if b == nil {
		return nil, ErrNoBackup
	}
	repo, err := b.NewRepository(ctx)
	if err != nil {
		return nil, err
	}
	st, err := fn(ctx, repo, b.StoreOptions(log))
	if err != nil {
		closeRepo(repo)
		return nil, err
	}
	return st, nil
}

func closeRepo(r backup.Repository) {
	if c, ok := r.(interface{ Close() error }); ok {
		c.Close()
	}
}

// RetentionPolicy is the retention as the library takes it.
func (b *BackupConfig) RetentionPolicy() backup.Retention {
	return backup.Retention{Full: b.Retention.Full, Age: b.Retention.Age.Duration}
}
