package dcs

import (
	"context"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaderEvent is a change of the leader key (or of another watched key).
type LeaderEvent struct {
	// Deleted is true when the key went away (released, or its lease
	// expired); Name is then the former holder when known.
	Deleted bool
	// Name is the key's value (for the leader key, the holder's name).
	Name     string
	Revision int64
}

// WatchLeader watches the leader key from store revision fromRevision
// (typically ClusterState.Revision+1, so that nothing between the read and
// the watch is missed; 0 means from now). The returned channel delivers
// every change. It is closed when ctx is done, when the watch fails (the
// revision was compacted, the etcd member lost its leader), or when the
// client is closed; a closed channel means "read again and re-watch", never
// "nothing changed". The watch's goroutine ends when the channel is closed.
//
// A watch only wakes the loop early: the loop still decides on its own
// linearizable Read, never on an event alone.
func (c *Client) WatchLeader(ctx context.Context, fromRevision int64) <-chan LeaderEvent {
	return c.watch(ctx, KeyLeader, fromRevision, false)
}

// WatchSwitchover watches the switchover request key as WatchLeader
// watches the leader key: the leader and the target of a switchover act
// on a request at once, not at their next loop_wait.
func (c *Client) WatchSwitchover(ctx context.Context, fromRevision int64) <-chan LeaderEvent {
	return c.watch(ctx, KeySwitchover, fromRevision, false)
}

// WatchNewMembers watches the member keys as WatchLeader watches the
// leader key, and delivers only their creation (a member's agent
// registering, or registering again after its lease expired), with Name
// the member's name: the leader creates a new member's replication slot,
// which the member's clone goes through, at once rather than at its next
// loop_wait. Members rewrite their keys every pass: those rewrites are
// not delivered.
func (c *Client) WatchNewMembers(ctx context.Context, fromRevision int64) <-chan LeaderEvent {
	return c.watch(ctx, KeyMembers, fromRevision, true)
}

// watch watches key, or with created every key under the prefix key and
// only their creation.
func (c *Client) watch(ctx context.Context, key string, fromRevision int64, created bool) <-chan LeaderEvent {
	out := make(chan LeaderEvent, 1)
	var opts []clientv3.OpOption
	if fromRevision > 0 {
		opts = append(opts, clientv3.WithRev(fromRevision))
	}
	if created {
		opts = append(opts, clientv3.WithPrefix())
	} else {
		opts = append(opts, clientv3.WithPrevKV()) // a deleted key's holder
	}
	go func() {
		defer close(out)
		// Watch itself blocks until the watch is registered on a
		// connection, so it runs here, not in the caller's goroutine.
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		defer cancel()
		wch := c.current().Watch(wctx, c.key(key), opts...)
		for {
			var resp clientv3.WatchResponse
			var ok bool
			select {
			case <-ctx.Done():
				return
			case resp, ok = <-wch:
			}
			if !ok || resp.Err() != nil || resp.Canceled {
				return
			}
			for _, ev := range resp.Events {
				le := LeaderEvent{Revision: ev.Kv.ModRevision}
				switch {
				case created && !ev.IsCreate():
					continue
				case created:
					le.Name = strings.TrimPrefix(string(ev.Kv.Key), c.key(key))
				case ev.Type == clientv3.EventTypeDelete:
					le.Deleted = true
					if ev.PrevKv != nil {
						le.Name = string(ev.PrevKv.Value)
					}
				default:
					le.Name = string(ev.Kv.Value)
				}
				select {
				case out <- le:
				case <-ctx.Done():
					return
				}
			}
		}
	}()
	return out
}
