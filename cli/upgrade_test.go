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
