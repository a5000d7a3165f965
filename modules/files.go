package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
	"github.com/rogpeppe/go-internal/diff"
)

// maxInlineContent is the largest file whose content a probe sends back, so
// that the plan can show a diff without a second round trip.
const maxInlineContent = 64 << 10

// File is a regular file with a given content, ownership and mode. Its
// address is "file.<path>".
//
// The probe prints the file's type, owner, group, mode, size and SHA-256,
// and, for a non-sensitive regular file of at most 64 KiB, its content in
// base64. Empty Owner, Group or Mode are left as they are on an existing file;
// a new file gets root, root and 0644 (0600 when Sensitive). Steps: write the
// whole file through Host.PutFile (atomic; the executor must create it with
// the final mode, never a wider temporary one) when it is missing or its
// content differs, else chown/chmod for what differs; rm -f when Absent.
type File struct {
	Path    string `json:"path"`
	Content string `json:"content,omitempty"`
	Owner   string `json:"owner,omitempty"`
	Group   string `json:"group,omitempty"`
	Mode    string `json:"mode,omitempty"`
	// Sensitive files never have their content probed, shown or diffed.
	Sensitive bool `json:"sensitive,omitempty"`
	Absent    bool `json:"absent,omitempty"`
	// NotifyList names the resources ("service.haproxy") to notify when
	// the file changes; the engine inverts it into their watches.
	NotifyList []string `json:"notify,omitempty"`
	// Validate, when set, is a shell command that checks a candidate
	// content before it replaces the file ("haproxy -c -f %s"); every %s
	// is replaced by the shell-quoted path of the candidate, a temporary
	// file next to Path written with the final ownership and mode. The
	// file is replaced (by rename, atomically) only when the command exits
	// 0; otherwise the candidate is removed, the file is left as it was,
	// and the step fails with ErrValidate. A change of ownership or mode
	// alone is not validated.
	Validate string `json:"validate,omitempty"`
}

// ErrValidate is returned by a File's write step when its Validate command
// rejects the new content.
var ErrValidate = errors.New("validation of new content failed")

// validatePath is where a File with Validate writes its candidate content.
func (f File) validatePath() string {
	dir, base := filepath.Split(f.Path)
	return dir + ".pgherd-validate." + base
}

// Address implements Resource.
func (f File) Address() string { return "file." + f.Path }

// Notifies returns the addresses to notify when the file changes.
func (f File) Notifies() []string { return f.NotifyList }

// Probe implements Resource.
func (f File) Probe() string {
	// Few processes per file: a no-op plan of many hosts is bound by the
	// hosts' CPU, and this probe runs for every file (statProbe left the
	// stat output in $s).
	s := statProbe(f.Path) + `[ -f "$p" ] && [ ! -L "$p" ] || exit 0
h=$(sha256sum < "$p")
printf 'sha256=%s\n' "${h%% *}"
`
	if !f.Sensitive {
		s += `if [ "${s##*size=}" -le ` + strconv.Itoa(maxInlineContent) + ` ]; then printf 'content=%s\n' "$(base64 -w0 < "$p")"; fi
`
	}
	return s
}

// fileFact is what statProbe and the file probes print.
type fileFact struct {
	typ, owner, group, sha256 string
	mode                      uint32
	size                      int64
	content                   []byte
	hasContent                bool
	empty                     string // directories: "yes", "no"
}

