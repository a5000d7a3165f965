package pg

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

const confHeader = "# Managed by the pgherd agent: edits here are overwritten.\n"

// specMarker starts the comment line of the managed file that lists the
// parameters the last SetParameters set (the spec's, and what HA needs):
// the ones a later SetParameters no longer names are removed from the file,
// so that they fall back to postgresql.conf or PostgreSQL's default.
const specMarker = "# pgherd spec parameters: "

// agentDecided are the parameters the agent sets itself, never from the
// spec: SetParameters leaves them alone.
var agentDecided = []string{"primary_conninfo", "primary_slot_name", "synchronous_standby_names"}

// ManagedParameters reads the agent-managed configuration file. A missing
// file is an empty set.
func (i *Instance) ManagedParameters() (map[string]string, error) {
	params, _, err := i.readManaged()
	return params, err
}

// readManaged reads the managed file: its parameters, and the names the
// last SetParameters set (nil when the file has no specMarker line).
func (i *Instance) readManaged() (params map[string]string, spec []string, err error) {
	data, err := os.ReadFile(i.path(ManagedConfFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("pg: read managed config: %w", err)
	}
	if params, err = parseConf(data); err != nil {
		return nil, nil, err
	}
	return params, specNames(data), nil
}

// specNames reads the specMarker line of a managed file; nil without one.
func specNames(data []byte) []string {
	for l := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(l, specMarker); ok {
			names := strings.Fields(strings.ReplaceAll(rest, ",", " "))
			if names == nil {
				names = []string{}
			}
			return names
		}
	}
	return nil
}

// parseConf reads the subset of postgresql.conf syntax that renderConf
// writes: one "name = 'value'" per line, comments and blank lines ignored.
func parseConf(data []byte) (map[string]string, error) {
	params := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("pg: managed config line %d: no '='", n)
		}
		v, err := unquoteConf(strings.TrimSpace(val))
		if err != nil {
			return nil, fmt.Errorf("pg: managed config line %d: %w", n, err)
		}
		params[strings.ToLower(strings.TrimSpace(name))] = v
	}
	return params, sc.Err()
}

func unquoteConf(s string) (string, error) {
	if len(s) < 2 || s[0] != '\'' || s[len(s)-1] != '\'' {
		return "", fmt.Errorf("value %s is not single-quoted", s)
	}
	s = s[1 : len(s)-1]
	var b strings.Builder
	for k := 0; k < len(s); k++ {
		c := s[k]
		if (c == '\'' || c == '\\') && k+1 < len(s) {
			k++
			c = s[k]
		}
		b.WriteByte(c)
	}
	return b.String(), nil
}

// quoteConf quotes a value for postgresql.conf.
func quoteConf(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

// renderConf writes parameters sorted by name, so that the same set always
// gives the same bytes, after the specMarker line listing spec (sorted)
// when spec is not nil.
func renderConf(params map[string]string, spec []string) []byte {
	var b bytes.Buffer
	b.WriteString(confHeader)
	if spec != nil {
		b.WriteString(specMarker + strings.Join(slices.Sorted(slices.Values(spec)), ",") + "\n")
	}
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(params[k]))
	}
	return b.Bytes()
}

// updateManaged merges set into the managed file and removes the names in
// unset; it writes the file (atomically) only when the set of parameters
// changed or the file is missing, and reports whether it wrote. The list of
// spec parameters is kept.
func (i *Instance) updateManaged(set map[string]string, unset ...string) (bool, error) {
	cur, spec, err := i.readManaged()
	if err != nil {
		return false, err
	}
	return i.writeManaged(cur, spec, spec, set, unset...)
}

// writeManaged writes the managed file holding cur with set merged in and
// unset removed, listing newSpec as the spec parameters, when that differs
// from cur and oldSpec or the file is missing.
func (i *Instance) writeManaged(cur map[string]string, oldSpec, newSpec []string, set map[string]string, unset ...string) (bool, error) {
	next := maps.Clone(cur)
	for k, v := range set {
		next[strings.ToLower(k)] = v
	}
	for _, k := range unset {
		delete(next, strings.ToLower(k))
	}
	_, statErr := os.Stat(i.path(ManagedConfFile))
	if maps.Equal(cur, next) && slices.Equal(oldSpec, newSpec) && (oldSpec == nil) == (newSpec == nil) && statErr == nil {
		return false, nil
	}
	if err := i.writeFile(i.path(ManagedConfFile), renderConf(next, newSpec)); err != nil {
		return false, err
	}
	i.log().Info("managed config written", "set", slices.Sorted(maps.Keys(set)), "unset", unset)
	return true, nil
}

