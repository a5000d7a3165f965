package modules

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

var unixName = regexp.MustCompile(`^[a-z_][a-z0-9_-]*\$?$`)

// getentProbe prints "entry=<getent line>" when name exists in db, nothing
// when it does not (getent's exit code 2), and fails otherwise. Read-only.
func getentProbe(db, name string) string {
	return `if e=$(getent ` + db + ` ` + executors.Quote(name) + `); then printf 'entry=%s\n' "$e"; else [ $? -eq 2 ] || exit 1; exit 0; fi
`
}

// Group is a Unix group. Its address is "group.<name>". Steps: groupadd
// (with -r when System, -g when GID is set), groupmod -g when the GID
// differs, groupdel when Absent.
type Group struct {
	Name string `json:"name"`
	// GID is wanted when non-zero.
	GID    int  `json:"gid,omitempty"`
	System bool `json:"system,omitempty"`
	Absent bool `json:"absent,omitempty"`
}

// Address implements Resource.
func (g Group) Address() string { return "group." + g.Name }

// Probe implements Resource: getent group.
func (g Group) Probe() string {
	if !unixName.MatchString(g.Name) {
		return invalidProbe // Diff reports the invalid name.
	}
	return getentProbe("group", g.Name)
}

// Diff implements Resource.
func (g Group) Diff(f Fact) (planner.Change, []Step, error) {
	ch := planner.Change{Resource: g.Address(), Action: planner.NoOp}
	if !unixName.MatchString(g.Name) {
		return ch, nil, fmt.Errorf("%s: not a valid group name: %w", g.Address(), ErrInvalid)
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(g.Address(), f)
	}
	entry, ok := parseKV(f.Stdout)["entry"]
	fields := strings.Split(entry, ":")
	if ok && len(fields) < 3 {
		return ch, nil, fmt.Errorf("%s: getent printed %q: %w", g.Address(), entry, ErrProbe)
	}
	switch {
	case g.Absent && !ok:
		return ch, nil, nil
	case g.Absent:
		ch.Action = planner.Delete
		ch.Reason = "group exists"
		return ch, []Step{{Desc: "groupdel " + g.Name, Cmd: executors.Join("groupdel", g.Name)}}, nil
	case !ok:
		ch.Action = planner.Create
		ch.Reason = "group does not exist"
		words := []string{"groupadd"}
		if g.System {
			words = append(words, "-r")
		}
		if g.GID != 0 {
			words = append(words, "-g", strconv.Itoa(g.GID))
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "gid", After: strconv.Itoa(g.GID)})
		}
		words = append(words, g.Name)
		return ch, []Step{{Desc: "groupadd " + g.Name, Cmd: executors.Join(words...)}}, nil
	}
	if g.GID != 0 && fields[2] != strconv.Itoa(g.GID) {
		ch.Action = planner.Update
		ch.Reason = "GID differs"
		ch.Impact = "files owned by the old GID keep it"
		ch.Attrs = []planner.Attr{{Name: "gid", Before: fields[2], After: strconv.Itoa(g.GID)}}
		return ch, []Step{{Desc: "groupmod -g " + strconv.Itoa(g.GID) + " " + g.Name, Cmd: executors.Join("groupmod", "-g", strconv.Itoa(g.GID), g.Name)}}, nil
	}
	return ch, nil, nil
}

// User is a Unix user. Its address is "user.<name>". Zero or empty fields
// are not managed (left as they are, or useradd's defaults on creation);
// Groups, when not nil, is the exact list of supplementary groups (an empty
// non-nil list removes them all). Steps: useradd (with -r when System; the
// home is created, with -m, only for non-system users), one usermod for
// everything that differs on an existing user (the home is not moved),
// userdel without -r when Absent: pgherd never deletes a home directory.
type User struct {
	Name   string   `json:"name"`
	UID    int      `json:"uid,omitempty"`
	Group  string   `json:"group,omitempty"`
	Groups []string `json:"groups,omitempty"`
	Home   string   `json:"home,omitempty"`
	Shell  string   `json:"shell,omitempty"`
	System bool     `json:"system,omitempty"`
	Absent bool     `json:"absent,omitempty"`
}

// Address implements Resource.
func (u User) Address() string { return "user." + u.Name }