func parseFileFact(addr string, f Fact) (fileFact, error) {
	if f.ExitCode != 0 {
		return fileFact{}, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	ff := fileFact{typ: kv["type"], owner: kv["owner"], group: kv["group"], sha256: kv["sha256"], empty: kv["empty"]}
	if ff.typ == "" {
		return ff, fmt.Errorf("%s: probe printed no type: %w", addr, ErrProbe)
	}
	if ff.typ == "absent" {
		return ff, nil
	}
	m, err := strconv.ParseUint(kv["mode"], 8, 32)
	if err != nil {
		return ff, fmt.Errorf("%s: probe mode %q: %w", addr, kv["mode"], ErrProbe)
	}
	ff.mode = uint32(m)
	ff.size, _ = strconv.ParseInt(kv["size"], 10, 64)
	if c, ok := kv["content"]; ok {
		ff.content, err = base64.StdEncoding.DecodeString(c)
		if err != nil {
			return ff, fmt.Errorf("%s: probe content: %w", addr, ErrProbe)
		}
		ff.hasContent = true
	}
	return ff, nil
}

// Diff implements Resource.
func (f File) Diff(fact Fact) (planner.Change, []Step, error) {
	addr := f.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp, Sensitive: f.Sensitive}
	if !strings.HasPrefix(f.Path, "/") {
		return ch, nil, fmt.Errorf("%s: path must be absolute: %w", addr, ErrInvalid)
	}
	mode, modeSet, err := parseMode(f.Mode)
	if err != nil {
		return ch, nil, fmt.Errorf("%s: %w", addr, err)
	}
	ff, err := parseFileFact(addr, fact)
	if err != nil {
		return ch, nil, err
	}
	if ff.typ == "directory" || ff.typ == "other" {
		return ch, nil, fmt.Errorf("%s: path is a %s, not a regular file: %w", addr, ff.typ, ErrConflict)
	}
	rm := Step{Desc: "rm -f " + f.Path, Cmd: executors.Join("rm", "-f", "--", f.Path)}
	if f.Absent {
		if ff.typ == "absent" {
			return ch, nil, nil
		}
		ch.Action = planner.Delete
		ch.Reason = ff.typ + " exists"
		return ch, []Step{rm}, nil
	}

	want := []byte(f.Content)
	wantHash := sha256Hex(want)
	contentAttr := planner.Attr{Name: "content", Before: shortHash(ff.sha256), After: shortHash(wantHash), Sensitive: f.Sensitive}
	var (
		reasons          []string
		chownTo, chmodTo string
		writeFile        bool
	)
	// What the file is written with: the spec's values, else what the
	// host has, else the defaults of a new file.
	attrs := executors.FileAttrs{Owner: f.Owner, Group: f.Group, Mode: os.FileMode(mode)}
	switch ff.typ {
	case "absent", "symlink":
		writeFile = true
		contentAttr.Before = ""
		if ff.typ == "absent" {
			ch.Action = planner.Create
			reasons = append(reasons, "file does not exist")
		} else {
			ch.Action = planner.Update
			reasons = append(reasons, "path is a symlink; it will be replaced by a regular file")
		}
		if !modeSet {
			attrs.Mode = 0o644
			if f.Sensitive {
				attrs.Mode = 0o600
			}
		}
		ch.Attrs = append(ch.Attrs, contentAttr,
			planner.Attr{Name: "owner", After: orDefault(f.Owner, "root")},
			planner.Attr{Name: "group", After: orDefault(f.Group, "root")},
			planner.Attr{Name: "mode", After: fmtMode(uint32(attrs.Mode))})
	case "file":
		if ff.sha256 != wantHash {
			writeFile = true
			reasons = append(reasons, "content differs")
			ch.Attrs = append(ch.Attrs, contentAttr)
		}
		if f.Owner != "" && f.Owner != ff.owner {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "owner", Before: ff.owner, After: f.Owner})
			chownTo = f.Owner
		}
		if f.Group != "" && f.Group != ff.group {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "group", Before: ff.group, After: f.Group})
			chownTo += ":" + f.Group
		}
		if modeSet && mode != ff.mode {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "mode", Before: fmtMode(ff.mode), After: fmtMode(mode)})
			chmodTo = fmtMode(mode)
		}
		if chownTo != "" || chmodTo != "" {
			reasons = append(reasons, "ownership or mode differs")
		}
		attrs.Owner = orDefault(f.Owner, ff.owner)
		attrs.Group = orDefault(f.Group, ff.group)
		if !modeSet {
			attrs.Mode = os.FileMode(ff.mode)
		}
		if len(ch.Attrs) == 0 {
			return ch, nil, nil
		}
		ch.Action = planner.Update
	default:
		return ch, nil, fmt.Errorf("%s: probe printed type %q: %w", addr, ff.typ, ErrProbe)
	}
	ch.Reason = strings.Join(reasons, "; ")

	if writeFile && !f.Sensitive {
		switch {
		case ff.typ == "file" && ff.hasContent:
			ch.Diff = unifiedDiff(f.Path, ff.content, f.Path, want)
		case ff.typ != "file":
			ch.Diff = unifiedDiff("/dev/null", nil, f.Path, want)
		}
		// A file too large to have been probed gets no diff.
	}

	if !writeFile {
		return ch, chownChmodSteps(f.Path, chownTo, chmodTo), nil
	}
	var steps []Step
	if ff.typ == "symlink" {
		steps = append(steps, rm)
	}
	if ch.Action == planner.Create {
		// Like the parent directories of a Terraform local_file: made
		// when missing (root, 0755); a Directory resource sets others.
		steps = append(steps, Step{Desc: "create " + filepath.Dir(f.Path) + " if missing",
			Cmd: executors.Join("mkdir", "-p", "--", filepath.Dir(f.Path))})
	}
	path, a := f.Path, attrs
	desc := fmt.Sprintf("write %s (%d bytes, %s:%s, mode %s)", path, len(want), orDefault(a.Owner, "root"), orDefault(a.Group, "root"), fmtMode(uint32(a.Mode)))
	if f.Validate != "" {
		tmp := f.validatePath()
		check := strings.ReplaceAll(f.Validate, "%s", executors.Quote(tmp))
		steps = append(steps, Step{
			Desc: desc + " after validating it with: " + f.Validate,
			Run:  func(ctx context.Context, h Host) error { return putValidated(ctx, h, path, tmp, check, want, a) },
		})
		return ch, steps, nil
	}
	steps = append(steps, Step{
		Desc: desc,
		Run: func(ctx context.Context, h Host) error {
			if err := h.PutFile(ctx, path, bytes.NewReader(want), a); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			return nil
		},
	})
	return ch, steps, nil
}

