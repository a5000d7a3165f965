package modules

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// Package is one Debian package a host should (or should not) have.
type Package struct {
	Name string `json:"name"`
	// Version pins an exact Debian version ("15.18-0+deb12u1"); empty
	// accepts whatever is installed, or the candidate when installing.
	Version string `json:"version,omitempty"`
	// Hold keeps apt from upgrading the package (apt-mark hold). A package
	// without Hold is unheld if someone held it.
	Hold bool `json:"hold,omitempty"`
	// Absent removes the package (apt-get remove, configuration kept).
	Absent bool `json:"absent,omitempty"`
}

// Packages is a set of packages of one host, as one resource, so that a
// single apt-get run installs them all. Its address is "packages", or
// "packages.<Name>" for a named set (the packages a component brings, whose
// place in the apply order matters: etcd's after its default file).
//
// The probe reads dpkg's database only (dpkg-query; holds are the "h"
// selection state that apt-mark hold sets) and whether apt's package lists
// exist. Steps, in order: apt-get update when the lists are missing;
// apt-mark unhold; apt-get remove; apt-get install of everything missing or at
// the wrong version (retried once after apt-get update when apt does not know
// a package or version); apt-mark hold.
type Packages struct {
	Name     string    `json:"name,omitempty"`
	Packages []Package `json:"packages"`
}

// Address implements Resource.
func (p Packages) Address() string {
	if p.Name == "" {
		return "packages"
	}
	return "packages." + p.Name
}

// Probe implements Resource. It prints one line per known package,
// "name<TAB>version<TAB>status" (status is dpkg's three-letter abbreviation,
// "ii " when installed, "hi " when installed and held), then "#lists=present"
// or "#lists=missing". Unknown packages print nothing and are not an error.
func (p Packages) Probe() string {
	var b strings.Builder
	// Invalid names are left out (Diff rejects them): a name that starts
	// with '-' would be read as an option.
	if names := p.names(); len(names) > 0 {
		b.WriteString(executors.Join(append([]string{"dpkg-query", "-W", "-f=${Package}\\t${Version}\\t${db:Status-Abbrev}\\n"}, names...)...))
		// dpkg-query exits 1 when some package is unknown: that is a fact,
		// not a failure.
		b.WriteString(" 2>/dev/null; [ $? -le 1 ] || exit 1\n")
	}
	b.WriteString("if ls /var/lib/apt/lists/ 2>/dev/null | grep -q '_Packages'; then echo '#lists=present'; else echo '#lists=missing'; fi\n")
	return b.String()
}

func (p Packages) names() []string {
	var names []string
	for _, pk := range p.Packages {
		if debName.MatchString(pk.Name) {
			names = append(names, pk.Name)
		}
	}
	return names
}

type dpkgState struct {
	version string
	status  string // "ii ", "hi ", "rc ", ...
}

func (s dpkgState) installed() bool { return len(s.status) >= 2 && s.status[1] == 'i' }
func (s dpkgState) held() bool      { return len(s.status) >= 1 && s.status[0] == 'h' }

