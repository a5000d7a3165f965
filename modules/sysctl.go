package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// SysctlDir is where Sysctl persists its settings.
const SysctlDir = "/etc/sysctl.d"

// Sysctl is one kernel parameter, set live and persisted in its own file,
// /etc/sysctl.d/99-pgherd-<key>.conf, so that resources stay independent.
// Its address is "sysctl.<key>". Values are compared with whitespace
// normalised ("4096  87380 6291456" equals "4096 87380 6291456"). Steps:
// write the file, then sysctl -w when the live value differs.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// Dir overrides SysctlDir (tests).
	Dir string `json:"dir,omitempty"`
}

var sysctlKey = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9_./-]*$`)

func (s Sysctl) validKey() bool {
	return sysctlKey.MatchString(s.Key) && !strings.Contains(s.Key, "..")
}

// Address implements Resource.
func (s Sysctl) Address() string { return "sysctl." + s.Key }

// File is the path of the file that persists the setting.
func (s Sysctl) File() string {
	return orDefault(s.Dir, SysctlDir) + "/99-pgherd-" + strings.ReplaceAll(s.Key, "/", ".") + ".conf"
}

// Probe implements Resource. It prints live=<value> (or live-missing when
// the kernel has no such key) and file=<base64 content> when the file exists.
func (s Sysctl) Probe() string {
	if !s.validKey() {
		return invalidProbe // Diff reports the invalid key.
	}
	return `if v=$(sysctl -n ` + executors.Quote(s.Key) + ` 2>/dev/null); then printf 'live=%s\n' "$(printf '%s' "$v" | tr '\t\n' '  ')"; else echo live-missing; fi
f=` + executors.Quote(s.File()) + `
if [ -f "$f" ]; then printf 'file=%s\n' "$(base64 -w0 < "$f")"; fi
`
}

func normalizeSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

func (s Sysctl) fileContent() []byte {
	return []byte("# Managed by pgherd: changes are overwritten.\n" + s.Key + " = " + normalizeSpace(s.Value) + "\n")
}

// Diff implements Resource.
func (s Sysctl) Diff(f Fact) (planner.Change, []Step, error) {
	addr := s.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if !s.validKey() {
		return ch, nil, fmt.Errorf("%s: not a sysctl key: %w", addr, ErrInvalid)
	}
	if normalizeSpace(s.Value) == "" || strings.ContainsAny(s.Value, "\n") {
		return ch, nil, fmt.Errorf("%s: value must be one non-empty line: %w", addr, ErrInvalid)
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	live, liveOK := kv["live"]
	_, missing := kv["live-missing"]
	if !liveOK && !missing {
		return ch, nil, fmt.Errorf("%s: probe printed no live value: %w", addr, ErrProbe)
	}
	want := normalizeSpace(s.Value)
	live = normalizeSpace(live)
	wantFile := s.fileContent()
	var haveFile []byte
	b64, fileOK := kv["file"]
	if fileOK {
		var err error
		if haveFile, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return ch, nil, fmt.Errorf("%s: probe file content: %w", addr, ErrProbe)
		}
	}

	var steps []Step
	var reasons []string
	if !fileOK || !bytes.Equal(haveFile, wantFile) {
		path := s.File()
		reasons = append(reasons, "not persisted in "+path)
		before := "(none)"
		if fileOK {
			before = "(other content)"
			reasons[len(reasons)-1] = path + " differs"
		}
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "file", Before: before, After: path})
		oldName := "/dev/null"
		if fileOK {
			oldName = path
		}
		ch.Diff = unifiedDiff(oldName, haveFile, path, wantFile)
		steps = append(steps, Step{
			Desc: "write " + path,
			Run: func(ctx context.Context, h Host) error {
				if err := h.PutFile(ctx, path, bytes.NewReader(wantFile), executors.FileAttrs{Mode: 0o644}); err != nil {
					return fmt.Errorf("write %s: %w", path, err)
				}
				return nil
			},
		})
	}
	if missing || live != want {
		before := live
		if missing {
			before = "(unknown key)"
			reasons = append(reasons, "key not present in /proc/sys")
		} else {
			reasons = append(reasons, "live value differs")
		}
		ch.Attrs = append([]planner.Attr{{Name: "value", Before: before, After: want}}, ch.Attrs...)
		steps = append(steps, Step{Desc: "sysctl -w " + s.Key + "=" + want, Cmd: executors.Join("sysctl", "-w", s.Key+"="+want)})
	}
	if len(steps) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	ch.Reason = strings.Join(reasons, "; ")
	return ch, steps, nil
}
