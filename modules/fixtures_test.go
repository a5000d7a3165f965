package modules

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
	"github.com/rogpeppe/go-internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the want sections of testdata/*/*.txtar")

// fixtureKinds maps each fixture directory under testdata to the decoder of
// its args.json: every resource kind with fixtures is listed here once.
var fixtureKinds = map[string]func(args []byte) (Resource, error){
	"packages":                 decoder[Packages],
	"file":                     decoder[File],
	"directory":                decoder[Directory],
	"group":                    decoder[Group],
	"user":                     decoder[User],
	"service":                  decoder[Service],
	"sysctl":                   decoder[Sysctl],
	"postgres_adopt":           decoder[PostgresAdopt],
	"postgres_roll":            decoder[PostgresRoll],
	"detach":                   decoder[DetachedMember],
	"etcd/membership":          decoder[EtcdMembership],
	"etcd/member":              decoder[EtcdMember],
	"postgres/unit_mask":       decoder[UnitMask],
	"postgres/data_dir_parent": decoder[DataDirParent],
}

// decoder decodes args.json into a T, refusing unknown fields.
func decoder[T Resource](args []byte) (Resource, error) {
	var v T
	dec := json.NewDecoder(bytes.NewReader(args))
	dec.DisallowUnknownFields()
	err := dec.Decode(&v)
	return v, err
}

// TestFixtures feeds each testdata/<kind>/<case>.txtar's "fact" (and
// optional "exit") to the resource made from "args.json" and compares the
// probe, change and steps with the "want" section. An optional "notify"
// section lists changed addresses to pass to Notify as well; an optional
// "fail-once" section makes the first matching command fail.
func TestFixtures(t *testing.T) {
	var files []string
	err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(path, ".txtar") {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no fixtures")
	}
	for _, file := range files {
		kind := filepath.ToSlash(strings.TrimPrefix(filepath.Dir(file), "testdata"+string(filepath.Separator)))
		t.Run(kind+"/"+strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			newR, ok := fixtureKinds[kind]
			if !ok {
				t.Fatalf("no decoder for fixtures of kind %q: add it to fixtureKinds", kind)
			}
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sections := map[string][]byte{}
			for _, f := range ar.Files {
				sections[f.Name] = f.Data
			}
			r, err := newR(sections["args.json"])
			if err != nil {
				t.Fatalf("args.json: %v", err)
			}
			fact := Fact{Stdout: sections["fact"]}
			if e, ok := sections["exit"]; ok {
				if fact.ExitCode, err = strconv.Atoi(strings.TrimSpace(string(e))); err != nil {
					t.Fatalf("exit: %v", err)
				}
			}
			got := render(r, fact, sections)
			if *update {
				replaced := false
				for i := range ar.Files {
					if ar.Files[i].Name == "want" {
						ar.Files[i].Data, replaced = []byte(got), true
					}
				}
				if !replaced {
					ar.Files = append(ar.Files, txtar.File{Name: "want", Data: []byte(got)})
				}
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if d := cmp.Diff(string(sections["want"]), got); d != "" {
				t.Errorf("%s mismatch (-want +got), run go test -update:\n%s", file, d)
			}
		})
	}
}

// render is the golden form of a resource's probe and its diff of a fact.
func render(r Resource, fact Fact, sections map[string][]byte) string {
	var b strings.Builder
	fmt.Fprintf(&b, "address: %s\nprobe:\n", r.Address())
	indent(&b, r.Probe())
	var failOnce []string
	if f, ok := sections["fail-once"]; ok {
		m, e, _ := strings.Cut(strings.TrimSuffix(string(f), "\n"), "\n")
		failOnce = []string{m, e}
	}
	ch, steps, err := r.Diff(fact)
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
		return b.String()
	}
	renderChange(&b, ch, steps, failOnce)
	if n, ok := sections["notify"]; ok {
		nr, ok := r.(Notified)
		if !ok {
			b.WriteString("notify: not a Notified resource\n")
			return b.String()
		}
		fmt.Fprintf(&b, "watches: %s\nnotify:\n", strings.Join(nr.Watches(), " "))
		ch, steps := nr.Notify(strings.Fields(string(n)))
		renderChange(&b, ch, steps, failOnce)
	}
	return b.String()
}

// recordHost logs what a Run step does instead of doing it, so that the
// golden files show it. A command containing failOnce[0] fails once with
// failOnce[1] as its stderr. (The integration test runs steps for real.)
type recordHost struct {
	failOnce []string
	failed   bool
	log      []string
}

func (h *recordHost) Name() string { return "fixture" }

func (h *recordHost) Run(ctx context.Context, cmd string, stdin io.Reader) (executors.Result, error) {
	h.log = append(h.log, "$ "+cmd)
	if len(h.failOnce) == 2 && !h.failed && strings.Contains(cmd, h.failOnce[0]) {
		h.failed = true
		h.log = append(h.log, "(fails: "+h.failOnce[1]+")")
		return executors.Result{ExitCode: 100, Stderr: []byte(h.failOnce[1])}, nil
	}
	return executors.Result{}, nil
}

func (h *recordHost) PutFile(ctx context.Context, path string, content io.Reader, attrs executors.FileAttrs) error {
	data, err := io.ReadAll(content)
	if err != nil {
		return err
	}
	h.log = append(h.log, fmt.Sprintf("put %s (%d bytes %s, owner %q, group %q, mode %04o)", path, len(data), shortHash(sha256Hex(data)), attrs.Owner, attrs.Group, uint32(attrs.Mode)))
	return nil
}

func (h *recordHost) GetFile(ctx context.Context, path string) ([]byte, error) {
	return nil, fmt.Errorf("recordHost: GetFile %s: not supported", path)
}

func renderChange(b *strings.Builder, ch planner.Change, steps []Step, failOnce []string) {
	fmt.Fprintf(b, "change: %s %s %s\n", ch.Action.Symbol(), ch.Action, ch.Resource)
	for _, kv := range [][2]string{{"reason", ch.Reason}, {"impact", ch.Impact}} {
		if kv[1] != "" {
			fmt.Fprintf(b, "%s: %s\n", kv[0], kv[1])
		}
	}
	if ch.Sensitive {
		b.WriteString("sensitive: true\n")
	}
	for _, a := range ch.Attrs {
		if a.Sensitive {
			fmt.Fprintf(b, "attr %s: (sensitive) -> (sensitive)\n", a.Name)
			continue
		}
		fmt.Fprintf(b, "attr %s: %q -> %q\n", a.Name, a.Before, a.After)
	}
	if ch.Diff != "" {
		b.WriteString("diff:\n")
		indent(b, ch.Diff)
	}
	for _, s := range steps {
		fmt.Fprintf(b, "step: %s\n", s.Desc)
		switch {
		case s.Cmd != "" && s.Run == nil:
			fmt.Fprintf(b, "  cmd: %s\n", s.Cmd)
		case s.Run != nil && s.Cmd == "":
			h := &recordHost{failOnce: failOnce}
			err := s.Run(context.Background(), h)
			for _, l := range h.log {
				fmt.Fprintf(b, "  run: %s\n", l)
			}
			if err != nil {
				fmt.Fprintf(b, "  error: %v\n", err)
			}
		default:
			b.WriteString("  BAD STEP: want exactly one of Cmd and Run\n")
		}
	}
}

func indent(b *strings.Builder, s string) {
	for _, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString("| " + line + "\n")
	}
}
