package agent

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
)

func TestBackupConfigCheck(t *testing.T) {
	tests := []struct {
		name string
		cfg  BackupConfig
		want string // a part of the error; "" for none
	}{
		{name: "path", cfg: BackupConfig{Repository: BackupRepository{Type: RepoPath, Path: "/srv/backup"}}},
		{name: "relative path", cfg: BackupConfig{Repository: BackupRepository{Type: RepoPath, Path: "backup"}}, want: "repository.path must be an absolute path"},
		{name: "unknown type", cfg: BackupConfig{Repository: BackupRepository{Type: "nfs"}}, want: `repository.type must be "path", "sftp" or "s3"`},
		{name: "sftp without settings", cfg: BackupConfig{Repository: BackupRepository{Type: RepoSFTP}}, want: "repository.sftp is required"},
		{name: "sftp", cfg: BackupConfig{Repository: BackupRepository{Type: RepoSFTP, SFTP: &SFTPRepository{
			Host: "h", User: "u", KeyFile: "/k", KnownHosts: "/kh", Root: "/r"}}}},
		{name: "s3 without secret", cfg: BackupConfig{Repository: BackupRepository{Type: RepoS3, S3: &S3Repository{
			Endpoint: "http://127.0.0.1:1", Bucket: "b", AccessKey: "a"}}}, want: "secret_key are required"},
		{name: "bad level and from", cfg: BackupConfig{Repository: BackupRepository{Type: RepoPath, Path: "/b"}, CompressionLevel: 23, From: "replica"},
			want: "compression_level must be from 1 to 22"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Check()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Check() = %v, want %q", err, tt.want)
			}
			if err == nil && (tt.cfg.Parallel != 2 || tt.cfg.From != FromStandby || tt.cfg.Retention.Full != 2 || tt.cfg.ArchiveTimeout.Duration != time.Minute) {
				t.Errorf("defaults not filled in: %+v", tt.cfg)
			}
		})
	}
	var none *BackupConfig
	if err := none.Check(); !errors.Is(err, ErrNoBackup) {
		t.Errorf("nil config: %v", err)
	}
}

// TestBackupConfigOpen initializes an encrypted path repository and opens
// it again, with the right and a wrong passphrase.
func TestBackupConfigOpen(t *testing.T) {
	ctx := t.Context()
	cfg := &BackupConfig{Repository: BackupRepository{Type: RepoPath, Path: t.TempDir()}, EncryptionPassphrase: "right", CompressionLevel: 7}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Open(ctx, nil); !errors.Is(err, backup.ErrNoConfig) {
		t.Fatalf("open before init: %v", err)
	}
	st, err := cfg.Init(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Encrypted() || st.Config().Level != 7 {
		t.Fatalf("store: encrypted %v, config %+v", st.Encrypted(), st.Config())
	}
	if _, err := cfg.Init(ctx, nil); !errors.Is(err, backup.ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := cfg.Open(ctx, nil); err != nil {
		t.Fatal(err)
	}
	cfg.EncryptionPassphrase = "wrong"
	if _, err := cfg.Open(ctx, nil); !errors.Is(err, backup.ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}
