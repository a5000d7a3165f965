package modules

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/executors"
	"github.com/pgherd/pgherd/planner"
)

// CreateClusterConfPath is postgresql-common's configuration of
// pg_createcluster, read by the postgresql-<major> postinst.
const CreateClusterConfPath = "/etc/postgresql-common/createcluster.conf"

// PostgresHost is a database host's PostgreSQL installation, as the pgherd
// agent expects it: Debian's binaries, and no cluster of Debian's.
type PostgresHost struct {
	// Major is the PostgreSQL major version: 15.
	Major int
	// Version pins the Debian version of postgresql-<major> and
	// postgresql-client-<major> ("15.18-0+deb12u1"); empty takes the
	// candidate.
	Version string
	// Hold keeps apt from upgrading them (minor upgrades are a procedure).
	Hold bool
	// Rolling: once installed, another Version is installed by the
	// rolling procedure (PostgresRoll), one member at a time, not here.
	Rolling bool
	// DataDir is the data directory the agent initialises and runs
	// (default /var/lib/postgresql/<major>/pgherd).
	DataDir string
	// Adopt: the host's running <major>/main cluster is migrated into the
	// pgherd cluster (PostgresAdopt): /etc/postgresql/<major>/main stays,
	// retired, and its unit may still run the postmaster the agent adopted.
	Adopt bool
}

// PostgresHostResources are the resources that install PostgreSQL on a
// database host, in order. Debian's units never start a data directory
// because of three guards, all in place before the package is installed:
//
//  1. createcluster.conf says create_main_cluster = false, so the postinst
//     creates no <major>/main cluster (pg_createcluster is not run);
//  2. postgresql@<major>-main.service is masked (a mask needs no unit
//     file, so it can precede the package), so even a <major>/main cluster
//     made by hand cannot be started by systemd at boot or by
//     postgresql.service;
//  3. /etc/postgresql/<major>/main is kept absent: postgresql.service and
//     pg_ctlcluster only know the clusters configured there, and the
//     agent's data directory has its configuration in the data directory,
//     not under /etc/postgresql. An existing, non-empty directory (a
//     cluster Debian created before pgherd came) is never removed: the
//     plan keeps saying so until someone drops that cluster by hand.
//
// Then the packages, and the data directory, postgres:postgres 0700, with
// its parent postgres:postgres 0755 in Debian's layout
// (/var/lib/postgresql/<major>); elsewhere the parent must be writable by
// postgres (docs/spec.md, data_dir).
func PostgresHostResources(cfg PostgresHost) []Resource {
	major := strconv.Itoa(cfg.Major)
	dataDir := orDefault(cfg.DataDir, "/var/lib/postgresql/"+major+"/pgherd")
	rs := []Resource{
		File{Path: CreateClusterConfPath, Owner: "root", Group: "root", Mode: "0644", Content: "# Managed by pgherd: changes are overwritten.\n" +
			"# The pgherd agent creates and runs the data directory: postgresql-common must create no cluster.\n" +
			"create_main_cluster = false\n"},
		UnitMask{Name: "postgresql@" + major + "-main.service", MayRun: cfg.Adopt},
		Packages{Name: "postgres", Packages: []Package{
			{Name: "postgresql-" + major, Version: cfg.Version, Hold: cfg.Hold, KeepInstalled: cfg.Rolling},
			{Name: "postgresql-client-" + major, Version: cfg.Version, Hold: cfg.Hold, KeepInstalled: cfg.Rolling},
		}},
	}
	if !cfg.Adopt {
		rs = append(rs, Directory{Path: "/etc/postgresql/" + major + "/main", Absent: true})
	}
	// The agent, as postgres, works beside the data directory: it moves a
	// replaced one aside, builds a restored one in a staging directory,
	// and marks an unfinished rewrite (agent/pg). Debian's package does
	// not create /var/lib/postgresql/<major> (pg_createcluster does), and
	// a mkdir -p by root would leave it root's.
	if parent := filepath.Dir(dataDir); strings.HasPrefix(parent, "/var/lib/postgresql/") {
		rs = append(rs, Directory{Path: parent, Owner: "postgres", Group: "postgres", Mode: "0755"})
	} else {
		rs = append(rs, DataDirParent{Path: parent})
	}
	return append(rs, Directory{Path: dataDir, Owner: "postgres", Group: "postgres", Mode: "0700"})
}