// putValidated writes content to tmp, runs check, and renames tmp to path
// only when check succeeds; tmp is removed on any failure.
func putValidated(ctx context.Context, h Host, path, tmp, check string, content []byte, a executors.FileAttrs) error {
	rm := executors.Join("rm", "-f", "--", tmp)
	cleanup := func() { _, _ = h.Run(context.WithoutCancel(ctx), rm, nil) }
	if err := h.PutFile(ctx, tmp, bytes.NewReader(content), a); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	r, err := h.Run(ctx, check, nil)
	if err != nil {
		cleanup()
		return fmt.Errorf("validate %s: %w", path, err)
	}
	if r.ExitCode != 0 {
		cleanup()
		msg := strings.TrimSpace(string(r.Stderr) + "\n" + string(r.Stdout))
		return fmt.Errorf("%s: %w: %q exited with status %d: %s", path, ErrValidate, check, r.ExitCode, msg)
	}
	mv := executors.Join("mv", "-fT", "--", tmp, path)
	r, err = h.Run(ctx, mv, nil)
	if err == nil {
		err = r.Err(h.Name(), mv)
	}
	if err != nil {
		cleanup()
		return fmt.Errorf("replace %s: %w", path, err)
	}
	return nil
}

func chownChmodSteps(path, chownTo, chmodTo string) []Step {
	var steps []Step
	if chownTo != "" {
		steps = append(steps, Step{Desc: "chown " + chownTo + " " + path, Cmd: executors.Join("chown", "--", chownTo, path)})
	}
	if chmodTo != "" {
		steps = append(steps, Step{Desc: "chmod " + chmodTo + " " + path, Cmd: executors.Join("chmod", "--", chmodTo, path)})
	}
	return steps
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// unifiedDiff is the unified diff of two texts, or "" when either is not
// text (invalid UTF-8 or a NUL byte).
func unifiedDiff(oldName string, old []byte, newName string, new []byte) string {
	for _, b := range [][]byte{old, new} {
		if !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
			return ""
		}
	}
	d := string(diff.Diff(oldName, old, newName, new))
	// Drop the "diff old new" line that precedes the unified headers.
	if strings.HasPrefix(d, "diff ") {
		if _, rest, ok := strings.Cut(d, "\n"); ok {
			d = rest
		}
	}
	return d
}

