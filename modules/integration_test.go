package modules

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/pgherd/pgherd/executors"
)

// localHost runs commands with sh -c on this machine and writes files the
// way the executors must: a temporary file created 0600 in the same
// directory, then chown, chmod and rename.
type localHost struct{}

func (localHost) Name() string { return "local" }

func (localHost) Run(ctx context.Context, cmd string, stdin io.Reader) (executors.Result, error) {
	c := exec.CommandContext(ctx, "sh", "-c", cmd)
	c.Stdin = stdin
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return executors.Result{Stdout: out.Bytes(), Stderr: errb.Bytes(), ExitCode: ee.ExitCode()}, nil
	}
	return executors.Result{Stdout: out.Bytes(), Stderr: errb.Bytes()}, err
}

func (localHost) PutFile(ctx context.Context, path string, content io.Reader, attrs executors.FileAttrs) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pgherd-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	uid, gid := 0, 0
	if attrs.Owner != "" {
		u, err := user.Lookup(attrs.Owner)
		if err != nil {
			return err
		}
		uid, _ = strconv.Atoi(u.Uid)
	}
	if attrs.Group != "" {
		g, err := user.LookupGroup(attrs.Group)
		if err != nil {
			return err
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	if _, err := io.Copy(tmp, content); err != nil {
		tmp.Close()
		return err
	}
	if err := errors.Join(tmp.Chown(uid, gid), tmp.Chmod(attrs.Mode), tmp.Sync(), tmp.Close()); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func (localHost) GetFile(ctx context.Context, path string) ([]byte, error) { return os.ReadFile(path) }

func probe(t *testing.T, h Host, r Resource) Fact {
	t.Helper()
	res, err := h.Run(t.Context(), r.Probe(), nil)
	if err != nil {
		t.Fatalf("%s: probe: %v", r.Address(), err)
	}
	return Fact{Stdout: res.Stdout, ExitCode: res.ExitCode}
}

// converge probes, diffs and applies each resource in turn (each probed
// just before it is diffed, as apply does), then checks with one batched
// probe that a second plan is empty. It returns the addresses it changed.
func converge(t *testing.T, h Host, rs ...Resource) []string {
	t.Helper()
	ctx := t.Context()
	var changed []string
	for _, r := range rs {
		ch, steps, err := r.Diff(probe(t, h, r))
		if err != nil {
			t.Fatalf("%s: diff: %v", r.Address(), err)
		}
		if ch.IsNoOp() != (len(steps) == 0) {
			t.Errorf("%s: action %s with %d steps", r.Address(), ch.Action, len(steps))
		}
		if !ch.IsNoOp() {
			changed = append(changed, r.Address())
		}
		for _, s := range steps {
			if s.Cmd != "" {
				res, err := h.Run(ctx, s.Cmd, nil)
				if err == nil {
					err = res.Err(h.Name(), s.Cmd)
				}
				if err != nil {
					t.Fatalf("%s: step %q: %v", r.Address(), s.Desc, err)
				}
				continue
			}
			if err := s.Run(ctx, h); err != nil {
				t.Fatalf("%s: step %q: %v", r.Address(), s.Desc, err)
			}
		}
	}
	probes := make([]string, len(rs))
	for i, r := range rs {
		probes[i] = r.Probe()
	}
	nonce := NewNonce()
	res, err := h.Run(ctx, BatchScript(nonce, probes), nil)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("batch probe: %v %d %s", err, res.ExitCode, res.Stderr)
	}
	facts, err := SplitBatch(nonce, res.Stdout, len(rs))
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		ch, steps, err := r.Diff(facts[i])
		if err != nil || !ch.IsNoOp() || len(steps) != 0 {
			t.Errorf("%s: not idempotent: second diff = %+v, %d steps, %v", r.Address(), ch, len(steps), err)
		}
	}
	return changed
}