// DataDirParent is the directory that holds a data directory outside
// Debian's layout. The agent, as postgres, works beside the data directory
// (see PostgresHostResources), so postgres must be able to write there: a
// missing parent is created postgres:postgres 0755; an existing one that
// postgres cannot write to is a plan error that says what to do, never a
// chown of a directory pgherd did not make. Its address is
// "data_dir_parent.<path>".
type DataDirParent struct {
	Path string `json:"path"`
}

// Address implements Resource.
func (d DataDirParent) Address() string { return "data_dir_parent." + d.Path }

// Probe implements Resource: the directory's stat, and whether postgres
// may write to it (unknown before the postgres user exists).
func (d DataDirParent) Probe() string {
	return statProbe(d.Path) + `if ! id -u postgres >/dev/null 2>&1; then echo postgres_writes=unknown
elif runuser -u postgres -- test -w "$p" -a -x "$p"; then echo postgres_writes=yes
else echo postgres_writes=no; fi
`
}

// Diff implements Resource.
func (d DataDirParent) Diff(fact Fact) (planner.Change, []Step, error) {
	addr := d.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if !strings.HasPrefix(d.Path, "/") {
		return ch, nil, fmt.Errorf("%s: path must be absolute: %w", addr, ErrInvalid)
	}
	ff, err := parseFileFact(addr, fact)
	if err != nil {
		return ch, nil, err
	}
	switch ff.typ {
	case "absent":
		ch.Action = planner.Create
		ch.Reason = "the data directory's parent does not exist"
		ch.Attrs = []planner.Attr{{Name: "owner", After: "postgres"}, {Name: "group", After: "postgres"}, {Name: "mode", After: "0755"}}
		return ch, []Step{{Desc: "install -d -o postgres -g postgres -m 0755 " + d.Path,
			Cmd: executors.Join("install", "-d", "-o", "postgres", "-g", "postgres", "-m", "0755", "--", d.Path)}}, nil
	case "directory":
	default:
		return ch, nil, fmt.Errorf("%s: path is a %s, not a directory: %w", addr, ff.typ, ErrConflict)
	}
	writes := parseKV(fact.Stdout)["postgres_writes"]
	if writes == "unknown" {
		// No postgres user yet: it will own nothing here but what its
		// name or group owns.
		m := ff.mode
		writes = "no"
		if ff.owner == "postgres" && m&0o300 == 0o300 || ff.group == "postgres" && m&0o030 == 0o030 || m&0o003 == 0o003 {
			writes = "yes"
		}
	}
	if writes != "yes" {
		return ch, nil, fmt.Errorf("%s: postgres cannot write to %s (owner %s, group %s, mode %s), the directory of data_dir: the agent keeps beside the data directory the marker of an unfinished rewrite and a restore's staging directory; make it postgres's (chown postgres:postgres %s) or choose a data_dir in a directory postgres owns: %w",
			addr, d.Path, ff.owner, ff.group, fmtMode(ff.mode), d.Path, ErrConflict)
	}
	return ch, nil, nil
}

// UnitMask is a systemd unit that must never start: masked (a link to
// /dev/null in /etc/systemd/system, which works even before the unit's
// package is installed). Its address is "unit_mask.<name>". A masked unit
// that still runs is not stopped (it may be a service someone depends on):
// the change says so and the operator stops it.
type UnitMask struct {
	Name string `json:"name"`
	// MayRun: the unit still runs a process pgherd adopted (a migrated
	// postmaster, until the agent restarts it); that is no change.
	MayRun bool `json:"may_run,omitempty"`
}

// Address implements Resource.
func (u UnitMask) Address() string { return "unit_mask." + u.Name }

func (u UnitMask) svc() Service { return Service{Name: u.Name} }