// Probe implements Resource: getent passwd, then the user's primary group
// name and all group names from id.
func (u User) Probe() string {
	if !unixName.MatchString(u.Name) {
		return invalidProbe // Diff reports the invalid name.
	}
	n := executors.Quote(u.Name)
	return `if e=$(getent passwd ` + n + `); then printf 'entry=%s\n' "$e"; else [ $? -eq 2 ] || exit 1; exit 0; fi
printf 'group=%s\n' "$(id -gn ` + n + `)"
printf 'groups=%s\n' "$(id -Gn ` + n + `)"
`
}

// Diff implements Resource.
func (u User) Diff(f Fact) (planner.Change, []Step, error) {
	addr := u.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if !unixName.MatchString(u.Name) {
		return ch, nil, fmt.Errorf("%s: not a valid user name: %w", addr, ErrInvalid)
	}
	for _, g := range append([]string{u.Group}, u.Groups...) {
		if g != "" && !unixName.MatchString(g) {
			return ch, nil, fmt.Errorf("%s: group %q: not a valid group name: %w", addr, g, ErrInvalid)
		}
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	entry, ok := kv["entry"]
	fields := strings.Split(entry, ":")
	if ok && len(fields) < 7 {
		return ch, nil, fmt.Errorf("%s: getent printed %q: %w", addr, entry, ErrProbe)
	}
	wantGroups := slices.Clone(u.Groups)
	slices.Sort(wantGroups)
	wantGroups = slices.Compact(wantGroups)

	switch {
	case u.Absent && !ok:
		return ch, nil, nil
	case u.Absent:
		ch.Action = planner.Delete
		ch.Reason = "user exists (its home directory is kept)"
		return ch, []Step{{Desc: "userdel " + u.Name, Cmd: executors.Join("userdel", u.Name)}}, nil
	case !ok:
		ch.Action = planner.Create
		ch.Reason = "user does not exist"
		words := []string{"useradd"}
		if u.System {
			words = append(words, "-r")
		} else if u.Home != "" {
			words = append(words, "-m")
		}
		add := func(attr, flag, v string) {
			if v != "" {
				ch.Attrs = append(ch.Attrs, planner.Attr{Name: attr, After: v})
				words = append(words, flag, v)
			}
		}
		if u.UID != 0 {
			add("uid", "-u", strconv.Itoa(u.UID))
		}
		add("group", "-g", u.Group)
		if len(wantGroups) > 0 {
			add("groups", "-G", strings.Join(wantGroups, ","))
		}
		add("home", "-d", u.Home)
		add("shell", "-s", u.Shell)
		words = append(words, u.Name)
		return ch, []Step{{Desc: "useradd " + u.Name, Cmd: executors.Join(words...)}}, nil
	}

	primary := kv["group"]
	var words []string
	diff := func(attr, flag, before, after string) {
		if after != "" && before != after {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: attr, Before: before, After: after})
			words = append(words, flag, after)
		}
	}
	if u.UID != 0 {
		diff("uid", "-u", fields[2], strconv.Itoa(u.UID))
	}
	diff("group", "-g", primary, u.Group)
	if u.Groups != nil {
		// id -Gn lists the primary group too; it is not a supplementary one.
		primaryAfter := orDefault(u.Group, primary)
		var have []string
		for _, g := range strings.Fields(kv["groups"]) {
			if g != primary && g != primaryAfter {
				have = append(have, g)
			}
		}
		slices.Sort(have)
		have = slices.Compact(have)
		want := slices.DeleteFunc(slices.Clone(wantGroups), func(g string) bool { return g == primaryAfter })
		if !slices.Equal(have, want) {
			ch.Attrs = append(ch.Attrs, planner.Attr{Name: "groups", Before: strings.Join(have, ","), After: strings.Join(want, ",")})
			words = append(words, "-G", strings.Join(want, ","))
		}
	}
	diff("home", "-d", fields[5], u.Home)
	diff("shell", "-s", fields[6], u.Shell)
	if len(words) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	var names []string
	for _, a := range ch.Attrs {
		names = append(names, a.Name)
	}
	ch.Reason = strings.Join(names, ", ") + " differ"
	if len(names) == 1 {
		ch.Reason = names[0] + " differs"
	}
	words = append(append([]string{"usermod"}, words...), u.Name)
	return ch, []Step{{Desc: "usermod " + u.Name + " (" + strings.Join(names, ", ") + ")", Cmd: executors.Join(words...)}}, nil
}
