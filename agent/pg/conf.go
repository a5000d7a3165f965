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

// ManagedParameters reads the agent-managed configuration file. A missing
// file is an empty set.
func (i *Instance) ManagedParameters() (map[string]string, error) {
	data, err := os.ReadFile(i.path(ManagedConfFile))
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pg: read managed config: %w", err)
	}
	return parseConf(data)
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
// gives the same bytes.
func renderConf(params map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString(confHeader)
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(params[k]))
	}
	return b.Bytes()
}

// updateManaged merges set into the managed file and removes the names in
// unset; it writes the file (atomically) only when the set of parameters
// changed or the file is missing, and reports whether it wrote.
func (i *Instance) updateManaged(set map[string]string, unset ...string) (bool, error) {
	cur, err := i.ManagedParameters()
	if err != nil {
		return false, err
	}
	next := maps.Clone(cur)
	for k, v := range set {
		next[strings.ToLower(k)] = v
	}
	for _, k := range unset {
		delete(next, strings.ToLower(k))
	}
	_, statErr := os.Stat(i.path(ManagedConfFile))
	if maps.Equal(cur, next) && statErr == nil {
		return false, nil
	}
	if err := i.writeFile(i.path(ManagedConfFile), renderConf(next)); err != nil {
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
	if strings.TrimSpace(lines[len(lines)-1]) == IncludeLine {
		return nil
	}
	// Drop an earlier include of ours (something was appended after it)
	// and put it back last.
	var keep []string
	for _, l := range lines {
		if strings.TrimSpace(l) != IncludeLine {
			keep = append(keep, l)
		}
	}
	keep = append(keep, "", "# pgherd: the agent-managed parameters come last and win.", IncludeLine)
	return i.writeFile(p, []byte(strings.Join(keep, "\n")+"\n"))
}

// SetParameters merges params into the managed configuration (an empty
// value removes the parameter, so that it falls back to postgresql.conf or
// the default) and, when postgres is running and the file changed, reloads
// it. Parameters that need a restart show up in Status.PendingRestart.
func (i *Instance) SetParameters(ctx context.Context, params map[string]string) error {
	set := map[string]string{}
	var unset []string
	for k, v := range params {
		if v == "" {
			unset = append(unset, k)
		} else {
			set[k] = v
		}
	}
	changed, err := i.updateManaged(set, unset...)
	if err != nil || !changed {
		return err
	}
	if running, _ := i.postmasterPID(); running == 0 {
		return nil
	}
	return i.Reload(ctx)
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
