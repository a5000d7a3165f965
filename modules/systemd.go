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

// SystemdUnitDir is where Service writes the unit files it owns.
const SystemdUnitDir = "/etc/systemd/system"

// Service states.
const (
	Running = "running"
	Stopped = "stopped"
)

// Service is a systemd unit: enabled or not, running or not and, when Unit
// is set, the content of its unit file in /etc/systemd/system. Its address is
// "service.<name>".
//
// The unit file is part of the service resource rather than a file resource
// of its own, so that the plan shows one change that says everything: the
// unit file's diff, then daemon-reload, enable and start (or restart, when the
// service runs and its unit changed, since a reload does not reread a unit).
// Steps, in order: systemctl unmask (a masked unit that should run or be
// enabled), write the unit file and systemctl daemon-reload, enable or
// disable, start, stop or restart.
//
// Notify (the engine calls it when a watched resource changed and the
// service's own diff was a no-op) restarts the service, or reloads it when
// Reload is set, only if it is running: systemctl try-restart and
// try-reload-or-restart do nothing to a stopped unit.
type Service struct {
	// Name is the unit name; ".service" is implied when it has no unit
	// type suffix.
	Name string `json:"name"`
	// Enabled, when set, is whether the unit starts at boot.
	Enabled *bool `json:"enabled,omitempty"`
	// State is "running", "stopped", or "" for not managed.
	State string `json:"state,omitempty"`
	// Reload makes notifications reload rather than restart the service.
	Reload bool `json:"reload,omitempty"`
	// Unit, when set, is the content of the unit file.
	Unit string `json:"unit,omitempty"`
	// Watch lists the addresses whose changes restart or reload the
	// service.
	Watch []string `json:"watch,omitempty"`
}

var unitName = regexp.MustCompile(`^[a-zA-Z0-9:_.@\\-]+$`)

var unitSuffixes = []string{".service", ".socket", ".timer", ".target", ".mount", ".path", ".slice", ".scope", ".swap", ".automount", ".device"}

func (s Service) validName() bool {
	return unitName.MatchString(s.Name) && !strings.HasPrefix(s.Name, "-")
}

// UnitName is the full systemd unit name.
func (s Service) UnitName() string {
	for _, suf := range unitSuffixes {
		if strings.HasSuffix(s.Name, suf) {
			return s.Name
		}
	}
	return s.Name + ".service"
}

// UnitPath is where the unit file is written when Unit is set.
func (s Service) UnitPath() string { return SystemdUnitDir + "/" + s.UnitName() }

// Address implements Resource.
func (s Service) Address() string { return "service." + s.Name }

// Watches implements Notified.
func (s Service) Watches() []string { return s.Watch }

// Probe implements Resource. When Unit is set it prints unit=<base64 of
// the unit file> or unit-missing, then systemctl show's properties. It fails
// when systemctl does (no systemd on the host).
func (s Service) Probe() string {
	if !s.validName() {
		return invalidProbe // Diff reports the invalid name.
	}
	var b strings.Builder
	if s.Unit != "" {
		b.WriteString("f=" + executors.Quote(s.UnitPath()) + "\n")
		b.WriteString(`if [ -f "$f" ]; then printf 'unit=%s\n' "$(base64 -w0 < "$f")"; else echo unit-missing; fi` + "\n")
	}
	b.WriteString(executors.Join("systemctl", "show", "-p", "LoadState,ActiveState,SubState,UnitFileState,FragmentPath", s.UnitName()) + " || exit 1\n")
	return b.String()
}

func (s Service) systemctl(verb string) Step {
	return Step{Desc: "systemctl " + verb + " " + s.UnitName(), Cmd: executors.Join("systemctl", verb, s.UnitName())}
}

