package dcs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// AcquireLeader tries to take the leader key for name, attached to lease,
// in one txn guarded by create_revision(leader) == 0: it succeeds only when
// no one holds the key. When someone does, it returns the current holder
// and an error wrapping ErrLeaderExists. The lease's current deadline still
// applies: leadership is valid until Lease.Deadline, not beyond.
func (c *Client) AcquireLeader(ctx context.Context, name string, lease *Lease) (*LeaderKey, error) {
	k := c.key(KeyLeader)
	var resp *clientv3.TxnResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, name, clientv3.WithLease(lease.id))).
			Else(clientv3.OpGet(k)).
			Commit()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dcs: acquire leader: %w", classify(ctx, err))
	}
	if resp.Succeeded {
		rev := resp.Header.Revision
		c.log.Info("acquired leader key", "member", name, "lease", fmt.Sprintf("%x", lease.id))
		return &LeaderKey{Name: name, Lease: int64(lease.id), ModRevision: rev, CreateRevision: rev}, nil
	}
	h := holder(resp)
	if h.heldBy(name, lease) {
		// An attempt that a member carried out without answering in time.
		c.log.Info("acquired leader key", "member", name, "lease", fmt.Sprintf("%x", lease.id))
		return h, nil
	}
	return h, fmt.Errorf("dcs: acquire leader for %s: %w", name, ErrLeaderExists)
}

// holder returns the leader key from a txn's Else branch OpGet, if any.
func holder(resp *clientv3.TxnResponse) *LeaderKey {
	for _, r := range resp.Responses {
		if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
			kv := rr.Kvs[0]
			return &LeaderKey{Name: string(kv.Value), Lease: kv.Lease, ModRevision: kv.ModRevision, CreateRevision: kv.CreateRevision}
		}
	}
	return nil
}

// heldBy reports that the key holds name on lease.
func (k *LeaderKey) heldBy(name string, lease *Lease) bool {
	return k != nil && k.Name == name && k.Lease == int64(lease.id)
}

// TakeOverLeader moves a leader key that already holds name (left by this
// member's previous incarnation, under a lease it can no longer renew) to
// lease. It is guarded by value == name and mod_revision == modRevision (as
// read by the caller), so it fails with ErrLeaderExists if the key changed
// or vanished in between; on a vanished key the caller should
// AcquireLeader instead.
func (c *Client) TakeOverLeader(ctx context.Context, name string, lease *Lease, modRevision int64) (*LeaderKey, error) {
	k := c.key(KeyLeader)
	var resp *clientv3.TxnResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(k), "=", name),
				clientv3.Compare(clientv3.ModRevision(k), "=", modRevision)).
			Then(clientv3.OpPut(k, name, clientv3.WithLease(lease.id))).
			Else(clientv3.OpGet(k)).
			Commit()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dcs: take over leader key: %w", classify(ctx, err))
	}
	if !resp.Succeeded {
		if h := holder(resp); h.heldBy(name, lease) {
			return h, nil // an earlier attempt's
		}
		return holder(resp), fmt.Errorf("dcs: take over leader key for %s: %w", name, ErrLeaderExists)
	}
	rev := resp.Header.Revision
	c.log.Info("took over own leader key", "member", name, "lease", fmt.Sprintf("%x", lease.id))
	return &LeaderKey{Name: name, Lease: int64(lease.id), ModRevision: rev}, nil
}

// ReleaseLeader deletes the leader key if it still holds name, then
// revokes lease (which also removes anything else attached to it). The
// caller must have stopped writes first: releasing is a handover. It
// returns ErrNotLeader (after still revoking the lease) when the key was
// not ours.
func (c *Client) ReleaseLeader(ctx context.Context, name string, lease *Lease) error {
	k := c.key(KeyLeader)
	var resp *clientv3.TxnResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(k), "=", name)).
			Then(clientv3.OpDelete(k)).
			Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("dcs: release leader: %w", classify(ctx, err))
	}
	if lease != nil {
		if err := lease.Revoke(ctx); err != nil {
			return err
		}
	}
	if !resp.Succeeded {
		return fmt.Errorf("dcs: release leader for %s: %w", name, ErrNotLeader)
	}
	c.log.Info("released leader key", "member", name)
	return nil
}

// RegisterMember publishes m under members/<m.Name>, attached to lease (the
// member's own lease, renewed by the loop; when it expires the member
// vanishes from the cluster view).
func (c *Client) RegisterMember(ctx context.Context, m Member, lease *Lease) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("dcs: encode member: %w", err)
	}
	if err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Put(ctx, c.key(KeyMembers+m.Name), string(b), clientv3.WithLease(lease.id))
		return err
	}); err != nil {
		return fmt.Errorf("dcs: register member %s: %w", m.Name, classify(ctx, err))
	}
	return nil
}

