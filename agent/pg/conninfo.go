package pg

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ConnInfo says how to reach another member's PostgreSQL (an upstream to
// clone from, stream from or rewind from).
type ConnInfo struct {
	Host     string // host name, address, or unix socket directory
	Port     int
	User     string
	Password string // never logged; written only to 0600 files in the data directory
	DBName   string // "" = "postgres" for SQL connections; ignored for streaming
	// AppName is the application_name; "" = the local Instance.Name where
	// it applies (primary_conninfo).
	AppName string
	SSLMode string // "" = libpq's default (prefer)
	// PassFile is a password file (libpq's passfile) that holds the
	// password instead of the conninfo itself.
	PassFile string
	// SSLRootCert is the CA file a verify-ca or verify-full connection
	// checks the server's certificate with.
	SSLRootCert string
	// ConnectTimeout in seconds; 0 = 5.
	ConnectTimeout int
}

// String renders a libpq keyword/value conninfo string, quoting every
// value; it includes the password.
func (c ConnInfo) String() string {
	var kv []string
	add := func(k, v string) {
		if v != "" {
			kv = append(kv, k+"="+quoteConnValue(v))
		}
	}
	add("host", c.Host)
	if c.Port != 0 {
		add("port", strconv.Itoa(c.Port))
	}
	add("user", c.User)
	add("password", c.Password)
	add("dbname", c.DBName)
	add("application_name", c.AppName)
	add("sslmode", c.SSLMode)
	add("passfile", c.PassFile)
	add("sslrootcert", c.SSLRootCert)
	t := c.ConnectTimeout
	if t == 0 {
		t = 5
	}
	add("connect_timeout", strconv.Itoa(t))
	return strings.Join(kv, " ")
}

// Redacted is String with the password masked, for logs.
func (c ConnInfo) Redacted() string {
	if c.Password != "" {
		c.Password = "(sensitive)"
	}
	return c.String()
}

// quoteConnValue quotes a conninfo value: single quotes, with \ and '
// backslash-escaped.
func quoteConnValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// sql returns the conninfo for an SQL (non-replication) connection.
func (c ConnInfo) sql() ConnInfo {
	if c.DBName == "" {
		c.DBName = "postgres"
	}
	return c
}

// local is the conninfo of this instance over its unix socket.
func (i *Instance) local() ConnInfo {
	return ConnInfo{Host: i.SocketDir, Port: i.Port, User: i.superuser(), DBName: "postgres", AppName: "pgherd-agent"}
}

// connect opens an SQL connection to the local server as the superuser.
func (i *Instance) connect(ctx context.Context) (*pgx.Conn, error) {
	return connect(ctx, i.local())
}

func connect(ctx context.Context, ci ConnInfo) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(ci.sql().String())
	if err != nil {
		return nil, fmt.Errorf("pg: parse conninfo %s: %w", ci.Redacted(), err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pg: connect %s:%d: %w", ci.Host, ci.Port, err)
	}
	return conn, nil
}

// Ping runs a trivial query on the local server, bounded by ctx and by a
// two-second timeout of its own.
func (i *Instance) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("pg: ping: %w", err)
	}
	return nil
}

// Checkpoint runs CHECKPOINT on the local server.
func (i *Instance) Checkpoint(ctx context.Context) error {
	return i.exec(ctx, "CHECKPOINT")
}

// exec runs one statement on a fresh local connection.
func (i *Instance) exec(ctx context.Context, sql string, args ...any) error {
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("pg: %s: %w", strings.Fields(sql)[0], err)
	}
	return nil
}

// PassFileName is the password file, inside the data directory, that
// primary_conninfo names. PostgreSQL logs every parameter a reload
// changes, with its value ("parameter "primary_conninfo" changed to
// …"): a password inside the conninfo went to the server log, which is
// not for secrets. The file is 0600 and the instance user's, like the data
// directory; a clone copies it and the next ConfigureStandby rewrites it.
const PassFileName = "pgherd.pgpass"

// withPassFile moves c's password into the password file at path (written
// through write) and returns c naming that file instead.
func withPassFile(c ConnInfo, path string, write func(path string, data []byte) error) (ConnInfo, error) {
	if c.Password == "" {
		return c, nil
	}
	esc := strings.NewReplacer(`\`, `\\`, `:`, `\:`).Replace
	port := "*"
	if c.Port != 0 {
		port = strconv.Itoa(c.Port)
	}
	host := c.Host
	if host == "" {
		host = "*"
	}
	line := esc(host) + ":" + port + ":*:" + esc(c.User) + ":" + esc(c.Password) + "\n"
	if err := write(path, []byte(line)); err != nil {
		return c, err
	}
	c.Password, c.PassFile = "", path
	return c, nil
}

// tempPassFile moves c's password into a password file of its own for one
// command (pg_basebackup, pg_rewind), whose arguments every user of the
// host can read in the process list. done removes the file.
func (i *Instance) tempPassFile(c ConnInfo) (ConnInfo, func(), error) {
	if c.Password == "" {
		return c, func() {}, nil
	}
	f, err := os.CreateTemp("", "pgherd-pgpass-")
	if err != nil {
		return c, nil, fmt.Errorf("pg: password file: %w", err)
	}
	path := f.Name()
	f.Close()
	done := func() { os.Remove(path) }
	c, err = withPassFile(c, path, i.writeFile)
	if err != nil {
		done()
		return c, nil, err
	}
	return c, done, nil
}
