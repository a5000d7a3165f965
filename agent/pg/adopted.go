package pg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// A data directory adopted from a server installed by hand (a migration)
// runs as a primary before pgherd's cluster exists. Until the adopting
// agent has registered its system identifier as the cluster's, no other
// member can clone from it or lead, and the agent never fences it. The
// agent must know that after a restart, with etcd unreachable too, so a
// marker file beside the data directory records it (beside, not in: a
// clone must not carry it). It is written before the registration, so
// that its absence proves the registration never began.

// adoptedPath is the marker of a registered adopted data directory.
func (i *Instance) adoptedPath() string { return i.DataDir + ".pgherd-adopted" }

// AdoptRegistered reports whether the data directory was registered (or
// its registration begun) as cluster's first primary.
func (i *Instance) AdoptRegistered() (bool, error) {
	_, err := os.Stat(i.adoptedPath())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pg: read %s: %w", i.adoptedPath(), err)
	}
	return true, nil
}

// MarkAdoptRegistered records, through to disk, that the data directory is
// being registered as cluster's.
func (i *Instance) MarkAdoptRegistered(cluster string) error {
	if err := writeMark(i.adoptedPath(), cluster); err != nil {
		return fmt.Errorf("pg: mark the adopted data directory as registered: %w", err)
	}
	return nil
}
