package executors_test

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/executors"
)

func TestRecorder(t *testing.T) {
	r := executors.NewRecorder("db1").
		OnPrefix("systemctl is-active", executors.Result{Stdout: []byte("active\n")}).
		OnRegexp(`^dpkg-query .*nginx`, executors.Result{ExitCode: 1}).
		On(func(c string) bool { return strings.HasPrefix(c, "cat") }, func(cmd string, stdin []byte) (executors.Result, error) {
			return executors.Result{Stdout: stdin}, nil
		}).
		OnPrefix("systemctl", executors.Result{Stdout: []byte("shadowed by the first rule\n")})
	ctx := ctxT(t)
	tests := []struct {
		cmd, stdin string
		want       executors.Result
	}{
		{cmd: "systemctl is-active nginx", want: executors.Result{Stdout: []byte("active\n")}},
		{cmd: "dpkg-query -W nginx", want: executors.Result{ExitCode: 1}},
		{cmd: "cat", stdin: "echoed", want: executors.Result{Stdout: []byte("echoed")}},
		{cmd: "rm -rf /", want: executors.Result{ExitCode: 127, Stderr: []byte(`recorder db1: no scripted result for "rm -rf /"`)}},
	}
	for _, tt := range tests {
		t.Run(tt.cmd, func(t *testing.T) {
			got, err := r.Run(ctx, tt.cmd, strings.NewReader(tt.stdin))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Run(%q) (-want +got):\n%s", tt.cmd, diff)
			}
		})
	}

	if _, err := r.GetFile(ctx, "/etc/motd"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("GetFile of an unknown file: %v", err)
	}
	attrs := executors.FileAttrs{Mode: 0o600, Owner: "postgres"}
	if err := r.PutFile(ctx, "/etc/motd", strings.NewReader("hi"), attrs); err != nil {
		t.Fatal(err)
	}
	if b, err := r.GetFile(ctx, "/etc/motd"); err != nil || string(b) != "hi" {
		t.Errorf("GetFile = %q, %v", b, err)
	}
	r.SetFile("/etc/hosts", []byte("127.0.0.1 localhost"))
	if b, _ := r.GetFile(ctx, "/etc/hosts"); string(b) != "127.0.0.1 localhost" {
		t.Errorf("GetFile after SetFile = %q", b)
	}

	wantCmds := []string{"systemctl is-active nginx", "dpkg-query -W nginx", "cat", "rm -rf /"}
	if diff := cmp.Diff(wantCmds, r.Commands()); diff != "" {
		t.Errorf("Commands (-want +got):\n%s", diff)
	}
	calls := r.Calls()
	if len(calls) != 8 {
		t.Fatalf("%d calls recorded, want 8", len(calls))
	}
	if diff := cmp.Diff(executors.Call{Op: "put", Path: "/etc/motd", Content: []byte("hi"), Attrs: attrs}, calls[5]); diff != "" {
		t.Errorf("put call (-want +got):\n%s", diff)
	}
	if string(calls[2].Stdin) != "echoed" {
		t.Errorf("stdin recorded %q", calls[2].Stdin)
	}
	r.Reset()
	if len(r.Calls()) != 0 {
		t.Error("Reset kept calls")
	}

	// RunStreaming passes on the scripted stderr line by line.
	var lines []string
	res, err := r.RunStreaming(ctx, "rm -rf /", nil, func(l string) { lines = append(lines, l) })
	if err != nil || res.ExitCode != 127 || !cmp.Equal(lines, []string{string(res.Stderr)}) {
		t.Errorf("RunStreaming: %+v %v, lines %q", res, err, lines)
	}
}

func TestRecorderConcurrent(t *testing.T) {
	r := executors.NewRecorder("db1").OnPrefix("", executors.Result{})
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			r.Run(t.Context(), fmt.Sprint("cmd ", i), nil)
			r.PutFile(t.Context(), fmt.Sprint("/f", i), strings.NewReader("x"), executors.FileAttrs{})
		})
	}
	wg.Wait()
	if n := len(r.Calls()); n != 100 {
		t.Errorf("%d calls, want 100", n)
	}
}
