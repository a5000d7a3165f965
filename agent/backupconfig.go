package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
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
// the repositories are and how to reach them, and how backups are taken
// and kept. It holds secrets (the encryption passphrase, the S3 secret
// key): pgherd apply writes the file 0600, owned by postgres.
type BackupConfig struct {
	// Repositories are where WAL and backups go, in order (see
	// docs/backup.md): WAL is archived into every one; wal-fetch and
	// restore take from the first that has what they need; backup,
	// list, verify and expire take --repo. In JSON, "repositories" (each
	// with a unique name), or "repository" for a single one: the form
	// written before there could be several, still the one written for
	// a single repository (MarshalJSON).
	Repositories []BackupRepository `json:"repositories,omitempty"`
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

// BackupRepository says where a repository is.
type BackupRepository struct {
	// Name tells the repositories apart (--repo); required and unique
	// when there are several.
	Name string `json:"name,omitempty"`
	// Type is RepoPath, RepoSFTP or RepoS3.
	Type string `json:"type"`
	// Path is the directory of a "path" repository (local disk or NFS).
	Path string          `json:"path,omitempty"`
	SFTP *SFTPRepository `json:"sftp,omitempty"`
	S3   *S3Repository   `json:"s3,omitempty"`
	// Retention, when set, replaces the backup section's retention for
	// this repository (a Full of 0 is the section's Full).
	Retention *BackupRetention `json:"retention,omitempty"`
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

// MarshalJSON writes a single repository as "repository", the form
// agents read before there could be several.
func (b BackupConfig) MarshalJSON() ([]byte, error) {
	type plain BackupConfig
	out := struct {
		Repository *BackupRepository `json:"repository,omitempty"`
		plain
	}{plain: plain(b)}
	if len(b.Repositories) == 1 {
		out.Repository, out.plain.Repositories = &b.Repositories[0], nil
	}
	return json.Marshal(out)
}

// UnmarshalJSON reads "repositories", or "repository" for a single one.
func (b *BackupConfig) UnmarshalJSON(data []byte) error {
	type plain BackupConfig
	var in struct {
		Repository *BackupRepository `json:"repository"`
		plain
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return err
	}
	*b = BackupConfig(in.plain)
	if in.Repository != nil {
		if len(b.Repositories) > 0 {
			return errors.New("backup: give \"repository\" or \"repositories\", not both")
		}
		b.Repositories = []BackupRepository{*in.Repository}
	}
	return nil
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
	if len(b.Repositories) == 0 {
		errs = append(errs, errors.New("backup: a repository is required"))
	}
	seen := map[string]int{}
	for i := range b.Repositories {
		r := &b.Repositories[i]
		field := "repository"
		if len(b.Repositories) > 1 {
			field = fmt.Sprintf("repositories[%d]", i)
			need(r.Name != "", "%s.name is required when there are several repositories", field)
		}
		need(r.Name == "" || repoName.MatchString(r.Name), "%s.name %q must be lower-case letters, digits and dashes, starting with a letter", field, r.Name)
		if j, dup := seen[r.Name]; dup && r.Name != "" {
			need(false, "%s.name %q is the name of repositories[%d] already", field, r.Name, j)
		}
		seen[r.Name] = i
		errs = append(errs, r.check(field)...)
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

// repoName is what a repository's name may be: it goes into file names
// and command lines.
var repoName = regexp.MustCompile(`^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$`)

// check reports the problems of a repository, whose settings are field
// ("repository" or "repositories[i]") of the backup section, and fills in
// its defaults.
func (r *BackupRepository) check(field string) []error {
	var errs []error
	need := func(ok bool, format string, args ...any) bool {
		if !ok {
			errs = append(errs, fmt.Errorf("backup: "+field+"."+format, args...))
		}
		return ok
	}
	if r.Retention != nil {
		need(r.Retention.Full >= 0, "retention.full must be positive, not %d", r.Retention.Full)
		need(r.Retention.Age.Duration >= 0, "retention.age must not be negative")
	}
	switch r.Type {
	case RepoPath:
		need(filepath.IsAbs(r.Path), "path must be an absolute path, not %q", r.Path)
	case RepoSFTP:
		s := r.SFTP
		if need(s != nil, "sftp is required for an sftp repository") {
			need(s.Host != "", "sftp.host is required")
			need(s.User != "", "sftp.user is required")
			need(s.KeyFile != "", "sftp.key_file is required")
			need(s.KnownHosts != "", "sftp.known_hosts is required")
			need(filepath.IsAbs(s.Root), "sftp.root must be an absolute path, not %q", s.Root)
			need(s.Port >= 0 && s.Port < 65536, "sftp.port %d is not a port", s.Port)
			if s.Port == 0 {
				s.Port = 22
			}
		}
	case RepoS3:
		s := r.S3
		if need(s != nil, "s3 is required for an s3 repository") {
			need(s.Endpoint != "", "s3.endpoint is required")
			need(s.Bucket != "", "s3.bucket is required")
			need(s.AccessKey != "" && s.SecretKey != "", "s3.access_key and secret_key are required")
		}
	default:
		need(false, "type must be %q, %q or %q, not %q", RepoPath, RepoSFTP, RepoS3, r.Type)
	}
	return errs
}

// Location says where the repository is, without secrets: "path /srv/b",
// "sftp user@host:22/srv/b", "s3 https://endpoint/bucket/prefix".
func (r *BackupRepository) Location() string {
	switch {
	case r.Type == RepoSFTP && r.SFTP != nil:
		return fmt.Sprintf("sftp %s@%s%s", r.SFTP.User, net.JoinHostPort(r.SFTP.Host, strconv.Itoa(r.SFTP.Port)), r.SFTP.Root)
	case r.Type == RepoS3 && r.S3 != nil:
		return fmt.Sprintf("s3 %s/%s/%s", strings.TrimSuffix(r.S3.Endpoint, "/"), r.S3.Bucket, r.S3.Prefix)
	}
	return r.Type + " " + r.Path
}

// String names the repository in messages: `repository "offsite"`, or
// "the repository" when it has no name.
func (r *BackupRepository) String() string {
	if r.Name == "" {
		return "the repository"
	}
	return fmt.Sprintf("repository %q", r.Name)
}

// Repository returns the repository named name, or the first when name is
// "".
func (b *BackupConfig) Repository(name string) (*BackupRepository, error) {
	if b == nil {
		return nil, ErrNoBackup
	}
	var names []string
	for i := range b.Repositories {
		if r := &b.Repositories[i]; name == "" || r.Name == name {
			return r, nil
		}
		names = append(names, strconv.Quote(b.Repositories[i].Name))
	}
	if len(names) == 1 && b.Repositories[0].Name == "" {
		return nil, fmt.Errorf("backup: no repository named %q: the only repository has no name (leave out --repo)", name)
	}
	return nil, fmt.Errorf("backup: no repository named %q; the repositories are %s", name, strings.Join(names, ", "))
}

// Connect connects to the repository. An SFTP repository holds a
// connection: close it (it is an io.Closer) when done.
func (r *BackupRepository) Connect(ctx context.Context) (backup.Repository, error) {
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
	return backup.WALPushOptions{Async: b.SpoolDir != "", SpoolDir: filepath.Join(b.SpoolDir, "push"), Parallel: b.Parallel,
		SpoolTag: b.repositoriesTag()}
}

// repositoriesTag identifies the repositories, for the records of WAL
// files pushed ahead: a file pushed ahead before a repository was added
// (or moved) is pushed again.
func (b *BackupConfig) repositoriesTag() string {
	h := sha256.New()
	for _, r := range b.Repositories {
		fmt.Fprintf(h, "%q %s\n", r.Name, r.Location())
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// StoreOptions are the options Open and Init give the store of r.
func (b *BackupConfig) StoreOptions(log *slog.Logger, r *BackupRepository) backup.Options {
	return backup.Options{Passphrase: b.EncryptionPassphrase, Level: b.CompressionLevel, KeyCacheDir: b.KeyCacheDir, Name: r.Name, Log: log}
}

// Open connects to the repository named name (the first for "") and opens
// its store (backup.ErrNoConfig when it was never initialized,
// backup.ErrWrongKey for a wrong passphrase). Close the store when done.
func (b *BackupConfig) Open(ctx context.Context, log *slog.Logger, name string) (*backup.Store, error) {
	r, err := b.Repository(name)
	if err != nil {
		return nil, err
	}
	return b.open(ctx, log, r, backup.Open)
}

// Init connects to the repository named name (the first for "") and
// creates its configuration, with encryption when a passphrase is set
// (backup.ErrExists when there is one already).
func (b *BackupConfig) Init(ctx context.Context, log *slog.Logger, name string) (*backup.Store, error) {
	r, err := b.Repository(name)
	if err != nil {
		return nil, err
	}
	return b.open(ctx, log, r, backup.Init)
}

func (b *BackupConfig) open(ctx context.Context, log *slog.Logger, r *BackupRepository,
	fn func(context.Context, backup.Repository, backup.Options) (*backup.Store, error)) (*backup.Store, error) {
	repo, err := r.Connect(ctx)
	if err != nil {
		return nil, err
	}
	st, err := fn(ctx, repo, b.StoreOptions(log, r))
	if err != nil {
		closeRepo(repo)
		return nil, err
	}
	return st, nil
}

// Stores are every repository, in order, each opened when first needed:
// what wal-push archives into and wal-fetch reads from. Close them when
// done.
func (b *BackupConfig) Stores(log *slog.Logger) *backup.Stores {
	names := make([]string, len(b.Repositories))
	for i, r := range b.Repositories {
		names[i] = r.Name
	}
	return backup.NewStores(names, func(ctx context.Context, i int) (*backup.Store, error) {
		return b.open(ctx, log, &b.Repositories[i], backup.Open)
	}, log)
}

// OpenForRestore opens the repository a restore with opts reads: the one
// named name, or, for "", the first, in order, that has a backup the
// restore can start from (backup.ErrNoBackup, wrapped, when none has).
// wrap, when not nil, wraps each repository before its store is opened
// (the CLI counts the bytes read, for progress). Close the store when
// done.
func (b *BackupConfig) OpenForRestore(ctx context.Context, log *slog.Logger, name string, opts backup.RestoreOptions,
	wrap func(backup.Repository) backup.Repository) (*backup.Store, error) {
	if b == nil {
		return nil, ErrNoBackup
	}
	repos := b.Repositories
	if name != "" {
		r, err := b.Repository(name)
		if err != nil {
			return nil, err
		}
		repos = []BackupRepository{*r}
	}
	var errs []error
	for i := range repos {
		r := &repos[i]
		st, err := b.open(ctx, log, r, func(ctx context.Context, repo backup.Repository, o backup.Options) (*backup.Store, error) {
			if wrap != nil {
				repo = wrap(repo)
			}
			return backup.Open(ctx, repo, o)
		})
		if err == nil {
			if _, err = st.FindBackup(ctx, opts); err == nil {
				return st, nil
			}
			st.Close()
		}
		if len(repos) == 1 {
			return nil, err
		}
		errs = append(errs, fmt.Errorf("%s: %w", r, err))
	}
	return nil, errors.Join(errs...)
}

func closeRepo(r backup.Repository) {
	if c, ok := r.(interface{ Close() error }); ok {
		c.Close()
	}
}

// RetentionPolicy is the retention of the repository r as the library
// takes it: r's own, or the section's.
func (b *BackupConfig) RetentionPolicy(r *BackupRepository) backup.Retention {
	ret := b.Retention
	if r != nil && r.Retention != nil {
		ret = *r.Retention
		if ret.Full == 0 {
			ret.Full = b.Retention.Full
		}
	}
	return backup.Retention{Full: ret.Full, Age: ret.Age.Duration}
}