// ensureInclude makes sure postgresql.conf ends by including the managed
// file and that the managed file exists (an include of a missing file stops
// the server from starting, which is the safer failure).
func (i *Instance) ensureInclude() error {
	if _, err := i.updateManaged(nil); err != nil {
		return err
	}
	p := i.path("postgresql.conf")
	data, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("pg: read postgresql.conf: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if strings.TrimSpace(lines[len(lines)-1]) == includeLine {
		return nil
	}
	// Drop an earlier include of ours (something was appended after it)
	// and put it back last.
	var keep []string
	for _, l := range lines {
		if strings.TrimSpace(l) != includeLine {
			keep = append(keep, l)
		}
	}
	keep = append(keep, "", "# pgherd: the agent-managed parameters come last and win.", includeLine)
	return i.writeFile(p, []byte(strings.Join(keep, "\n")+"\n"))
}

// SetParameters makes params the spec's parameters in the managed
// configuration and, when postgres is running and the file changed, reloads
// it. An empty value, and a parameter an earlier SetParameters (or InitDB)
// set that params no longer names, is removed from the file, so that it
// falls back to postgresql.conf or PostgreSQL's default; what ALTER SYSTEM
// set is not touched. Parameters that need a restart show up in
// Status.PendingRestart.
func (i *Instance) SetParameters(ctx context.Context, params map[string]string) error {
	changed, err := i.setSpecParameters(params)
	if err != nil || !changed {
		return err
	}
	if running, _ := i.postmasterPID(); running == 0 {
		return nil
	}
	return i.Reload(ctx)
}

// setSpecParameters writes params into the managed file as the spec's
// parameters (see SetParameters) and reports whether the file changed. A
// managed file written before the file listed them counts every parameter
// but the agent's own (agentDecided) as the spec's.
func (i *Instance) setSpecParameters(params map[string]string) (bool, error) {
	cur, oldSpec, err := i.readManaged()
	if err != nil {
		return false, err
	}
	prev := oldSpec
	if prev == nil {
		for k := range cur {
			if !slices.Contains(agentDecided, k) {
				prev = append(prev, k)
			}
		}
	}
	set := map[string]string{}
	newSpec := []string{}
	var unset []string
	for k, v := range params {
		k = strings.ToLower(k)
		if v == "" {
			unset = append(unset, k)
			continue
		}
		set[k] = v
		newSpec = append(newSpec, k)
	}
	for _, k := range prev {
		if _, ok := set[k]; !ok && !slices.Contains(agentDecided, k) {
			unset = append(unset, k)
		}
	}
	slices.Sort(newSpec)
	slices.Sort(unset)
	return i.writeManaged(cur, oldSpec, slices.Compact(newSpec), set, slices.Compact(unset)...)
}

// SetSynchronousStandbyNames writes synchronous_standby_names to the managed
// configuration, reloads, and waits until the server reports the value; it
// returns the effective value read back from the server. It returns
// ErrOverridden when another source (ALTER SYSTEM, the command line) wins.
func (i *Instance) SetSynchronousStandbyNames(ctx context.Context, value string) (string, error) {
	if _, err := i.updateManaged(map[string]string{"synchronous_standby_names": value}); err != nil {
		return "", err
	}
	conn, err := i.connect(ctx)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return "", fmt.Errorf("pg: reload: %w", err)
	}
	return waitSetting(ctx, conn, "synchronous_standby_names", value)
}

// waitSetting polls a setting on conn until it equals want. It first asks
// pg_file_settings (which reads the files afresh) whether the managed file
// is the last one to set the name; if not, the value can never apply and
// the answer is ErrOverridden. The backend that ran pg_reload_conf() reads
// the new configuration at its next SIGHUP check, so the poll normally ends
// at once; it gives up after five seconds.
func waitSetting(ctx context.Context, conn *pgx.Conn, name, want string) (string, error) {
	var lastFile string
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT sourcefile FROM pg_file_settings
		WHERE name = $1 AND error IS NULL ORDER BY seqno DESC LIMIT 1), '')`, name).Scan(&lastFile)
	if err != nil {
		return "", fmt.Errorf("pg: read pg_file_settings: %w", err)
	}
	if !strings.HasSuffix(lastFile, "/"+ManagedConfFile) {
		return "", fmt.Errorf("pg: %s is last set in %q, not in %s: %w", name, lastFile, ManagedConfFile, ErrOverridden)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var got, source string
	for {
		err := conn.QueryRow(ctx, "SELECT setting, source FROM pg_settings WHERE name = $1", name).Scan(&got, &source)
		if err != nil {
			return "", fmt.Errorf("pg: read %s: %w", name, err)
		}
		if got == want {
			return got, nil
		}
		if source == "command line" || source == "override" {
			return got, fmt.Errorf("pg: %s = %q comes from the %s: %w", name, got, source, ErrOverridden)
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("pg: %s is %q, want %q (source %s): %w", name, got, want, source, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
