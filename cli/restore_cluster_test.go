package cli

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

// recordedHost is a restoreHost that answers commands from a Recorder.
type recordedHost struct {
	*executors.Recorder
	*net.Dialer
}

func (recordedHost) Lock(ctx context.Context, path string) (func() error, error) {
	return func() error { return nil }, nil
}

// onlyRun hides RunStreaming: a host that cannot stream.
type onlyRun struct{ restoreHost }

// TestRestoreStepsShowProgress checks that the long steps show their
// host's standard error, prefixed with the host, and the others do not.
func TestRestoreStepsShowProgress(t *testing.T) {
	rec := executors.NewRecorder("pg1").
		On(func(c string) bool { return strings.Contains(c, "restore --data-dir") }, func(string, []byte) (executors.Result, error) {
			return executors.Result{Stdout: []byte("Restored backup B into D.\nNext: ...\n"), Stderr: []byte("restore: 50% (1.0 GB of 2.0 GB), 10s\n")}, nil
		}).
		OnPrefix(asPostgres("restore", "recover"), executors.Result{Stdout: []byte("Recovered D.\n"), Stderr: []byte("recovering: replayed up to 0/3000060 (no transaction yet), 10s\n")}).
		OnPrefix(asPostgres("restore", "reset-etcd"), executors.Result{Stdout: []byte("Cleared.\n"), Stderr: []byte("not shown\n")})
	var host restoreHost = recordedHost{Recorder: rec}
	var out, progress bytes.Buffer
	r := &clusterRestore{
		req:      restoreRequest{Host: "pg1", DataDir: "/var/lib/postgresql/15/main"},
		out:      &out,
		progress: &lineSink{w: &progress},
		connect:  func(ctx context.Context, name string) (restoreHost, error) { return host, nil },
		timeout:  time.Second,
	}
	ctx := context.Background()
	for _, k := range []stepKind{stepRestore, stepRecover, stepResetEtcd} {
		if err := r.do(ctx, restoreStep{Kind: k, Hosts: []string{"pg1"}}); err != nil {
			t.Fatalf("%s: %v", k, err)
		}
	}
	want := "      pg1: restore: 50% (1.0 GB of 2.0 GB), 10s\n" +
		"      pg1: recovering: replayed up to 0/3000060 (no transaction yet), 10s\n"
	if progress.String() != want {
		t.Errorf("progress shown:\n%s\nwant:\n%s", progress.String(), want)
	}
	if want := "      pg1: Restored backup B into D.\n      pg1: Recovered D.\n      pg1: Cleared.\n"; out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}

	// A host that cannot stream runs the step all the same.
	host = onlyRun{host}
	progress.Reset()
	if err := r.do(ctx, restoreStep{Kind: stepRecover, Hosts: []string{"pg1"}}); err != nil || progress.Len() != 0 {
		t.Errorf("without streaming: %v, progress %q", err, progress.String())
	}
}
