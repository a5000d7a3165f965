package dcs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrOtherSystem: Reset was asked to keep a system identifier other than
// the one the initialize key holds (the data is another cluster's), or
// the key holds a bootstrapper's pending claim.
var ErrOtherSystem = errors.New("dcs: the initialize key names another system")

// Reset clears the cluster's state for a cluster restored from a backup
// of itself, whose members' agents are all stopped: every key under the
// prefix goes (leader, members, config, sync, switchover, history,
// status) except the initialize key, which must hold systemID (the
// restored data's system identifier, the cluster's own) or is written
// with it when absent. The agents then find the cluster initialized, so
// that no member with an empty data directory bootstraps a new one, and
// no stale history, member or leader key: the restored member, a former
// primary shut down cleanly on a new timeline, takes the leader key and
// starts as primary, and the others clone from it.
//
// It is one transaction, guarded by the initialize key's value (or
// absence): a key holding anything else is ErrOtherSystem, and nothing is
// deleted. It returns how many keys it deleted.
func (c *Client) Reset(ctx context.Context, systemID string) (int64, error) {
	if systemID == "" || strings.HasPrefix(systemID, "pending:") {
		return 0, fmt.Errorf("dcs: reset: invalid system identifier %q", systemID)
	}
	init := c.key(KeyInitialize)
	// Everything under the prefix but the initialize key: a delete and a
	// put of one key cannot share a transaction.
	clear := []clientv3.Op{
		clientv3.OpDelete(c.prefix, clientv3.WithRange(init)),
		clientv3.OpDelete(init+"\x00", clientv3.WithRange(clientv3.GetPrefixRangeEnd(c.prefix))),
	}
	for _, guard := range []struct {
		cmp  clientv3.Cmp
		then []clientv3.Op
	}{
		{clientv3.Compare(clientv3.Value(init), "=", systemID), clear},
		{clientv3.Compare(clientv3.CreateRevision(init), "=", 0), append(clear, clientv3.OpPut(init, systemID))},
	} {
		var resp *clientv3.TxnResponse
		err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
			resp, err = cli.Txn(ctx).If(guard.cmp).Then(guard.then...).Else(clientv3.OpGet(init)).Commit()
			return err
		})
		if err != nil {
			return 0, fmt.Errorf("dcs: reset: %w", classify(ctx, err))
		}
		if resp.Succeeded {
			var n int64
			for _, r := range resp.Responses {
				if d := r.GetResponseDeleteRange(); d != nil {
					n += d.Deleted
				}
			}
			c.log.Info("cluster state reset", "system_id", systemID, "deleted", n)
			return n, nil
		}
		if h := holder(resp); h != nil && h.Name != systemID {
			return 0, fmt.Errorf("dcs: reset: the initialize key holds %q, not %s: %w", h.Name, systemID, ErrOtherSystem)
		}
		// The key went (or came) between the two guards: try the other.
	}
	return 0, fmt.Errorf("dcs: reset: the initialize key kept changing: %w", ErrConflict)
}
