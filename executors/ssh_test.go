package executors_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// config reaches s as user with the fixture key, trusting its host key.
func (s *sshd) config(t *testing.T, user string) executors.SSHConfig {
	return executors.SSHConfig{
		Name:           "db1",
		Address:        "127.0.0.1",
		Port:           s.Port,
		User:           user,
		KeyFiles:       []string{fixture.keyFile},
		KnownHostsFile: s.knownHosts(t),
		ConnectTimeout: 5 * time.Second,
	}
}

// asAdmins runs fn in a subtest for each user whose commands run as root
// on s: root, and a user with sudo.
func (s *sshd) asAdmins(t *testing.T, fn func(t *testing.T, user string, c *executors.SSH)) {
	for _, user := range []string{"root", sudoUser} {
		t.Run(user, func(t *testing.T) {
			cfg := s.config(t, user)
			cfg.Sudo = true
			fn(t, user, dial(t, cfg))
		})
	}
}

func dial(t *testing.T, cfg executors.SSHConfig) *executors.SSH {
	t.Helper()
	c, err := executors.DialSSH(ctxT(t), cfg, nil)
	if err != nil {
		t.Fatalf("DialSSH: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestSSHRun(t *testing.T) {
	d := startSSHD(t)
	c := dial(t, d.config(t, "root"))
	if c.Name() != "db1" {
		t.Errorf("Name() = %q", c.Name())
	}
	tests := []struct {
		name     string
		cmd      string
		stdin    string
		wantOut  string
		wantErr  string
		wantCode int
	}{
		{name: "stdout", cmd: "echo hello", wantOut: "hello\n"},
		{name: "stderr and exit code", cmd: "echo oops >&2; exit 3", wantErr: "oops\n", wantCode: 3},
		{name: "stdin", cmd: "tr a-z A-Z", stdin: "shout", wantOut: "SHOUT"},
		{name: "sh -c semantics", cmd: "x=1; for i in 1 2; do x=$((x+i)); done; echo $x", wantOut: "4\n"},
		{name: "quotes", cmd: executors.Join("printf", "%s|", "it's", "a b"), wantOut: "it's|a b|"},
		{name: "runs as root", cmd: "id -u", wantOut: "0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var in *strings.Reader
			if tt.stdin != "" {
				in = strings.NewReader(tt.stdin)
			}
			var res executors.Result
			var err error
			if in != nil {
				res, err = c.Run(ctxT(t), tt.cmd, in)
			} else {
				res, err = c.Run(ctxT(t), tt.cmd, nil)
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErr || res.ExitCode != tt.wantCode {
				t.Errorf("got stdout %q stderr %q code %d; want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tt.wantOut, tt.wantErr, tt.wantCode)
			}
		})
	}
}

// TestSSHRunStreaming also checks that the wrapper's line with the process
// group, first on stderr, is not passed on, with sudo too.
func TestSSHRunStreaming(t *testing.T) {
	d := startSSHD(t)
	d.asAdmins(t, func(t *testing.T, _ string, c *executors.SSH) { checkStreaming(t, c.RunStreaming) })
}

func TestSSHConcurrentRuns(t *testing.T) {
	d := startSSHD(t)
	c := dial(t, d.config(t, "root"))
	const n = 30 // three times sshd's MaxSessions
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := c.Run(ctxT(t), fmt.Sprintf("sleep 0.1; echo %d", i), nil)
			if err == nil && string(res.Stdout) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("run %d printed %q", i, res.Stdout)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
}

func TestSSHCommandTimeoutKillsCommand(t *testing.T) {
	d := startSSHD(t)
	cfg := d.config(t, "root")
	cfg.CommandTimeout = 300 * time.Millisecond
	c := dial(t, cfg)
	marker := fmt.Sprintf("pgherd-timeout-%d", time.Now().UnixNano())
	start := time.Now()
	_, err := c.Run(ctxT(t), "sleep 60 # "+marker+"\nsleep 60", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want DeadlineExceeded", err)
	}
	if !strings.HasPrefix(err.Error(), "db1 ") || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("error %q should start with the host name and say it timed out", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("Run returned after %s", time.Since(start))
	}
	waitGone(t, marker)

	// Cancellation kills it too, and says so.
	ctx, cancel := context.WithCancel(ctxT(t))
	cfg.CommandTimeout = 0
	c2 := dial(t, cfg)
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	_, err = c2.Run(ctx, "sleep 60 # "+marker+"\nsleep 60", nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want Canceled", err)
	}
	waitGone(t, marker)
	// The connection is still usable.
	if res, err := c2.Run(ctxT(t), "echo still", nil); err != nil || string(res.Stdout) != "still\n" {
		t.Fatalf("after cancel: %q %v", res.Stdout, err)
	}
}

// waitGone waits until no process's command line holds marker.
func waitGone(t *testing.T, marker string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("pgrep", "-af", marker).Output()
		var live []string
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" && !strings.Contains(l, "pgrep") {
				live = append(live, l)
			}
		}
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("remote command still running: %s", strings.Join(live, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func statFile(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("stat", "-c", "%U:%G %a", path).CombinedOutput()
	if err != nil {
		t.Fatalf("stat %s: %v %s", path, err, out)
	}
	return strings.TrimSpace(string(out))
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestSSHPutGetFile(t *testing.T) {
	d := startSSHD(t)
	d.asAdmins(t, func(t *testing.T, user string, c *executors.SSH) {
		ctx := ctxT(t)
		dir := t.TempDir() // root-owned 0700: only root (or sudo) can write here
		os.Chmod(dir, 0o755)
		path := filepath.Join(dir, "secret.conf")

		if _, err := c.GetFile(ctx, path); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("GetFile of a missing file: %v, want fs.ErrNotExist", err)
		}
		err := c.PutFile(ctx, path, strings.NewReader("one\n"), executors.FileAttrs{Mode: 0o640, Owner: sudoUser, Group: noSudoUser})
		if err != nil {
			t.Fatal(err)
		}
		if got := statFile(t, path); got != sudoUser+":"+noSudoUser+" 640" {
			t.Errorf("stat = %s", got)
		}
		before, _ := os.Stat(path)
		// Replace: a new inode renamed into place, not a rewrite.
		big := bytes.Repeat([]byte("0123456789abcdef"), 1<<14)
		if err := c.PutFile(ctx, path, bytes.NewReader(big), executors.FileAttrs{Mode: 0o600}); err != nil {
			t.Fatal(err)
		}
		after, _ := os.Stat(path)
		if os.SameFile(before, after) {
			t.Error("PutFile rewrote the file in place instead of renaming a new one over it")
		}
		if got := statFile(t, path); got != "root:root 600" {
			t.Errorf("stat after replace = %s", got)
		}
		got, err := c.GetFile(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, big) {
			t.Errorf("GetFile returned %d bytes, want %d", len(got), len(big))
		}
		if names := listDir(t, dir); len(names) != 1 {
			t.Errorf("temporary files left behind: %v", names)
		}
		if user != "root" {
			home := filepath.Join("/home", user)
			for _, n := range listDir(t, home) {
				if strings.HasPrefix(n, ".pgherd") {
					t.Errorf("upload left in %s: %s", home, n)
				}
			}
		}
		// A failed install (unknown owner) leaves nothing behind either.
		err = c.PutFile(ctx, path, strings.NewReader("x"), executors.FileAttrs{Owner: "no-such-user-pgherd"})
		if err == nil || !strings.HasPrefix(err.Error(), "db1") {
			t.Errorf("PutFile with an unknown owner: %v", err)
		}
		if names := listDir(t, dir); len(names) != 1 {
			t.Errorf("temporary files left behind after a failure: %v", names)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, big) {
			t.Error("a failed PutFile changed the file")
		}
	})
}

func TestSSHSudo(t *testing.T) {
	d := startSSHD(t)
	t.Run("passwordless sudo runs as root", func(t *testing.T) {
		cfg := d.config(t, sudoUser)
		cfg.Sudo = true
		c := dial(t, cfg)
		res, err := c.Run(ctxT(t), "id -un; echo $0", nil)
		if err != nil {
			t.Fatal(err)
		}
		if string(res.Stdout) != "root\nsh\n" {
			t.Errorf("got %q", res.Stdout)
		}
	})
	t.Run("without sudo runs as the user", func(t *testing.T) {
		c := dial(t, d.config(t, sudoUser))
		res, err := c.Run(ctxT(t), "id -un", nil)
		if err != nil || string(res.Stdout) != sudoUser+"\n" {
			t.Errorf("got %q, %v", res.Stdout, err)
		}
	})
	t.Run("user without sudo rights", func(t *testing.T) {
		cfg := d.config(t, noSudoUser)
		cfg.Sudo = true
		_, err := executors.DialSSH(ctxT(t), cfg, nil)
		if !errors.Is(err, executors.ErrSudo) {
			t.Fatalf("err = %v, want ErrSudo", err)
		}
		if !strings.HasPrefix(err.Error(), "db1 (127.0.0.1:") || !strings.Contains(err.Error(), "NOPASSWD") {
			t.Errorf("message %q should name the host and say how to fix it", err)
		}
	})
}

// trickle yields a buffer now and then, without end: an upload that
// never finishes.
type trickle struct{}

func (trickle) Read(p []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// TestSSHPutFileTimeout: CommandTimeout bounds file transfers as it bounds
// commands, and a transfer cut short leaves neither the file nor a
// temporary copy behind.
func TestSSHPutFileTimeout(t *testing.T) {
	d := startSSHD(t)
	cfg := d.config(t, "root")
	cfg.CommandTimeout = 300 * time.Millisecond
	c := dial(t, cfg)
	dir := t.TempDir()
	path := filepath.Join(dir, "stalled.conf")
	err := c.PutFile(ctxT(t), path, trickle{}, executors.FileAttrs{Mode: 0o600})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "db1 ") {
		t.Fatalf("PutFile of an endless upload: %v, want a db1 error wrapping DeadlineExceeded", err)
	}
	if names := listDir(t, dir); len(names) != 0 {
		t.Errorf("left behind: %v", names)
	}
}