// Probe implements Resource.
func (u UnitMask) Probe() string {
	s := u.svc()
	if !s.validName() {
		return invalidProbe
	}
	return executors.Join("systemctl", "show", "-p", "LoadState,ActiveState,UnitFileState", s.UnitName()) + " || exit 1\n"
}

// Diff implements Resource.
func (u UnitMask) Diff(f Fact) (planner.Change, []Step, error) {
	addr := u.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	s := u.svc()
	if !s.validName() {
		return ch, nil, fmt.Errorf("%s: not a unit name: %w", addr, ErrInvalid)
	}
	if f.ExitCode != 0 {
		return ch, nil, probeFailed(addr, f)
	}
	kv := parseKV(f.Stdout)
	if _, ok := kv["LoadState"]; !ok {
		return ch, nil, fmt.Errorf("%s: systemctl show printed no LoadState: %w", addr, ErrProbe)
	}
	active := kv["ActiveState"]
	running := active == "active" || active == "activating" || active == "reloading"
	var reasons []string
	var steps []Step
	if kv["LoadState"] != "masked" && kv["UnitFileState"] != "masked" {
		reasons = append(reasons, "unit is not masked")
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "masked", Before: "false", After: "true"})
		steps = append(steps, s.systemctl("mask"))
	}
	if running && !u.MayRun {
		reasons = append(reasons, "unit is running: masking does not stop it; stop it by hand once you know it is not in use")
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: "state", Before: active, After: active + " (not stopped by pgherd)"})
	}
	if len(ch.Attrs) == 0 {
		return ch, nil, nil
	}
	ch.Action = planner.Update
	ch.Reason = strings.Join(reasons, "; ")
	return ch, steps, nil
}

// PostgresParameters are the server parameters the spec sets, written to
// the configuration file the pgherd agent owns (ConfFile, included by the
// agent's postgresql.conf) and applied with pg_reload_conf(). Its address is
// "postgres_parameters.<conf file>".
//
// The probe reads the file, then pg_settings over the local socket as the
// postgres user (runuser -u postgres -- psql), when the server runs. A
// parameter matches when its live value equals the wanted one after
// normalisation to pg_settings' unit (NormalizeSetting: "128MB" is 16384
// with unit 8kB). Impact comes from pg_settings.context: "reload" when every
// differing parameter takes effect on reload, "restart needed" when one is a
// postmaster parameter: pgherd only writes and reloads; the restart is the
// rolling-restart procedure's job. Once the file holds the wanted values, a
// parameter that waits for a restart (pending_restart) is not a change: a
// second plan is empty, and the reason of no-op change names them.
type PostgresParameters struct {
	ConfFile   string            `json:"conf_file"`
	Parameters map[string]string `json:"parameters"`
	// Port and SocketDir reach the server (defaults 5432 and
	// /var/run/postgresql).
	Port      int    `json:"port,omitempty"`
	SocketDir string `json:"socket_dir,omitempty"`
	// Owner of ConfFile (default postgres).
	Owner string `json:"owner,omitempty"`
	// Agent: the pgherd agent owns the parameters (it writes them to its
	// managed file and reloads on SIGHUP). Only live values are compared;
	// ConfFile is then not written, and a difference is repaired by
	// resetting what ALTER SYSTEM set for those parameters and reloading
	// the agent.
	Agent bool `json:"agent,omitempty"`
}

// Address implements Resource.
func (p PostgresParameters) Address() string {
	if p.Agent {
		return "postgres_parameters"
	}
	return "postgres_parameters." + p.ConfFile
}

var pgParamName = regexp.MustCompile(`^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$`)

func (p PostgresParameters) valid() error {
	if !strings.HasPrefix(p.ConfFile, "/") {
		return fmt.Errorf("%s: conf file must be an absolute path: %w", p.Address(), ErrInvalid)
	}
	if p.SocketDir != "" && !strings.HasPrefix(p.SocketDir, "/") {
		return fmt.Errorf("%s: socket dir must be an absolute path: %w", p.Address(), ErrInvalid)
	}
	if p.Port < 0 || p.Port > 65535 {
		return fmt.Errorf("%s: port %d: %w", p.Address(), p.Port, ErrInvalid)
	}
	for k, v := range p.Parameters {
		if !pgParamName.MatchString(k) {
			return fmt.Errorf("%s: parameter name %q: %w", p.Address(), k, ErrInvalid)
		}
		if strings.ContainsAny(v, "\n\r\x00") {
			return fmt.Errorf("%s: parameter %s: value must be one line: %w", p.Address(), k, ErrInvalid)
		}
	}
	return nil
}

