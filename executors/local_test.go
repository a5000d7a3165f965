package executors_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/modules"
)

// Every executor is a modules.Host.
var (
	_ modules.Host = (*executors.SSH)(nil)
	_ modules.Host = (*executors.Local)(nil)
	_ modules.Host = (*executors.Recorder)(nil)
)

func TestLocalRun(t *testing.T) {
	l := executors.NewLocal("", 0, nil)
	if l.Name() != "localhost" {
		t.Errorf("Name() = %q", l.Name())
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
		{name: "killed by a signal", cmd: "kill -TERM $$", wantCode: 128 + 15},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := l.Run(ctxT(t), tt.cmd, strings.NewReader(tt.stdin))
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErr || res.ExitCode != tt.wantCode {
				t.Errorf("got stdout %q stderr %q code %d; want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tt.wantOut, tt.wantErr, tt.wantCode)
			}
		})
	}
}

func TestLocalTimeoutKillsProcessGroup(t *testing.T) {
	l := executors.NewLocal("here", 200*time.Millisecond, nil)
	marker := fmt.Sprintf("pgherd-local-%d", time.Now().UnixNano())
	_, err := l.Run(ctxT(t), "sleep 60 # "+marker+"\nsleep 60", nil)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "here: ") {
		t.Fatalf("err = %v, want DeadlineExceeded naming the host", err)
	}
	waitGone(t, marker)
}

func TestLocalPutGetFile(t *testing.T) {
	l := executors.NewLocal("here", 0, nil)
	ctx := ctxT(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "f.conf")
	if _, err := l.GetFile(ctx, path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("GetFile of a missing file: %v", err)
	}
	if err := l.PutFile(ctx, path, strings.NewReader("one"), executors.FileAttrs{Mode: 0o640}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if err := l.PutFile(ctx, path, strings.NewReader("two"), executors.FileAttrs{Mode: 0o600}); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(path)
	if os.SameFile(before, after) {
		t.Error("rewritten in place")
	}
	if after.Mode().Perm() != 0o600 {
		t.Errorf("mode = %v", after.Mode())
	}
	if b, err := l.GetFile(ctx, path); err != nil || string(b) != "two" {
		t.Errorf("GetFile = %q, %v", b, err)
	}
	if os.Geteuid() == 0 && fixture.skipReason == "" {
		if err := l.PutFile(ctx, path, strings.NewReader("3"), executors.FileAttrs{Mode: 0o644, Owner: sudoUser, Group: noSudoUser}); err != nil {
			t.Fatal(err)
		}
		if got := statFile(t, path); got != sudoUser+":"+noSudoUser+" 644" {
			t.Errorf("stat = %s", got)
		}
	}
	if names := listDir(t, dir); len(names) != 1 {
		t.Errorf("temporary files left: %v", names)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := l.PutFile(cancelled, path, strings.NewReader("x"), executors.FileAttrs{}); !errors.Is(err, context.Canceled) {
		t.Errorf("PutFile with a cancelled ctx: %v", err)
	}
	if names := listDir(t, dir); len(names) != 1 {
		t.Errorf("temporary files left after a failure: %v", names)
	}
}

// runStreaming is RunStreaming of an executor.
type runStreaming func(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(string)) (executors.Result, error)

// checkStreaming checks that run passes on each line of stderr as it
// comes, before the command ends, a last unterminated line included, and
// still returns all of stderr.
func checkStreaming(t *testing.T, run runStreaming) {
	t.Helper()
	type line struct {
		text string
		at   time.Time
	}
	var lines []line
	res, err := run(ctxT(t), `echo out; echo one >&2; sleep 1; echo two >&2; printf partial >&2`, nil, func(l string) {
		lines = append(lines, line{l, time.Now()})
	})
	end := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "one\ntwo\npartial" || res.ExitCode != 0 {
		t.Errorf("got stdout %q stderr %q code %d", res.Stdout, res.Stderr, res.ExitCode)
	}
	var got []string
	for _, l := range lines {
		got = append(got, l.text)
	}
	if want := []string{"one", "two", "partial"}; !slices.Equal(got, want) {
		t.Fatalf("lines %q, want %q", got, want)
	}
	if early := end.Sub(lines[0].at); early < 500*time.Millisecond {
		t.Errorf("the first line came %s before the command ended, want it as soon as printed (a second before)", early)
	}
}

func TestLocalRunStreaming(t *testing.T) {
	checkStreaming(t, executors.NewLocal("", 0, nil).RunStreaming)
}