func TestIntegrationLocal(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a user and a group")
	}
	for _, bin := range []string{"useradd", "groupadd", "getent", "sysctl", "dpkg-query", "sha256sum", "base64"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed", bin)
		}
	}
	h := localHost{}
	tmp := t.TempDir()
	suffix := NewNonce()[:8]
	g1, g2, u := "pghg"+suffix, "pghs"+suffix, "pghu"+suffix
	t.Cleanup(func() {
		// Only what this test created, by its unique names.
		exec.Command("userdel", u).Run()
		exec.Command("groupdel", g2).Run()
		exec.Command("groupdel", g1).Run()
	})
	dir := filepath.Join(tmp, "etc", "app")
	conf := filepath.Join(dir, "app.conf")
	secret := filepath.Join(dir, "secret")
	home := filepath.Join(tmp, "home", u)

	check := func(t *testing.T, got []string, want ...string) {
		t.Helper()
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("changed %q, want %q", got, want)
		}
	}

	t.Run("create", func(t *testing.T) {
		got := converge(t, h,
			Group{Name: g1, System: true},
			Group{Name: g2},
			User{Name: u, Group: g1, Groups: []string{g2}, Home: home, Shell: "/bin/sh"},
			Directory{Path: dir, Owner: u, Group: g1, Mode: "0750"},
			File{Path: conf, Content: "a = 1\nb = 2\n", Owner: u, Group: g1, Mode: "0640"},
			File{Path: secret, Content: "password=x\n", Sensitive: true},
			Packages{Packages: []Package{{Name: "dpkg"}, {Name: "pgherd-no-such-package", Absent: true}}},
		)
		check(t, got, "group."+g1, "group."+g2, "user."+u, "directory."+dir, "file."+conf, "file."+secret)
		st, err := os.Stat(secret)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("secret: %v, mode %v, want 0600", err, st.Mode())
		}
	})
	t.Run("update", func(t *testing.T) {
		f := File{Path: conf, Content: "a = 1\nb = 3\n", Owner: u, Group: g1, Mode: "0640"}
		ch, _, err := f.Diff(probe(t, h, f))
		if err != nil || !strings.Contains(ch.Diff, "-b = 2\n+b = 3\n") {
			t.Errorf("diff of %s = %q, %v", conf, ch.Diff, err)
		}
		got := converge(t, h,
			User{Name: u, Group: g1, Groups: []string{}, Shell: "/bin/bash"},
			Directory{Path: dir, Mode: "0700"},
			f,
			File{Path: secret, Content: "password=x\n", Sensitive: true, Mode: "0400", Group: g2},
		)
		check(t, got, "user."+u, "directory."+dir, "file."+conf, "file."+secret)
		if b, _ := os.ReadFile(conf); string(b) != f.Content {
			t.Errorf("%s = %q", conf, b)
		}
	})
	t.Run("absent", func(t *testing.T) {
		// The directory still holds a file: it is never removed.
		d := Directory{Path: dir, Absent: true}
		ch, steps, err := d.Diff(probe(t, h, d))
		if err != nil || len(steps) != 0 || !strings.Contains(ch.Reason, "not empty") {
			t.Errorf("non-empty directory: %+v, %d steps, %v", ch, len(steps), err)
		}
		got := converge(t, h,
			File{Path: conf, Absent: true},
			File{Path: secret, Absent: true},
			d,
			User{Name: u, Absent: true},
			Group{Name: g2, Absent: true},
			Group{Name: g1, Absent: true},
		)
		check(t, got, "file."+conf, "file."+secret, "directory."+dir, "user."+u, "group."+g2, "group."+g1)
		if _, err := os.Stat(home); err != nil {
			t.Errorf("home directory of the deleted user: %v; it must be kept", err)
		}
	})
	t.Run("sysctl", func(t *testing.T) {
		const key = "net.ipv4.conf.lo.log_martians" // harmless, per network namespace
		res, err := h.Run(t.Context(), executors.Join("sysctl", "-n", key), nil)
		if err != nil || res.ExitCode != 0 {
			t.Skipf("%s not readable here: %v %s", key, err, res.Stderr)
		}
		old := strings.TrimSpace(string(res.Stdout))
		value := old
		path := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			f.Close()
			value = map[string]string{"0": "1"}[old]
			if value == "" {
				value = "0"
			}
			t.Cleanup(func() { exec.Command("sysctl", "-w", key+"="+old).Run() })
		} else {
			t.Logf("/proc/sys is read-only here: only the persisted file changes")
		}
		s := Sysctl{Key: key, Value: value, Dir: t.TempDir()}
		check(t, converge(t, h, s), "sysctl."+key)
		if b, err := os.ReadFile(s.File()); err != nil || !strings.Contains(string(b), fmt.Sprintf("%s = %s\n", key, value)) {
			t.Errorf("%s = %q, %v", s.File(), b, err)
		}
	})
}