var debName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?$`)
var debVersion = regexp.MustCompile(`^[A-Za-z0-9.+~:-]+$`)

// aptGet is the prefix of every apt-get command pgherd runs: no prompts, keep
// locally changed configuration files, wait for another apt to finish.
var aptGet = []string{"DEBIAN_FRONTEND=noninteractive", "apt-get", "-y", "-o", "DPkg::Lock::Timeout=300"}

// Diff implements Resource.
func (p Packages) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: p.Address(), Action: planner.NoOp}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(p.Address(), f)
	}
	seen := map[string]bool{}
	for _, pk := range p.Packages {
		if !debName.MatchString(pk.Name) {
			return ch, nil, fmt.Errorf("package %q: not a Debian package name: %w", pk.Name, ErrInvalid)
		}
		if pk.Version != "" && !debVersion.MatchString(pk.Version) {
			return ch, nil, fmt.Errorf("package %s: version %q: not a Debian version: %w", pk.Name, pk.Version, ErrInvalid)
		}
		if seen[pk.Name] {
			return ch, nil, fmt.Errorf("package %s listed twice: %w", pk.Name, ErrInvalid)
		}
		seen[pk.Name] = true
	}

	state := map[string]dpkgState{}
	listsMissing := false
	for _, line := range strings.Split(string(f.Stdout), "\n") {
		switch {
		case line == "":
		case line == "#lists=missing":
			listsMissing = true
		case strings.HasPrefix(line, "#"):
		default:
			fields := strings.SplitN(line, "\t", 3)
			if len(fields) != 3 {
				return ch, nil, fmt.Errorf("packages: unexpected dpkg-query line %q: %w", line, ErrProbe)
			}
			s := dpkgState{version: fields[1], status: fields[2]}
			// A multi-arch package prints one line per architecture; the
			// installed one wins.
			if old, ok := state[fields[0]]; !ok || !old.installed() {
				state[fields[0]] = s
			}
		}
	}

	var (
		install, remove, hold, unhold  []string
		allowHeld, allowDowngrade      bool
		nInstall, nUpgrade, nDowngrade int
	)
	for _, pk := range p.Packages {
		base, _, _ := strings.Cut(pk.Name, ":")
		s := state[base]
		before := ""
		if s.installed() {
			before = s.version
		}
		if s.held() {
			before += " (held)"
		}
		before = strings.TrimSpace(before)
		after := pk.Version
		changed := false
		switch {
		case pk.Absent:
			after = "(absent)"
			if s.installed() {
				remove = append(remove, pk.Name)
				allowHeld = allowHeld || s.held()
				changed = true
			}
		default:
			if after == "" {
				after = "(any)"
			}
			if pk.Hold {
				after += " (held)"
			}
			need := true
			switch {
			case !s.installed():
				nInstall++
			case pk.Version != "" && s.version != pk.Version:
				if CompareDebianVersions(pk.Version, s.version) < 0 {
					nDowngrade++
					allowDowngrade = true
				} else {
					nUpgrade++
				}
			default:
				need = false
			}
			if need {
				changed = true
				if pk.Version != "" {
					install = append(install, pk.Name+"="+pk.Version)
				} else {
					install = append(install, pk.Name)
				}
				// A held package that stays held must be changed anyway.
				if s.held() && pk.Hold {
					allowHeld = true
				}
			}
			if pk.Hold && !s.held() {
				hold = append(hold, pk.Name)
				changed = true
			}
			if !pk.Hold && s.held() {
				unhold = append(unhold, pk.Name)
				changed = true
			}
		}
		if changed {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: pk.Name, Before: before, After: after})
		}
	}
	if len(ch.Attrs) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	var reason []string
	for _, r := range []struct {
		n    int
		what string
	}{{nInstall, "to install"}, {nUpgrade, "to upgrade"}, {nDowngrade, "to downgrade"}, {len(remove), "to remove"}, {len(hold), "to hold"}, {len(unhold), "to unhold"}} {
		if r.n > 0 {
			reason = append(reason, fmt.Sprintf("%d %s", r.n, r.what))
		}
	}
	ch.Reason = strings.Join(reason, ", ")
	if nUpgrade+nDowngrade+len(remove) > 0 {
		ch.Impact = "services of upgraded or removed packages may restart or stop"
	}

	var steps []Step
	if listsMissing && len(install) > 0 {
		cmd := executors.Join(append(aptGet[:len(aptGet):len(aptGet)], "update")...)
		steps = append(steps, Step{Desc: "apt-get update (package lists missing)", Cmd: cmd})
	}
	if len(unhold) > 0 {
		steps = append(steps, Step{Desc: "apt-mark unhold " + strings.Join(unhold, " "), Cmd: executors.Join(append([]string{"apt-mark", "unhold"}, unhold...)...)})
	}
	if len(remove) > 0 {
		words := append([]string{}, aptGet...)
		words = append(words, "remove")
		if allowHeld {
			words = append(words, "--allow-change-held-packages")
		}
		cmd := executors.Join(append(words, remove...)...)
		steps = append(steps, Step{Desc: "apt-get remove " + strings.Join(remove, " "), Cmd: cmd})
	}
	if len(install) > 0 {
		cmd := aptInstallCmd(allowDowngrade, allowHeld, install...)
		steps = append(steps, Step{
			Desc: "apt-get install " + strings.Join(install, " "),
			Run:  func(ctx context.Context, h Host) error { return aptInstall(ctx, h, cmd) },
		})
	}
	if len(hold) > 0 {
		steps = append(steps, Step{Desc: "apt-mark hold " + strings.Join(hold, " "), Cmd: executors.Join(append([]string{"apt-mark", "hold"}, hold...)...)})
	}
	return ch, steps, nil
}

// aptInstallCmd is the apt-get install command line of pkgs ("name" or
// "name=version"), keeping the configuration files on the host.
func aptInstallCmd(allowDowngrade, allowHeld bool, pkgs ...string) string {
	words := append([]string{}, aptGet...)
	words = append(words, "install", "--no-install-recommends",
		"-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")
	if allowDowngrade {
		words = append(words, "--allow-downgrades")
	}
	if allowHeld {
		words = append(words, "--allow-change-held-packages")
	}
	return executors.Join(append(words, pkgs...)...)
}

// aptStaleLists matches what apt-get install says when its package lists do
// not (yet) know a package or version.
var aptStaleLists = regexp.MustCompile(`Unable to locate package|has no installation candidate|Version '[^']*' for '[^']*' was not found`)

// aptInstall runs an apt-get install command line; when apt does not know a
// package or version it runs apt-get update and tries once more.
func aptInstall(ctx context.Context, h Host, cmd string) error {
	r, err := h.Run(ctx, cmd, nil)
	if err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	if r.ExitCode == 0 {
		return nil
	}
	if !aptStaleLists.Match(r.Stderr) && !aptStaleLists.Match(r.Stdout) {
		return r.Err(h.Name(), cmd)
	}
	update := executors.Join(append(aptGet[:len(aptGet):len(aptGet)], "update")...)
	u, err := h.Run(ctx, update, nil)
	if err != nil {
		return fmt.Errorf("apt-get update: %w", err)
	}
	if err := u.Err(h.Name(), update); err != nil {
		return err
	}
	r, err = h.Run(ctx, cmd, nil)
	if err != nil {
		return fmt.Errorf("apt-get install: %w", err)
	}
	return r.Err(h.Name(), cmd)
}

// CompareDebianVersions compares two Debian version strings the way dpkg
// does ([epoch:]upstream[-revision], '~' sorting before everything, even the
// end): it returns -1, 0 or +1.
func CompareDebianVersions(a, b string) int {
	ea, ua, ra := splitDebVersion(a)
	eb, ub, rb := splitDebVersion(b)
	if c := verrevcmp(ea, eb); c != 0 {
		return c
	}
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

func splitDebVersion(v string) (epoch, upstream, revision string) {
	epoch = "0"
	if i := strings.IndexByte(v, ':'); i >= 0 {
		epoch, v = v[:i], v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// debOrder is dpkg's character weight: '~' below the end of the string,
// letters below other characters.
func debOrder(s string, i int) int {
	if i >= len(s) {
		return 0
	}
	c := s[i]
	switch {
	case isDigit(c):
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	default:
		return int(c) + 256
	}
}

// verrevcmp is dpkg's lib/dpkg/version.c verrevcmp, returning -1, 0, +1.
func verrevcmp(a, b string) int {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := debOrder(a, i), debOrder(b, j)
			if ac != bc {
				return sign(ac - bc)
			}
			i++
			j++
		}
		for i < len(a) && a[i] == '0' {
			i++
		}
		for j < len(b) && b[j] == '0' {
			j++
		}
		firstDiff := 0
		for i < len(a) && isDigit(a[i]) && j < len(b) && isDigit(b[j]) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if i < len(a) && isDigit(a[i]) {
			return 1
		}
		if j < len(b) && isDigit(b[j]) {
			return -1
		}
		if firstDiff != 0 {
			return sign(firstDiff)
		}
	}
	return 0
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}
