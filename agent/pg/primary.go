package pg

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/jackc/pgx/v5"
)

// ConfigurePrimary makes the data directory start as a primary: it removes
// standby.signal and recovery.signal and the upstream settings from the
// managed configuration. It does not start or promote anything.
func (i *Instance) ConfigurePrimary(ctx context.Context) error {
	for _, f := range []string{"standby.signal", "recovery.signal"} {
		if err := os.Remove(i.path(f)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pg: remove %s: %w", f, err)
		}
	}
	if _, err := i.updateManaged(nil, "primary_conninfo", "primary_slot_name"); err != nil {
		return err
	}
	return nil
}

// WriteHBA replaces pg_hba.conf with content and reloads a running server.
func (i *Instance) WriteHBA(ctx context.Context, content string) error {
	if err := i.writeFile(i.path("pg_hba.conf"), []byte(content)); err != nil {
		return err
	}
	if ok, _ := i.Running(); ok {
		return i.Reload(ctx)
	}
	return nil
}

// EnsureRole creates the role, or updates its password and attributes
// (e.g. "REPLICATION LOGIN"), on the local primary.
func (i *Instance) EnsureRole(ctx context.Context, name, password, attrs string) error {
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("pg: look up role %s: %w", name, err)
	}
	verb := "CREATE"
	if exists {
		verb = "ALTER"
	}
	stmt := fmt.Sprintf("%s ROLE %s WITH %s", verb, ident(name), attrs)
	if password != "" {
		// The verifier, not the password: statements show in
		// pg_stat_activity, pg_stat_statements and error logs. Literal
		// quoting: utility statements take no parameters.
		if v, ok := SCRAMVerifier(password); ok {
			password = v
		}
		stmt += " PASSWORD " + quoteLiteral(password)
	}
	if _, err := conn.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("pg: %s role %s: %w", verb, name, err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (standard_conforming_strings on).
func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}

// Upstream is the host and port the standby is configured to stream from
// (primary_conninfo in the managed configuration); "" when none is set.
func (i *Instance) Upstream() (string, int, error) {
	params, err := i.ManagedParameters()
	if err != nil {
		return "", 0, err
	}
	ci := params["primary_conninfo"]
	if ci == "" {
		return "", 0, nil
	}
	cfg, err := pgx.ParseConfig(ci)
	if err != nil {
		return "", 0, fmt.Errorf("pg: primary_conninfo: %w", err)
	}
	return cfg.Host, int(cfg.Port), nil
}