// Initialize creates the initialize key with value, once: the member that
// creates it bootstraps the cluster. It returns ErrAlreadyInitialized, and
// the value already stored, otherwise. With a lease, the key is attached to
// it: a bootstrapper's "pending:<name>" claim lives on its leader lease,
// so that a bootstrapper that dies frees the claim when the lease expires
// (see docs/ha.md, "Bootstrap"). Without one the key is permanent.
func (c *Client) Initialize(ctx context.Context, value string, lease *Lease) (string, error) {
	k := c.key(KeyInitialize)
	var opts []clientv3.OpOption
	if lease != nil {
		opts = append(opts, clientv3.WithLease(lease.id))
	}
	var resp *clientv3.TxnResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
			Then(clientv3.OpPut(k, value, opts...)).
			Else(clientv3.OpGet(k)).
			Commit()
		return err
	})
	if err != nil {
		return "", fmt.Errorf("dcs: initialize: %w", classify(ctx, err))
	}
	if resp.Succeeded {
		return value, nil
	}
	cur := ""
	if h := holder(resp); h != nil {
		cur = h.Name
	}
	return cur, fmt.Errorf("dcs: initialize: %w", ErrAlreadyInitialized)
}

// SetInitialize replaces the initialize key's value (the winner of the
// initialize race stores the real system identifier after initdb),
// guarded by its mod revision. The new value is on no lease: the cluster's
// identity is permanent.
func (c *Client) SetInitialize(ctx context.Context, systemID string, modRevision int64) error {
	return c.cas(ctx, KeyInitialize, systemID, modRevision, "")
}

// SetConfig writes the dynamic configuration if the config key's mod
// revision is still modRevision (0: the key must not exist). It returns
// ErrConflict otherwise.
func (c *Client) SetConfig(ctx context.Context, cfg Config, modRevision int64) error {
	return c.casJSON(ctx, KeyConfig, cfg, modRevision, "")
}

// SetSync writes the sync key, guarded by its mod revision and by the
// leader key holding leader: only the leader may publish sync standbys.
// It returns ErrNotLeader or ErrConflict when a guard fails.
func (c *Client) SetSync(ctx context.Context, leader string, s Sync, modRevision int64) error {
	return c.casJSON(ctx, KeySync, s, modRevision, leader)
}

// SetSwitchover requests a switchover if the switchover key's mod revision
// is still modRevision (0: no switchover may be pending). It returns the
// request's revision, which identifies its outcome (SwitchoverResult).
func (c *Client) SetSwitchover(ctx context.Context, s Switchover, modRevision int64) (int64, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return 0, fmt.Errorf("dcs: encode %s: %w", KeySwitchover, err)
	}
	return c.casRev(ctx, KeySwitchover, string(b), modRevision, "")
}

// ClearSwitchover deletes the switchover key if its mod revision is still
// modRevision. A non-empty outcome (why the request was cancelled or
// aborted) is stored in the same txn as the switchover_result key, for the
// caller who asked for it; an empty one (done) leaves a result saying so.
func (c *Client) ClearSwitchover(ctx context.Context, modRevision int64, outcome string) error {
	b, err := json.Marshal(SwitchoverResult{Revision: modRevision, Aborted: outcome != "", Reason: outcome, Time: time.Now().UTC()})
	if err != nil {
		return fmt.Errorf("dcs: encode %s: %w", KeySwitchoverResult, err)
	}
	k := c.key(KeySwitchover)
	var resp *clientv3.TxnResponse
	err = c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).
			If(clientv3.Compare(clientv3.ModRevision(k), "=", modRevision)).
			Then(clientv3.OpDelete(k), clientv3.OpPut(c.key(KeySwitchoverResult), string(b))).
			Commit()
		return err
	})
	if err != nil {
		return fmt.Errorf("dcs: clear switchover: %w", classify(ctx, err))
	}
	if !resp.Succeeded {
		return fmt.Errorf("dcs: clear switchover: %w", ErrConflict)
	}
	return nil
}

// SetHistory writes the history key as leader (guarded like SetSync).
func (c *Client) SetHistory(ctx context.Context, leader string, h []HistoryEntry, modRevision int64) error {
	return c.casJSON(ctx, KeyHistory, h, modRevision, leader)
}

// SetStatus writes the status key if the leader key holds leader.
func (c *Client) SetStatus(ctx context.Context, leader string, s Status) error {
	return c.casJSON(ctx, KeyStatus, s, -1, leader)
}

func (c *Client) casJSON(ctx context.Context, key string, v any, modRevision int64, leader string) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("dcs: encode %s: %w", key, err)
	}
	return c.cas(ctx, key, string(b), modRevision, leader)
}

// cas puts value at key if its mod revision is modRevision (-1: any) and,
// when leader is set, the leader key holds leader.
func (c *Client) cas(ctx context.Context, key, value string, modRevision int64, leader string) error {
	_, err := c.casRev(ctx, key, value, modRevision, leader)
	return err
}

// casRev is cas returning the revision of the write.
func (c *Client) casRev(ctx context.Context, key, value string, modRevision int64, leader string) (int64, error) {
	k, lk := c.key(key), c.key(KeyLeader)
	var cmps []clientv3.Cmp
	if modRevision >= 0 {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", modRevision))
	}
	if leader != "" {
		cmps = append(cmps, clientv3.Compare(clientv3.Value(lk), "=", leader))
	}
	var resp *clientv3.TxnResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Txn(ctx).If(cmps...).
			Then(clientv3.OpPut(k, value)).
			Else(clientv3.OpGet(lk)).
			Commit()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("dcs: write %s: %w", key, classify(ctx, err))
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if leader != "" {
		if h := holder(resp); h == nil || h.Name != leader {
			return 0, fmt.Errorf("dcs: write %s: %w", key, ErrNotLeader)
		}
	}
	return 0, fmt.Errorf("dcs: write %s: %w", key, ErrConflict)
}
