package spec

import (
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidCalendar(t *testing.T) {
	tests := []struct {
		expr string
		want bool
	}{
		{"daily", true},
		{"weekly", true},
		{"Sun *-*-* 01:00:00", true},
		{"*-*-* 01:00:00", true},
		{"Mon..Sat *-*-* 01:00:00", true},
		{"Sat,Sun *-*-* 02:30:00 UTC", true},
		{"Mon *-*-* 00/2:00", true},
		{"*-*-01 03:00", true},
		{"04:15", true},
		{"Fri", true},
		{"every sunday", false},
		{"*-*-* 25h", false},
		{"Sun 01:00:00 Mon", false},
		{"", false},
		{"1 2 3 4 5", false},
	}
	analyze, _ := exec.LookPath("systemd-analyze")
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := validCalendar(tt.expr); got != tt.want {
				t.Errorf("validCalendar(%q) = %v, want %v", tt.expr, got, tt.want)
			}
			// The expressions said valid must be valid for systemd too.
			if tt.want && analyze != "" {
				if out, err := exec.Command(analyze, "calendar", tt.expr).CombinedOutput(); err != nil {
					t.Errorf("systemd-analyze calendar %q: %v\n%s", tt.expr, err, out)
				}
			}
		})
	}
}

// TestExampleHABackup checks the backup block of examples/ha.
func TestExampleHABackup(t *testing.T) {
	m, diags := Load(Input{Paths: []string{filepath.Join("..", "examples", "ha"), labHosts}, Environ: []string{"HOME=/home/op"}})
	if diags.HasErrors() {
		t.Fatal(diags.Err())
	}
	b := m.Cluster.Backup
	if b == nil || len(b.Repositories) != 1 {
		t.Fatalf("backup = %+v", b)
	}
	r := b.Repositories[0]
	switch {
	case r.Type != RepoSFTP || r.Host != "10.77.0.14" || r.Port != 2222 || r.Root != "/srv/pgherd-backup" ||
		r.KeyFile != "" || r.KnownHosts != "" || !strings.HasPrefix(r.HostKey, "ssh-ed25519 "):
		t.Errorf("repository = %+v", r)
	case r.PrivateKey == "" || !slices.Contains(m.Sensitive, r.PrivateKey):
		t.Errorf("the sftp private key is not sensitive")
	case b.From != BackupFromStandby || b.Retention.Full != 2 || b.Retention.Age != 336*time.Hour:
		t.Errorf("backup = %+v", b)
	case b.EncryptionPassphrase == "" || !slices.Contains(m.Sensitive, b.EncryptionPassphrase):
		t.Errorf("the encryption passphrase is not sensitive")
	}
}