func (p PostgresParameters) psql(sql string, extra ...string) string {
	words := []string{"runuser", "-u", orDefault(p.Owner, "postgres"), "--", "psql", "-X", "-A", "-t", "-q",
		"-h", orDefault(p.SocketDir, "/var/run/postgresql"), "-p", strconv.Itoa(cmpOr(p.Port, 5432)), "-d", "postgres"}
	words = append(words, extra...)
	return executors.Join(append(words, "-c", sql)...)
}

func cmpOr(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

const pgSettingsQuery = "select name, setting, coalesce(unit, ''), context, vartype, pending_restart from pg_settings"

// Probe implements Resource. It prints file=<base64> or file-missing, then
// "#down" when the server does not answer, else "#settings" and pg_settings
// as NUL-separated fields (psql -z -0: values may hold any other byte).
// A server that stops between its answer and the query (the agent
// restarting it: seen in a migration that needed a restart) is asked
// again, up to three times: it is then down, or back.
func (p PostgresParameters) Probe() string {
	if p.valid() != nil {
		return invalidProbe
	}
	return "f=" + executors.Quote(p.ConfFile) + `
if [ -f "$f" ]; then printf 'file=%s\n' "$(base64 -w0 < "$f")"; else echo file-missing; fi
s=$(mktemp) || exit 1
trap 'rm -f "$s"' EXIT
for try in 1 2 3; do
  if ! ` + p.psql("select 1") + ` >/dev/null 2>&1; then echo '#down'; exit 0; fi
  if ` + p.psql(pgSettingsQuery, "-z", "-0") + ` >"$s"; then echo '#settings'; cat "$s"; exit 0; fi
  sleep 1
done
exit 1
`
}

// pgSetting is one row of pg_settings.
type pgSetting struct {
	name, setting, unit, context, vartype string
	pendingRestart                        bool
}

func parsePgFact(addr string, f Fact) (file []byte, fileOK, up bool, settings map[string]pgSetting, err error) {
	if f.ExitCode != 0 {
		return nil, false, false, nil, probeFailed(addr, f)
	}
	head, rest, _ := bytes.Cut(f.Stdout, []byte("#settings\n"))
	kv := parseKV(head)
	if b64, ok := kv["file"]; ok {
		if file, err = base64.StdEncoding.DecodeString(b64); err != nil {
			return nil, false, false, nil, fmt.Errorf("%s: probe file content: %w", addr, ErrProbe)
		}
		fileOK = true
	}
	if _, down := kv["#down"]; down {
		return file, fileOK, false, nil, nil
	}
	if !bytes.Contains(f.Stdout, []byte("#settings\n")) {
		return nil, false, false, nil, fmt.Errorf("%s: probe printed neither #settings nor #down: %w", addr, ErrProbe)
	}
	fields := strings.Split(strings.TrimSuffix(string(rest), "\x00"), "\x00")
	if len(fields)%6 != 0 {
		return nil, false, false, nil, fmt.Errorf("%s: pg_settings: %d fields, not rows of 6: %w", addr, len(fields), ErrProbe)
	}
	settings = map[string]pgSetting{}
	for i := 0; i+5 < len(fields); i += 6 {
		r := fields[i : i+6]
		settings[r[0]] = pgSetting{name: r[0], setting: r[1], unit: r[2], context: r[3], vartype: r[4], pendingRestart: r[5] == "t"}
	}
	return file, fileOK, true, settings, nil
}

// RenderPgConf renders parameters as a postgresql.conf fragment, sorted by
// name, every value quoted.
func RenderPgConf(params map[string]string) string {
	var b strings.Builder
	b.WriteString("# Managed by pgherd: changes are overwritten.\n")
	for _, k := range slices.Sorted(mapKeys(params)) {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(strings.ReplaceAll(params[k], `\`, `\\`), "'", "''"))
	}
	return b.String()
}

func mapKeys(m map[string]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// Diff implements Resource.
func (p PostgresParameters) Diff(f Fact) (planner.Change, []Step, error) {
	addr := p.Address()
	ch := planner.Change{Resource: addr, Action: planner.NoOp}
	if err := p.valid(); err != nil {
		return ch, nil, err
	}
	file, fileOK, up, settings, err := parsePgFact(addr, f)
	if err != nil {
		return ch, nil, err
	}
	want := []byte(RenderPgConf(p.Parameters))
	fileDiffers := !fileOK || !bytes.Equal(file, want)
	if p.Agent {
		fileDiffers = false
		if !up {
			// The agent applies the parameters when it starts the server.
			return ch, nil, nil
		}
	}

	var reasons, pending []string
	restart, reload := false, false
	for _, k := range slices.Sorted(mapKeys(p.Parameters)) {
		v := p.Parameters[k]
		if !up {
			continue
		}
		s, known := settings[k]
		if !known {
			if !strings.Contains(k, ".") {
				return ch, nil, fmt.Errorf("%s: unknown parameter %q: %w", addr, k, ErrInvalid)
			}
			// A custom (dotted) parameter of a library not loaded yet:
			// only the file tells.
			continue
		}
		if s.context == "internal" {
			return ch, nil, fmt.Errorf("%s: parameter %s is read-only (internal): %w", addr, k, ErrInvalid)
		}
		got, wantN, err := NormalizeSetting(v, s.setting, s.unit, s.vartype)
		if err != nil {
			return ch, nil, fmt.Errorf("%s: parameter %s: %w", addr, k, err)
		}
		if got == wantN {
			continue
		}
		if !fileDiffers && s.pendingRestart {
			pending = append(pending, k)
			continue
		}
		before := s.setting
		if s.unit != "" {
			before += " (" + s.unit + ")"
		}
		ch.Attrs = append(ch.Attrs, planner.Attr{Name: k, Before: before, After: v})
		if s.context == "postmaster" {
			restart = true
		} else {
			reload = true
		}
	}
	if !fileDiffers && len(ch.Attrs) == 0 {
		if len(pending) > 0 {
			ch.Reason = "restart pending for " + strings.Join(pending, ", ")
		}
		return ch, nil, nil
	}
	ch.Action = planner.Update
	if p.Agent {
		ch.Reason = fmt.Sprintf("%d parameter(s) differ from the spec", len(ch.Attrs))
		ch.Impact = "reload"
		var reset []string
		for _, a := range ch.Attrs {
			reset = append(reset, a.Name)
		}
		if restart {
			ch.Impact = "restart needed"
		}
		steps := []Step{}
		for _, k := range reset {
			steps = append(steps, Step{Desc: "ALTER SYSTEM RESET " + k, Cmd: p.psql("ALTER SYSTEM RESET " + k)})
		}
		steps = append(steps, Step{Desc: "ask the agent to apply the parameters again (reload)",
			Cmd: reloadAgentCmd})
		return ch, steps, nil
	}
	if !fileOK {
		ch.Action = planner.Create
	}
	oldName := p.ConfFile
	if !fileOK {
		oldName = "/dev/null"
	}
	ch.Diff = unifiedDiff(oldName, file, p.ConfFile, want)
	switch {
	case !up:
		reasons = append(reasons, "server not running: the file applies at its next start")
	case len(ch.Attrs) > 0:
		reasons = append(reasons, fmt.Sprintf("%d parameter(s) differ", len(ch.Attrs)))
	default:
		reasons = append(reasons, "file differs; live values already match")
	}
	ch.Reason = strings.Join(reasons, "; ")
	switch {
	case restart:
		ch.Impact = "restart needed"
	case reload:
		ch.Impact = "reload"
	}
	path, owner := p.ConfFile, orDefault(p.Owner, "postgres")
	steps := []Step{{
		Desc: "write " + path,
		Run: func(ctx context.Context, h Host) error {
			if err := h.PutFile(ctx, path, bytes.NewReader(want), executors.FileAttrs{Owner: owner, Group: owner, Mode: 0o640}); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			return nil
		},
	}}
	if up {
		steps = append(steps, Step{Desc: "select pg_reload_conf()", Cmd: p.psql("select pg_reload_conf()")})
	}
	return ch, steps, nil
}

// Units PostgreSQL accepts, in bytes and in microseconds.
var (
	pgMemUnits  = map[string]float64{"B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
	pgTimeUnits = map[string]float64{"us": 1, "ms": 1e3, "s": 1e6, "min": 60e6, "h": 3600e6, "d": 86400e6}
	pgNumUnit   = regexp.MustCompile(`^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([A-Za-z]*)\s*$`)
)

// pgUnitBase returns the size of one pg_settings unit ("8kB", "ms", "s")
// and its table.
func pgUnitBase(unit string) (float64, map[string]float64, error) {
	if unit == "" {
		return 1, nil, nil
	}
	num := strings.TrimRightFunc(unit, func(r rune) bool { return r < '0' || r > '9' })
	name := unit[len(num):]
	mult := 1.0
	if num != "" {
		n, err := strconv.Atoi(num)
		if err != nil {
			return 0, nil, fmt.Errorf("unit %q: %w", unit, ErrProbe)
		}
		mult = float64(n)
	}
	if u, ok := pgMemUnits[name]; ok {
		return mult * u, pgMemUnits, nil
	}
	if u, ok := pgTimeUnits[name]; ok {
		return mult * u, pgTimeUnits, nil
	}
	return 0, nil, fmt.Errorf("unit %q: %w", unit, ErrProbe)
}

// NormalizeSetting brings a wanted value and pg_settings' setting of a
// parameter (with its unit and vartype) to comparable strings, the way the
// server would read the wanted value: "128MB" with unit 8kB is 16384, "5min"
// with unit s is 300, a bare number is in the setting's unit, integers
// round to the nearest unit (half to even, like the server's rint), "on",
// "true", "yes", "1" are all "on", enums compare case-insensitively, and
// strings exactly. A value the server would reject wraps ErrInvalid.
func NormalizeSetting(want, setting, unit, vartype string) (live, wanted string, err error) {
	switch vartype {
	case "bool":
		b, ok := pgBool(want)
		if !ok {
			return "", "", fmt.Errorf("%q is not a boolean: %w", want, ErrInvalid)
		}
		l, _ := pgBool(setting)
		return fmtBool(l), fmtBool(b), nil
	case "enum":
		return strings.ToLower(setting), strings.ToLower(strings.TrimSpace(want)), nil
	case "integer", "real":
		base, table, err := pgUnitBase(unit)
		if err != nil {
			return "", "", err
		}
		m := pgNumUnit.FindStringSubmatch(want)
		if m == nil {
			return "", "", fmt.Errorf("%q is not a number: %w", want, ErrInvalid)
		}
		x, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return "", "", fmt.Errorf("%q: %w", want, ErrInvalid)
		}
		if m[2] != "" {
			u, ok := table[m[2]]
			if !ok {
				return "", "", fmt.Errorf("%q: unit %q not valid here (the unit of this parameter is %q; units are case-sensitive): %w", want, m[2], orDefault(unit, "none"), ErrInvalid)
			}
			x = x * u / base
		}
		l, err := strconv.ParseFloat(setting, 64)
		if err != nil {
			return "", "", fmt.Errorf("setting %q: %w", setting, ErrProbe)
		}
		if vartype == "integer" {
			return strconv.FormatFloat(l, 'f', -1, 64), strconv.FormatFloat(math.RoundToEven(x), 'f', -1, 64), nil
		}
		// Reals: compare at 6 significant digits, as pg_settings shows them.
		return strconv.FormatFloat(l, 'g', 6, 64), strconv.FormatFloat(x, 'g', 6, 64), nil
	default: // string
		return setting, want, nil
	}
}

func fmtBool(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// pgBool parses a boolean the way PostgreSQL's parse_bool does: on, off,
// true, false, yes, no, 1, 0 and unique prefixes, case-insensitive.
func pgBool(s string) (bool, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	switch {
	case s == "":
		return false, false
	case s == "1":
		return true, true
	case s == "0":
		return false, true
	case s == "on":
		return true, true
	case s == "off" || s == "of":
		return false, true
	case s == "o":
		return false, false
	case strings.HasPrefix("true", s) || strings.HasPrefix("yes", s):
		return true, true
	case strings.HasPrefix("false", s) || strings.HasPrefix("no", s):
		return false, true
	}
	return false, false
}

// HBARule is one line of pg_hba.conf.
type HBARule struct {
	// Type is local, host, hostssl or hostnossl.
	Type string
	// Database and User are lists as pg_hba.conf reads them ("all",
	// "replication", "app,report").
	Database, User string
	// Address is a CIDR ("10.77.0.0/24"), or "all"; empty for local.
	Address string
	// Method defaults to scram-sha-256.
	Method string
	// Options are name=value options of the method ("clientcert=verify-full").
	Options []string
}

var (
	hbaTypes   = []string{"local", "host", "hostssl", "hostnossl"}
	hbaMethods = []string{"trust", "reject", "scram-sha-256", "md5", "password", "peer", "ident", "cert", "gss", "sspi", "pam", "ldap", "radius"}
	hbaList    = regexp.MustCompile(`^[A-Za-z0-9_+@.-]+(,[A-Za-z0-9_+@.-]+)*$`)
	hbaOption  = regexp.MustCompile(`^[a-z_]+=[^\s"#]+$`)
)

// RenderPgHBA renders pg_hba.conf, one aligned line per rule, in order
// (PostgreSQL uses the first line that matches).
func RenderPgHBA(rules []HBARule) (string, error) {
	var rows [][]string
	for i, r := range rules {
		r.Method = orDefault(r.Method, "scram-sha-256")
		bad := func(what string) error {
			return fmt.Errorf("pg_hba rule %d: %s: %w", i+1, what, ErrInvalid)
		}
		if !slices.Contains(hbaTypes, r.Type) {
			return "", bad(fmt.Sprintf("type %q: want one of %s", r.Type, strings.Join(hbaTypes, ", ")))
		}
		if !hbaList.MatchString(r.Database) || !hbaList.MatchString(r.User) {
			return "", bad(fmt.Sprintf("database %q or user %q: want a comma-separated list of names", r.Database, r.User))
		}
		if !slices.Contains(hbaMethods, r.Method) {
			return "", bad(fmt.Sprintf("method %q", r.Method))
		}
		for _, o := range r.Options {
			if !hbaOption.MatchString(o) {
				return "", bad(fmt.Sprintf("option %q: want name=value", o))
			}
		}
		row := []string{r.Type, r.Database, r.User}
		switch {
		case r.Type == "local":
			if r.Address != "" {
				return "", bad("a local rule has no address")
			}
		case r.Address == "all" || r.Address == "samehost" || r.Address == "samenet":
			row = append(row, r.Address)
		default:
			pfx, err := netip.ParsePrefix(r.Address)
			if err != nil || pfx.Masked() != pfx {
				return "", bad(fmt.Sprintf("address %q: want a network in CIDR form (host bits zero), all, samehost or samenet", r.Address))
			}
			row = append(row, r.Address)
		}
		if r.Type == "local" {
			row = append(row, "")
		}
		row = append(row, strings.TrimSpace(r.Method+" "+strings.Join(r.Options, " ")))
		rows = append(rows, row)
	}
	rows = append([][]string{{"# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD"}}, rows...)
	widths := make([]int, 4)
	for _, row := range rows {
		for j, c := range row[:4] {
			widths[j] = max(widths[j], len(c))
		}
	}
	var b strings.Builder
	b.WriteString("# Managed by pgherd: changes are overwritten.\n")
	for _, row := range rows {
		for j, c := range row[:4] {
			fmt.Fprintf(&b, "%-*s ", widths[j], c)
		}
		b.WriteString(row[4] + "\n")
	}
	return b.String(), nil
}