// Diff implements Resource.
func (s Service) Diff(f Fact) (planner.Change, []Step, error) {
	addr := s.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if !s.validName() {
		return ch, nil, fmt.Errorf("%s: not a unit name: %w", addr, ErrInvalid)
	}
	if s.State != "" && s.State != Running && s.State != Stopped {
		return ch, nil, fmt.Errorf("%s: state %q: want running, stopped or empty: %w", addr, s.State, ErrInvalid)
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	load, ok := kv["LoadState"]
	if !ok {
		return ch, nil, fmt.Errorf("%s: systemctl show printed no LoadState: %w", addr, ErrProbe)
	}
	active, fileState := kv["ActiveState"], kv["UnitFileState"]
	notFound := load == "not-found"
	masked := load == "masked" || strings.HasPrefix(fileState, "masked")
	running := active == "active" || active == "reloading" || active == "activating"
	var enabled *bool // nil: enabling does not apply (static, generated...)
	switch fileState {
	case "enabled", "enabled-runtime":
		enabled = new(true)
	case "disabled", "masked", "masked-runtime":
		enabled = new(false)
	case "":
		if notFound {
			enabled = new(false)
		}
	}

	var steps []Step
	var reasons []string
	wantsUp := s.State == Running || (s.Enabled != nil && *s.Enabled)
	if masked && wantsUp {
		reasons = append(reasons, "unit is masked")
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "masked", Before: "true", After: "false"})
		steps = append(steps, s.systemctl("unmask"))
	}

	unitChanged := false
	if s.Unit != "" {
		want := []byte(s.Unit)
		b64, have := kv["unit"]
		old, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return ch, nil, fmt.Errorf("%s: probe unit content: %w", addr, ErrProbe)
		}
		if !have || !bytes.Equal(old, want) {
			unitChanged = true
			path := s.UnitPath()
			attr := planner.Attr{Name: "unit", After: shortHash(sha256Hex(want))}
			oldName := "/dev/null"
			if have {
				attr.Before = shortHash(sha256Hex(old))
				oldName = path
				reasons = append(reasons, "unit file differs")
			} else {
				reasons = append(reasons, "unit file does not exist")
			}
			ch.Attrs = append(ch.Attrs, attr)
			ch.Diff = unifiedDiff(oldName, old, path, want)
			steps = append(steps, Step{
				Desc: "write " + path,
				Run: func(ctx context.Context, h Host) error {
					if err := h.PutFile(ctx, path, bytes.NewReader(want), executors.FileAttrs{Mode: 0o644}); err != nil {
						return fmt.Errorf("write %s: %w", path, err)
					}
					return nil
				},
			}, Step{Desc: "systemctl daemon-reload", Cmd: "systemctl daemon-reload"})
		}
	} else if notFound {
		// Not an error: the package that brings the unit may be installed
		// by an earlier step of the same apply.
		reasons = append(reasons, "unit not found on the host yet")
	}

	if s.Enabled != nil && enabled != nil && *s.Enabled != *enabled {
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "enabled", Before: fmt.Sprint(*enabled), After: fmt.Sprint(*s.Enabled)})
		if *s.Enabled {
			reasons = append(reasons, "not enabled")
			steps = append(steps, s.systemctl("enable"))
		} else {
			reasons = append(reasons, "enabled")
			steps = append(steps, s.systemctl("disable"))
		}
	}

	stateAttr := planner.Attr{Name: "state", Before: strings.TrimSuffix(active+"/"+kv["SubState"], "/")}
	switch {
	case s.State == Running && !running:
		stateAttr.After = Running
		reasons = append(reasons, "not running")
		ch.Impact = "service starts"
		steps = append(steps, s.systemctl("start"))
	case s.State == Stopped && running:
		stateAttr.After = Stopped
		reasons = append(reasons, "running")
		ch.Impact = "service stops"
		steps = append(steps, s.systemctl("stop"))
	case unitChanged && running:
		stateAttr.After = "restarted"
		ch.Impact = "restart"
		steps = append(steps, s.systemctl("restart"))
	default:
		stateAttr.Name = ""
	}
	if stateAttr.Name != "" {
		ch.Attrs = append(ch.Attrs, stateAttr)
	}
	if len(steps) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	if notFound && s.Unit != "" {
		ch.Action = planner.Create
	}
	ch.Reason = strings.Join(reasons, "; ")
	return ch, steps, nil
}

// Notify implements Notified: restart the service (reload when Reload is
// set) if it is running. A service meant to be stopped is left alone.
func (s Service) Notify(changed []string) (planner.Change, []Step) {
	ch := planner.Change{Resource: s.Address(), Action: planner.NoOp}
	if len(changed) == 0 || s.State == Stopped {
		return ch, nil
	}
	ch.Action = planner.Update
	verb, impact := "try-restart", "restart"
	if s.Reload {
		verb, impact = "try-reload-or-restart", "reload"
	}
	ch.Impact = impact
	ch.Reason = impact + " if running; notified by " + strings.Join(changed, ", ")
	return ch, []Step{s.systemctl(verb)}
}
