package agent

import (
	"encoding/json"
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
		{name: "path", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: "/srv/backup"}}}},
		{name: "relative path", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: "backup"}}}, want: "repository.path must be an absolute path"},
		{name: "unknown type", cfg: BackupConfig{Repositories: []BackupRepository{{Type: "nfs"}}}, want: `repository.type must be "path", "sftp" or "s3"`},
		{name: "sftp without settings", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoSFTP}}}, want: "repository.sftp is required"},
		{name: "sftp", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoSFTP, SFTP: &SFTPRepository{
			Host: "h", User: "u", KeyFile: "/k", KnownHosts: "/kh", Root: "/r"}}}}},
		{name: "s3 without secret", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoS3, S3: &S3Repository{
			Endpoint: "http://127.0.0.1:1", Bucket: "b", AccessKey: "a"}}}}, want: "secret_key are required"},
		{name: "bad level and from", cfg: BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: "/b"}}, CompressionLevel: 23, From: "replica"},
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
	cfg := &BackupConfig{Repositories: []BackupRepository{{Type: RepoPath, Path: t.TempDir()}}, EncryptionPassphrase: "right", CompressionLevel: 7}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := cfg.Open(ctx, nil, ""); !errors.Is(err, backup.ErrNoConfig) {
		t.Fatalf("open before init: %v", err)
	}
	st, err := cfg.Init(ctx, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Encrypted() || st.Config().Level != 7 {
		t.Fatalf("store: encrypted %v, config %+v", st.Encrypted(), st.Config())
	}
	if _, err := cfg.Init(ctx, nil, ""); !errors.Is(err, backup.ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if _, err := cfg.Open(ctx, nil, ""); err != nil {
		t.Fatal(err)
	}
	cfg.EncryptionPassphrase = "wrong"
	if _, err := cfg.Open(ctx, nil, ""); !errors.Is(err, backup.ErrWrongKey) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}

// TestBackupConfigRepositories: several repositories need names, unique
// and usable on a command line; one may go without.
func TestBackupConfigRepositories(t *testing.T) {
	path := func(name, dir string) BackupRepository {
		return BackupRepository{Name: name, Type: RepoPath, Path: dir}
	}
	tests := []struct {
		name  string
		repos []BackupRepository
		want  string // a part of the error; "" for none
	}{
		{name: "none", want: "a repository is required"},
		{name: "one unnamed", repos: []BackupRepository{path("", "/a")}},
		{name: "one named", repos: []BackupRepository{path("local", "/a")}},
		{name: "two", repos: []BackupRepository{path("local", "/a"), path("nfs", "/b")}},
		{name: "two, one unnamed", repos: []BackupRepository{path("local", "/a"), path("", "/b")},
			want: "repositories[1].name is required when there are several repositories"},
		{name: "duplicate", repos: []BackupRepository{path("local", "/a"), path("local", "/b")},
			want: `repositories[1].name "local" is the name of repositories[0] already`},
		{name: "bad name", repos: []BackupRepository{path("Off Site", "/a")}, want: `repository.name "Off Site" must be lower-case`},
		{name: "bad second", repos: []BackupRepository{path("local", "/a"), {Name: "s3", Type: RepoS3}},
			want: "repositories[1].s3 is required for an s3 repository"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := BackupConfig{Repositories: tt.repos}
			err := cfg.Check()
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Check() = %v, want %q", err, tt.want)
			}
		})
	}

	cfg := BackupConfig{Repositories: []BackupRepository{path("local", "/a"), path("nfs", "/b")}}
	for name, want := range map[string]string{"": "/a", "local": "/a", "nfs": "/b"} {
		if r, err := cfg.Repository(name); err != nil || r.Path != want {
			t.Errorf("Repository(%q) = %+v, %v; want the one at %s", name, r, err, want)
		}
	}
	if _, err := cfg.Repository("s3"); err == nil || !strings.Contains(err.Error(), `no repository named "s3"; the repositories are "local", "nfs"`) {
		t.Errorf("Repository of an unknown name: %v", err)
	}
	one := BackupConfig{Repositories: []BackupRepository{path("", "/a")}}
	if _, err := one.Repository("nfs"); err == nil || !strings.Contains(err.Error(), "leave out --repo") {
		t.Errorf("Repository(name) of a single unnamed repository: %v", err)
	}
}

// TestBackupConfigJSON: a single repository is read and written as
// "repository", as agents before several repositories read it; several
// as "repositories".
func TestBackupConfigJSON(t *testing.T) {
	var old BackupConfig
	if err := json.Unmarshal([]byte(`{"repository": {"type": "path", "path": "/srv/b"}, "parallel": 3}`), &old); err != nil {
		t.Fatal(err)
	}
	if len(old.Repositories) != 1 || old.Repositories[0].Path != "/srv/b" || old.Parallel != 3 {
		t.Fatalf("the single-repository form read as %+v", old)
	}
	b, err := json.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"repository":{"type":"path","path":"/srv/b"},"parallel":3,"retention":{}}`; string(b) != want {
		t.Errorf("a single repository written as\n%s\nwant\n%s", b, want)
	}
	two := BackupConfig{Repositories: []BackupRepository{{Name: "a", Type: RepoPath, Path: "/a"}, {Name: "b", Type: RepoPath, Path: "/b"}}}
	if b, err = json.Marshal(&two); err != nil {
		t.Fatal(err)
	}
	if want := `{"repositories":[{"name":"a","type":"path","path":"/a"},{"name":"b","type":"path","path":"/b"}],"retention":{}}`; string(b) != want {
		t.Errorf("two repositories written as\n%s\nwant\n%s", b, want)
	}
	var back BackupConfig
	if err := json.Unmarshal(b, &back); err != nil || len(back.Repositories) != 2 || back.Repositories[1].Name != "b" {
		t.Errorf("two repositories read back as %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"repository": {"type": "path", "path": "/a"}, "repositories": [{"name": "b", "type": "path", "path": "/b"}]}`), &back); err == nil {
		t.Error("both forms at once were accepted")
	}
}
