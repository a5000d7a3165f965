package render_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/planner"
	"github.com/pgherd/pgherd/planner/render"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s (-want +got):\n%s", path, d)
	}
}

func plans() map[string]*planner.Plan {
	return map[string]*planner.Plan{
		"changes": {
			FormatVersion: 1,
			SpecDigest:    "sha256:5d41402abc4b2a76b9719d911017c592",
			Hosts:         []string{"node1", "node2", "node3"},
			Changes: []planner.Change{
				{Host: "node1", Resource: "file./etc/motd", Action: planner.Create, Reason: "file does not exist",
					Attrs: []planner.Attr{{Name: "owner", After: "root"}, {Name: "mode", After: "0644"}},
					Diff:  "@@ -0,0 +1,2 @@\n+Welcome to node1\n+managed by pgherd\n"},
				{Host: "node1", Resource: "packages", Action: planner.Update, Reason: "2 packages to install",
					Attrs: []planner.Attr{{Name: "nginx", Before: "", After: "1.22.1-9"}, {Name: "etcd-server", Before: "3.4.22", After: "3.4.23"}}},
				{Host: "node1", Resource: "file./etc/pgherd/secret.env", Action: planner.Update, Reason: "content differs", Sensitive: true,
					Attrs: []planner.Attr{{Name: "content", Before: "PW=old", After: "PW=new"}}, Diff: "-PW=old\n+PW=new\n"},
				{Host: "node1", Resource: "user.postgres", Action: planner.Update, Reason: "password differs",
					Attrs: []planner.Attr{{Name: "password", Before: "a", After: "b", Sensitive: true}, {Name: "shell", Before: "/bin/sh", After: "/bin/bash"}}},
				{Host: "node1", Resource: "service.postgresql", Action: planner.Update, Reason: "notified by file./etc/postgresql/15/main/postgresql.conf", Impact: "restart: clients are disconnected"},
				{Host: "node1", Resource: "file./etc/cron.d/old", Action: planner.Delete, Reason: "not in the spec",
					Attrs: []planner.Attr{{Name: "content", Before: "* * * * * root true\n"}}},
				{Host: "node2", Resource: "package.curl", Action: planner.NoOp},
			},
			HostErrors: []planner.HostError{{Host: "node3", Error: "connect: node3 (10.77.0.13:22): dial tcp: connection refused: host unreachable\ncheck that sshd runs"}},
		},
		"no-changes": {FormatVersion: 1, SpecDigest: "d", Hosts: []string{"node1", "node2"}},
		"errors-only": {FormatVersion: 1, SpecDigest: "d", Hosts: []string{"node1", "node2"},
			HostErrors: []planner.HostError{{Host: "node2", Error: "read facts: connection lost"}}},
		"one-host": {FormatVersion: 1, SpecDigest: "d", Hosts: []string{"db"},
			Changes: []planner.Change{{Host: "db", Resource: "sysctl.vm.swappiness", Action: planner.Update, Reason: "value differs",
				Attrs: []planner.Attr{{Name: "value", Before: "60", After: "1"}}}}},
	}
}

func TestText(t *testing.T) {
	for name, p := range plans() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := render.Text(&b, p, render.TextOptions{}); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "PW=") || strings.Contains(b.String(), `"b"`) {
				t.Errorf("a sensitive value was printed:\n%s", b.String())
			}
			golden(t, "text-"+name+".golden", b.Bytes())
		})
	}
}

func TestTextColor(t *testing.T) {
	var b bytes.Buffer
	if err := render.Text(&b, plans()["changes"], render.TextOptions{Color: true}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\x1b[32m+\x1b[0m file./etc/motd", "\x1b[33m~\x1b[0m packages", "\x1b[31m-\x1b[0m file./etc/cron.d/old"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("colored plan lacks %q:\n%s", want, b.String())
		}
	}
}

func TestJSON(t *testing.T) {
	for name, p := range plans() {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := render.JSON(&b, p); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "PW=") {
				t.Errorf("a sensitive value was printed:\n%s", b.String())
			}
			var doc map[string]any
			if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
			golden(t, "json-"+name+".golden", b.Bytes())
		})
	}
}

func TestRecap(t *testing.T) {
	recaps := map[string]*planner.Recap{
		"ok": {Elapsed: 3400 * time.Millisecond, Hosts: []planner.HostRecap{
			{Host: "node1", OK: []string{"a", "b"}, Changed: []string{"c"}, Elapsed: 1234 * time.Millisecond},
			{Host: "node2", OK: []string{"a", "b", "c"}, Elapsed: 56 * time.Millisecond},
		}},
		"failed": {Elapsed: 2 * time.Minute, Hosts: []planner.HostRecap{
			{Host: "node1", Changed: []string{"a"}, Skipped: []string{"c", "d"}, Elapsed: 95 * time.Second,
				Failed: []planner.Failure{{Resource: "package.nginx", Error: "step 1 of 1 (apt-get install nginx): exited with status 100:\nE: Unable to locate package nginx"}}},
			{Host: "node2", Changed: []string{"a", "b"}, Skipped: []string{"d"}, Elapsed: 61 * time.Second},
		}},
		"interrupted": {Interrupted: true, Elapsed: 800 * time.Millisecond, Hosts: []planner.HostRecap{
			{Host: "node1", Changed: []string{"a"}, Skipped: []string{"b"}, Elapsed: 700 * time.Millisecond},
		}},
	}
	for name, r := range recaps {
		t.Run(name, func(t *testing.T) {
			var b bytes.Buffer
			if err := render.Recap(&b, r); err != nil {
				t.Fatal(err)
			}
			golden(t, "recap-"+name+".golden", b.Bytes())
		})
	}
}

func TestProgress(t *testing.T) {
	var b bytes.Buffer
	print := render.Progress(&b)
	for _, e := range []planner.Event{
		{Kind: planner.HostConnected, Host: "node1", Elapsed: 12 * time.Millisecond},
		{Kind: planner.HostFailed, Host: "node3", Err: "connect: refused"},
		{Kind: planner.ResourceStart, Host: "node1", Resource: "file./etc/motd", Action: planner.Create},
		{Kind: planner.ResourceDone, Host: "node1", Resource: "file./etc/motd", Action: planner.Create, Elapsed: 1200 * time.Millisecond},
		{Kind: planner.ResourceStart, Host: "node1", Resource: "package.nginx", Action: planner.Update},
		{Kind: planner.ResourceUnchanged, Host: "node1", Resource: "package.curl", Elapsed: 30 * time.Millisecond},
		{Kind: planner.ResourceFailed, Host: "node1", Resource: "package.nginx", Step: "apt-get install", Elapsed: 3 * time.Second, Err: "exited with status 100"},
		{Kind: "unknown"},
	} {
		print(e)
	}
	golden(t, "progress.golden", b.Bytes())
}
