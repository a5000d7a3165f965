package modules

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRollClusterProblems pins the cluster gates of the rolling steps on
// /cluster documents as the agents serve them.
func TestRollClusterProblems(t *testing.T) {
	r := PostgresRoll{Member: "node2", Members: []string{"node1", "node2", "node3"}}
	healthy := `{"leader":"node1","members":[
		{"name":"node1","role":"leader","state":"running"},
		{"name":"node2","role":"replica","state":"streaming","lag":0},
		{"name":"node3","role":"replica","state":"streaming","lag":4096}]}`
	for _, tc := range []struct {
		name, doc string
		want      []string // substrings, one per problem; none: healthy
	}{
		{"healthy", healthy, nil},
		{"no leader", `{"members":[
			{"name":"node1","role":"replica","state":"running"},
			{"name":"node2","role":"replica","state":"streaming","lag":0},
			{"name":"node3","role":"replica","state":"streaming","lag":0}]}`,
			[]string{"no leader", "node1 is running, not streaming"}},
		{"replica stopped, one missing", `{"leader":"node1","members":[
			{"name":"node1","role":"leader","state":"running"},
			{"name":"node2","role":"replica","state":"stopped"}]}`,
			[]string{"node2 is stopped, not streaming", "node3 is not registered"}},
		{"replica running but not streaming (archive recovery)", `{"leader":"node1","members":[
			{"name":"node1","role":"leader","state":"running"},
			{"name":"node2","role":"replica","state":"running","lag":0},
			{"name":"node3","role":"replica","state":"streaming","lag":0}]}`,
			[]string{"node2 is running, not streaming from the leader"}},
		{"lag over the gate", `{"leader":"node1","members":[
			{"name":"node1","role":"leader","state":"running"},
			{"name":"node2","role":"replica","state":"streaming","lag":0},
			{"name":"node3","role":"replica","state":"streaming","lag":33554432}]}`,
			[]string{"node3 lags 33554432 bytes behind the leader (the gate is 16777216)"}},
		{"lag unknown", `{"leader":"node1","members":[
			{"name":"node1","role":"leader","state":"running"},
			{"name":"node2","role":"replica","state":"streaming","lag":"unknown"},
			{"name":"node3","role":"replica","state":"streaming","lag":0}]}`,
			[]string{"node2's replication lag is unknown"}},
		{"paused and scheduled", `{"leader":"node1","pause":true,"scheduled_switchover":{"at":"2026-11-22T05:00:00Z"},"members":[
			{"name":"node1","role":"leader","state":"running"},
			{"name":"node2","role":"replica","state":"streaming","lag":0},
			{"name":"node3","role":"replica","state":"streaming","lag":0}]}`,
			[]string{"paused", "a switchover is scheduled"}},
		{"leader not running", `{"leader":"node1","members":[
			{"name":"node1","role":"leader","state":"starting"},
			{"name":"node2","role":"replica","state":"streaming","lag":0},
			{"name":"node3","role":"replica","state":"streaming","lag":0}]}`,
			[]string{"the leader node1 is starting"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c rollCluster
			if err := json.Unmarshal([]byte(tc.doc), &c); err != nil {
				t.Fatal(err)
			}
			got := r.clusterProblems(&c)
			if len(got) != len(tc.want) {
				t.Fatalf("problems = %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("problem %d = %q, want it to say %q", i, got[i], w)
				}
			}
		})
	}
}

func TestUpstreamVersion(t *testing.T) {
	for deb, want := range map[string]string{"15.20-0+deb12u1": "15.20", "1:17.11-1": "17.11", "15.18-0+deb12u1": "15.18"} {
		if got := upstreamVersion(deb); got != want {
			t.Errorf("upstreamVersion(%q) = %q, want %q", deb, got, want)
		}
	}
	if v, err := pgVersionNum("150020"); err != nil || v != "15.20" {
		t.Errorf("pgVersionNum(150020) = %q, %v", v, err)
	}
	if _, err := pgVersionNum("90624"); err == nil {
		t.Error("pgVersionNum accepted a pre-10 version number")
	}
}
