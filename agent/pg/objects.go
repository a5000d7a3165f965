package pg

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Role is a role the cluster should have.
type Role struct {
	Name            string   `json:"name"`
	Password        string   `json:"password,omitempty"`
	Login           bool     `json:"login"`
	Superuser       bool     `json:"superuser,omitempty"`
	CreateDB        bool     `json:"createdb,omitempty"`
	CreateRole      bool     `json:"createrole,omitempty"`
	Replication     bool     `json:"replication,omitempty"`
	ConnectionLimit int      `json:"connection_limit"`
	MemberOf        []string `json:"member_of,omitempty"`
}

// Attributes renders the role's attributes for CREATE/ALTER ROLE.
func (r Role) Attributes() string {
	flag := func(on bool, name string) string {
		if on {
			return name
		}
		return "NO" + name
	}
	return strings.Join([]string{
		flag(r.Login, "LOGIN"), flag(r.Superuser, "SUPERUSER"), flag(r.CreateDB, "CREATEDB"),
		flag(r.CreateRole, "CREATEROLE"), flag(r.Replication, "REPLICATION"),
		fmt.Sprintf("CONNECTION LIMIT %d", r.ConnectionLimit),
	}, " ")
}

// Database is a database the cluster should have.
type Database struct {
	Name       string   `json:"name"`
	Owner      string   `json:"owner"`
	Extensions []string `json:"extensions,omitempty"`
}

// EnsureObjects creates or updates roles (attributes, password,
// memberships) and creates missing databases and extensions, on the local
// primary. It never drops anything.
func (i *Instance) EnsureObjects(ctx context.Context, roles []Role, dbs []Database) error {
	for _, r := range roles {
		if err := i.EnsureRole(ctx, r.Name, r.Password, r.Attributes()); err != nil {
			return err
		}
	}
	conn, err := i.connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, r := range roles {
		for _, g := range r.MemberOf {
			var member bool
			err := conn.QueryRow(ctx, `SELECT pg_has_role($1, $2, 'MEMBER')`, r.Name, g).Scan(&member)
			if err != nil {
				return fmt.Errorf("pg: membership of %s in %s: %w", r.Name, g, err)
			}
			if !member {
				if _, err := conn.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", ident(g), ident(r.Name))); err != nil {
					return fmt.Errorf("pg: grant %s to %s: %w", g, r.Name, err)
				}
			}
		}
	}
	for _, d := range dbs {
		var owner string
		err := conn.QueryRow(ctx, `SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1`, d.Name).Scan(&owner)
		switch {
		case err == pgx.ErrNoRows:
			if _, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", ident(d.Name), ident(d.Owner))); err != nil {
				return fmt.Errorf("pg: create database %s: %w", d.Name, err)
			}
		case err != nil:
			return fmt.Errorf("pg: look up database %s: %w", d.Name, err)
		case owner != d.Owner:
			if _, err := conn.Exec(ctx, fmt.Sprintf("ALTER DATABASE %s OWNER TO %s", ident(d.Name), ident(d.Owner))); err != nil {
				return fmt.Errorf("pg: database %s owner: %w", d.Name, err)
			}
		}
		if len(d.Extensions) > 0 {
			if err := i.ensureExtensions(ctx, d.Name, d.Extensions); err != nil {
				return err
			}
		}
	}
	return nil
}

func (i *Instance) ensureExtensions(ctx context.Context, db string, exts []string) error {
	ci := i.local()
	ci.DBName = db
	conn, err := connect(ctx, ci)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	for _, e := range exts {
		if _, err := conn.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS "+ident(e)); err != nil {
			return fmt.Errorf("pg: create extension %s in %s: %w", e, db, err)
		}
	}
	return nil
}

func ident(s string) string { return pgx.Identifier{s}.Sanitize() }
