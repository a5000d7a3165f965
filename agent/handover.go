package agent

import (
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// leaseFile is where an agent exiting for an in-place upgrade leaves its
// leader lease for the next one, in the run directory (a tmpfs: a reboot
// forgets it, as it should). The next agent renews the lease before
// anything else, so the primary never runs without a valid lease and is
// not fenced.
func (a *Agent) leaseFile() string { return filepath.Join(a.cfg.RunDir, "leader-lease.json") }

type leaseHandover struct {
	Cluster string `json:"cluster"`
	Member  string `json:"member"`
	LeaseID int64  `json:"lease_id"`
}

// handOverLease writes the leader lease for the next agent.
func (a *Agent) handOverLease() {
	if a.leaderLease == nil {
		return
	}
	b, _ := json.Marshal(leaseHandover{Cluster: a.cfg.Cluster, Member: a.cfg.Name, LeaseID: a.leaderLease.ID()})
	if err := os.MkdirAll(filepath.Dir(a.leaseFile()), 0o700); err == nil {
		err = os.WriteFile(a.leaseFile(), b, 0o600)
		if err == nil {
			return
		}
	}
	a.log.Warn("could not leave the leader lease for the next agent: it will fence and take the key over")
}

// adoptLease takes up a lease left by the previous agent on this host.
func (a *Agent) adoptLease(ctx context.Context) {
	b, err := os.ReadFile(a.leaseFile())
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	os.Remove(a.leaseFile())
	var h leaseHandover
	if err != nil || json.Unmarshal(b, &h) != nil || h.Cluster != a.cfg.Cluster || h.Member != a.cfg.Name {
		return
	}
	l, err := a.dcs.AdoptLease(ctx, h.LeaseID, a.ttl(), a.safetyMargin())
	if err != nil {
		a.log.Warn("the previous agent's leader lease is gone", "err", err)
		return
	}
	a.leaderLease = l
	a.log.Info("took over the previous agent's leader lease", "lease", h.LeaseID)
}