// Directory is a directory with a given ownership and mode. Its address is
// "directory.<path>". Empty Owner, Group or Mode are left as they are on an
// existing directory (a new one gets root, root, 0755). Steps: install -d
// (which creates parents), chown, chmod. Absent removes the directory with
// rmdir only when it is empty: pgherd never removes a non-empty directory;
// the change then stays in the plan, with no step, and says why.
type Directory struct {
	Path   string `json:"path"`
	Owner  string `json:"owner,omitempty"`
	Group  string `json:"group,omitempty"`
	Mode   string `json:"mode,omitempty"`
	Absent bool   `json:"absent,omitempty"`
}

// Address implements Resource.
func (d Directory) Address() string { return "directory." + d.Path }

// Probe implements Resource. It prints type, owner, group, mode, size and,
// for a directory, empty=yes or empty=no.
func (d Directory) Probe() string {
	return statProbe(d.Path) + `if [ -d "$p" ] && [ ! -L "$p" ]; then if [ -z "$(ls -A -- "$p")" ]; then echo empty=yes; else echo empty=no; fi; fi
`
}

// Diff implements Resource.
func (d Directory) Diff(fact Fact) (planner.Change, []Step, error) {
	addr := d.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if !strings.HasPrefix(d.Path, "/") || d.Path == "/" {
		return ch, nil, fmt.Errorf("%s: path must be absolute and not /: %w", addr, ErrInvalid)
	}
	mode, modeSet, err := parseMode(d.Mode)
	if err != nil {
		return ch, nil, fmt.Errorf("%s: %w", addr, err)
	}
	ff, err := parseFileFact(addr, fact)
	if err != nil {
		return ch, nil, err
	}
	if ff.typ != "absent" && ff.typ != "directory" {
		return ch, nil, fmt.Errorf("%s: path is a %s, not a directory: %w", addr, ff.typ, ErrConflict)
	}
	if d.Absent {
		switch {
		case ff.typ == "absent":
			return ch, nil, nil
		case ff.empty != "yes":
			ch.Action = planner.Delete
			ch.Reason = "directory is not empty: pgherd never removes a non-empty directory; empty it by hand"
			return ch, nil, nil
		}
		ch.Action = planner.Delete
		ch.Reason = "empty directory exists"
		return ch, []Step{{Desc: "rmdir " + d.Path, Cmd: executors.Join("rmdir", "--", d.Path)}}, nil
	}
	if ff.typ == "absent" {
		if !modeSet {
			mode = 0o755
		}
		ch.Action = planner.Create
		ch.Reason = "directory does not exist"
		ch.Attrs = []planner.Attr{{Name: "owner", After: orDefault(d.Owner, "root")},
			{Name: "group", After: orDefault(d.Group, "root")},
			{Name: "mode", After: fmtMode(mode)}}
		words := []string{"install", "-d", "-m", fmtMode(mode)}
		if d.Owner != "" {
			words = append(words, "-o", d.Owner)
		}
		if d.Group != "" {
			words = append(words, "-g", d.Group)
		}
		words = append(words, "--", d.Path)
		return ch, []Step{{Desc: "install -d " + d.Path, Cmd: executors.Join(words...)}}, nil
	}
	var chownTo, chmodTo string
	if d.Owner != "" && d.Owner != ff.owner {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "owner", Before: ff.owner, After: d.Owner})
		chownTo = d.Owner
	}
	if d.Group != "" && d.Group != ff.group {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "group", Before: ff.group, After: d.Group})
		chownTo += ":" + d.Group
	}
	if modeSet && mode != ff.mode {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "mode", Before: fmtMode(ff.mode), After: fmtMode(mode)})
		chmodTo = fmtMode(mode)
	}
	if len(ch.Attrs) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	ch.Reason = "ownership or mode differs"
	return ch, chownChmodSteps(d.Path, chownTo, chmodTo), nil
}
