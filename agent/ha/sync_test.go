package ha

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pgherd/pgherd/agent/dcs"
)

func TestSyncStandbys(t *testing.T) {
	on := func(c *dcs.Config) { c.SynchronousMode = dcs.SyncOn }
	strict := func(c *dcs.Config) { c.SynchronousMode = dcs.SyncStrict }
	quorum := func(n int) func(*dcs.Config) {
		return func(c *dcs.Config) {
			c.SynchronousMode = dcs.SyncOn
			c.SynchronousQuorum = true
			c.SynchronousNodeCount = n
		}
	}
	stream := func(name string, lsn uint64, sync bool) Standby {
		return Standby{Name: name, FlushLSN: lsn, ReplayLSN: lsn, Sync: sync, Streaming: true}
	}
	b, c, d := mem("b", RoleReplica, 100), mem("c", RoleReplica, 100), mem("d", RoleReplica, 100)
	view := func(ssn string, key *dcs.Sync, streaming []Standby, mode func(*dcs.Config), members ...dcs.Member) View {
		st := cluster("a", append([]dcs.Member{mem("a", RolePrimary, 500)}, members...)...)
		st.Sync, st.SyncRevision = key, 60
		v := leaderView(self(RolePrimary, 500, func(s *Self) { s.SyncStandbyNames, s.Streaming = ssn, streaming }), st)
		if mode != nil {
			v = withCfg(v, mode)
		}
		return v
	}
	key := func(q int, names ...string) *dcs.Sync { return &dcs.Sync{Leader: "a", Standbys: names, Quorum: q} }

	tests := []struct {
		name string
		v    View
		want []string
	}{
		{"off and clean: nothing", view("", nil, []Standby{stream("b", 1, false)}, nil, b), []string{"renew_leader"}},
		{"off with a leftover key: empty the key first", view(`FIRST 1 ("b")`, key(0, "b"), nil, nil, b),
			[]string{"renew_leader", "publish_sync([])"}},
		{"off with a leftover setting: then clear the setting", view(`FIRST 1 ("b")`, key(0), nil, nil, b),
			[]string{"renew_leader", "set_sync_standby_names()"}},
		{"on: set the setting before publishing", view("", nil, []Standby{stream("b", 1, false)}, on, b),
			[]string{"renew_leader", `set_sync_standby_names(FIRST 1 ("b"))`}},
		{"on: standby listed but not caught up: do not publish yet", view(`FIRST 1 ("b")`, nil, []Standby{stream("b", 1, false)}, on, b),
			[]string{"renew_leader"}},
		{"on: standby confirmed synchronous: publish it", view(`FIRST 1 ("b")`, nil, []Standby{stream("b", 1, true)}, on, b),
			[]string{"renew_leader", "publish_sync([b])"}},
		{"on: steady state", view(`FIRST 1 ("b")`, key(0, "b"), []Standby{stream("b", 1, true)}, on, b),
			[]string{"renew_leader"}},
		{"on: keep the current sync standby over a more advanced one", view(`FIRST 1 ("b")`, key(0, "b"), []Standby{stream("b", 1, true), stream("c", 9, false)}, on, b, c),
			[]string{"renew_leader"}},
		{"on: sync standby gone: shrink the key before the setting", view(`FIRST 1 ("b")`, key(0, "b"), []Standby{stream("c", 1, false)}, on, c),
			[]string{"renew_leader", "publish_sync([])"}},
		{"on: key shrunk: replace in the setting", view(`FIRST 1 ("b")`, key(0), []Standby{stream("c", 1, false)}, on, c),
			[]string{"renew_leader", `set_sync_standby_names(FIRST 1 ("c"))`}},
		{"on: no standby left: asynchronous after the key is empty", view(`FIRST 1 ("b")`, key(0), nil, on),
			[]string{"renew_leader", "set_sync_standby_names()"}},
		{"strict: no standby left: '*' so commits block", view(`FIRST 1 ("b")`, key(0), nil, strict),
			[]string{"renew_leader", "set_sync_standby_names(*)"}},
		{"strict: no standby and already '*': steady", view(`*`, key(0), nil, strict), []string{"renew_leader"}},
		{"on: node count 2 picks the two most advanced", view("", nil, []Standby{stream("b", 1, false), stream("c", 3, false), stream("d", 2, false)}, func(c *dcs.Config) { on(c); c.SynchronousNodeCount = 2 }, b, c, d),
			[]string{"renew_leader", `set_sync_standby_names(FIRST 2 ("c","d"))`}},
		{"nosync and unregistered standbys are never chosen", view("", nil, []Standby{{Name: "b", Streaming: true, NoSync: true}, stream("x", 5, false)}, on, b),
			[]string{"renew_leader"}},
		{"quorum: grow the key before the setting", view("", nil, []Standby{stream("b", 1, false), stream("c", 1, false)}, quorum(1), b, c),
			[]string{"renew_leader", "publish_sync([b c] any 1)"}},
		{"quorum: key grown: set ANY", view("", key(1, "b", "c"), []Standby{stream("b", 1, false), stream("c", 1, false)}, quorum(1), b, c),
			[]string{"renew_leader", `set_sync_standby_names(ANY 1 ("b","c"))`}},
		{"quorum: steady", view(`ANY 1 ("b","c")`, key(1, "b", "c"), []Standby{stream("b", 1, true), stream("c", 1, true)}, quorum(1), b, c),
			[]string{"renew_leader"}},
		{"quorum: member gone: shrink the setting before the key", view(`ANY 1 ("b","c","d")`, key(1, "b", "c", "d"), []Standby{stream("b", 1, true), stream("c", 1, true)}, quorum(1), b, c),
			[]string{"renew_leader", `set_sync_standby_names(ANY 1 ("b","c"))`}},
		{"quorum: setting shrunk: shrink the key", view(`ANY 1 ("b","c")`, key(1, "b", "c", "d"), []Standby{stream("b", 1, true), stream("c", 1, true)}, quorum(1), b, c),
			[]string{"renew_leader", "publish_sync([b c] any 1)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(tc.v)
			if diff := cmp.Diff(tc.want, actionStrings(d)); diff != "" {
				t.Errorf("actions (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSSN(t *testing.T) {
	tests := []struct {
		in     string
		names  []string
		quorum int
		star   bool
	}{
		{"", nil, 0, false},
		{"*", nil, 0, true},
		{`FIRST 2 ("a","b")`, []string{"a", "b"}, 0, false},
		{`ANY 1 ("a", "b c")`, []string{"a", "b c"}, 1, false},
		{"a, b", []string{"a", "b"}, 0, false},
		{"2 (a, *)", []string{"a"}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			n, q, s := parseSSN(tc.in)
			if !cmp.Equal(n, tc.names) || q != tc.quorum || s != tc.star {
				t.Errorf("parseSSN(%q) = %q %d %v, want %q %d %v", tc.in, n, q, s, tc.names, tc.quorum, tc.star)
			}
		})
		if tc.in != "" && tc.in != "*" && tc.names != nil && !tc.star && tc.in[0] != 'a' {
			n, q, _ := parseSSN(renderSSN(tc.names, tc.quorum, false))
			if !cmp.Equal(n, tc.names) || q != tc.quorum {
				t.Errorf("render/parse round trip of %q: %q %d", tc.in, n, q)
			}
		}
	}
}
