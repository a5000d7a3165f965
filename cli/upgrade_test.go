package cli

import (
	"slices"
	"testing"
)

func TestFilterRoles(t *testing.T) {
	dump := `--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS PASSWORD 'SCRAM-SHA-256$x';
CREATE ROLE postgres;
ALTER ROLE postgres WITH SUPERUSER INHERIT CREATEROLE CREATEDB LOGIN REPLICATION BYPASSRLS PASSWORD 'SCRAM-SHA-256$y';
CREATE ROLE "Report";
ALTER ROLE "Report" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
ALTER ROLE "Report" SET work_mem TO '64MB';
ALTER ROLE postgres SET statement_timeout TO '1min';

GRANT app TO "Report" GRANTED BY postgres;
`
	got, created := filterRoles(dump, [][]string{{"app"}, {"postgres"}})
	want := `--
-- Roles
--

CREATE ROLE "Report";
ALTER ROLE "Report" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
ALTER ROLE "Report" SET work_mem TO '64MB';

GRANT app TO "Report" GRANTED BY postgres;
`
	if got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
	if !slices.Equal(created, []string{`"Report"`}) {
		t.Errorf("created %q, want the one role the new cluster lacks", created)
	}
}

func TestUpgradeSwitched(t *testing.T) {
	done := upgradeDB{name: "app", oldReadOnly: true, newExists: true}
	for _, tc := range []struct {
		name string
		dbs  []upgradeDB
		want bool
	}{
		{"no database", nil, false},
		{"switched", []upgradeDB{done, {name: "postgres", oldReadOnly: true, newExists: true}}, true},
		{"old still writable", []upgradeDB{done, {name: "postgres", newExists: true}}, false},
		{"new still read-only", []upgradeDB{done, {name: "postgres", oldReadOnly: true, newExists: true, newReadOnly: true}}, false},
		{"subscription left", []upgradeDB{done, {name: "postgres", oldReadOnly: true, newExists: true, sub: "disabled"}}, false},
		{"database missing on the new cluster", []upgradeDB{done, {name: "postgres", oldReadOnly: true}}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := (&majorUpgrade{dbs: tc.dbs}).switched(); got != tc.want {
				t.Errorf("switched() = %v, want %v", got, tc.want)
			}
		})
	}
}
