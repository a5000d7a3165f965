package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/pgherd/pgherd/agent"
	"github.com/pgherd/pgherd/agent/dcs"
)

func TestLeaderConnString(t *testing.T) {
	cfg := &agent.Config{}
	cfg.Postgres.Superuser = agent.Credentials{User: "postgres", Password: `it's a \ secret`}
	members := []dcs.Member{{Name: "a", ConnURL: "postgres://10.0.0.1:5433/postgres"}, {Name: "b", ConnURL: "postgres://[fd00::2]/postgres"}}
	tests := []struct {
		name, leader, want string
		wantErr            bool
	}{
		{name: "leader", leader: "a", want: `host='10.0.0.1' port='5433' dbname='postgres' user='postgres' password='it\'s a \\ secret' application_name='pgherd backup' connect_timeout='5'`},
		{name: "ipv6 and default port", leader: "b", want: `host='fd00::2' port='5432' dbname='postgres' user='postgres' password='it\'s a \\ secret' application_name='pgherd backup' connect_timeout='5'`},
		{name: "no leader", wantErr: true},
		{name: "unknown member", leader: "c", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &dcs.ClusterState{Members: members}
			if tt.leader != "" {
				st.Leader = &dcs.LeaderKey{Name: tt.leader}
			}
			got, err := leaderConnString(st, cfg)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("got %q, %v; want %q (error %v)", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseTargetTime(t *testing.T) {
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-11-22 00:50:00+00", time.Date(2026, 11, 22, 0, 50, 0, 0, time.UTC), true},
		{"2026-11-22 00:50:00.123456+02:00", time.Date(2026, 11, 21, 22, 50, 0, 123456000, time.UTC), true},
		{"2026-11-22 00:50:00", time.Date(2026, 11, 22, 0, 50, 0, 0, time.UTC), true},
		{"2026-11-22T00:50:00Z", time.Date(2026, 11, 22, 0, 50, 0, 0, time.UTC), true},
		{"yesterday", time.Time{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTargetTime(tt.in)
			if (err == nil) != tt.ok || !got.Equal(tt.want) {
				t.Errorf("parseTargetTime(%q) = %v, %v", tt.in, got, err)
			}
		})
	}
}

func TestDefaultRestoreCommand(t *testing.T) {
	if got := defaultRestoreCommand(agent.ConfigPath); got != `pgherd wal-fetch %f "%p"` {
		t.Errorf("default config: %q", got)
	}
	if got := defaultRestoreCommand("/etc/my dir/a.json"); got != `pgherd wal-fetch --config "/etc/my dir/a.json" %f "%p"` {
		t.Errorf("other config: %q", got)
	}
}

// FuzzParseTargetTime: restore's --target-time takes a time PostgreSQL
// accepts, or says what it wants; what it takes is written into
// recovery_target_time in a form it reads back to the same microsecond.
func FuzzParseTargetTime(f *testing.F) {
	for _, s := range []string{"2026-11-22 00:50:00+00", "2026-11-22 00:50:00.123456789+02:00", "2026-11-22 00:50:00",
		"2026-11-22T00:50:00Z", "0000-01-01 00:00:00+01", "9999-12-31 23:59:59-12", "yesterday", "2026-13-01 00:00:00", "2026-11-22 00:50:00' ; x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseTargetTime(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--target-time ") {
				t.Fatalf("parseTargetTime(%q): %v; want an error naming the flag", s, err)
			}
			return
		}
		if y := got.UTC().Year(); y < 1 || y > 9999 {
			t.Fatalf("parseTargetTime(%q) = %v: year %d", s, got, y)
		}
		written := got.UTC().Format("2006-01-02 15:04:05.999999-07") // as restore writes it
		back, err := parseTargetTime(written)
		if err != nil || !back.Equal(got.Truncate(time.Microsecond)) {
			t.Fatalf("parseTargetTime(%q) = %v, written %q, read back %v, %v", s, got, written, back, err)
		}
	})
}
