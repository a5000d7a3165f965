package dcs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Lease is an etcd lease renewed by its owner's loop, never by a background
// goroutine.
//
// The fencing invariant. etcd starts counting a lease's TTL down again when
// its leader receives a keepalive, which is after the client sent it. So if
// a keepalive sent at t_send (read on the client's monotonic clock) is
// acknowledged, the lease cannot expire on the server before
// t_send + ttl. Allowing for clock-rate drift between the hosts and for the
// time the caller needs to stop PostgreSQL's writes, the holder of a lease
// must have stopped acting on it by
//
//	deadline = t_send + ttl − safetyMargin
//
// which is what Renew returns. A keepalive that failed or was not
// acknowledged extends nothing: the deadline stays the one of the last
// acknowledged renewal. Because the deadline is a time.Time carrying a
// monotonic reading, a process frozen past it (VM stall, GC, I/O pause)
// sees on resume that the deadline passed, whatever the wall clock did.
// Only a renewal sent after the thaw moves it again.
type Lease struct {
	c      *Client
	id     clientv3.LeaseID
	ttl    time.Duration
	margin time.Duration
	now    func() time.Time

	mu       sync.Mutex
	deadline time.Time
}

// GrantLease grants a lease of ttl (whole seconds, at least 1 s) with the
// given safety margin, which must be smaller than ttl. The lease's first
// deadline counts from the moment the grant request was sent.
func (c *Client) GrantLease(ctx context.Context, ttl, safetyMargin time.Duration) (*Lease, error) {
	if ttl < time.Second || ttl%time.Second != 0 {
		return nil, fmt.Errorf("dcs: lease ttl %s is not a whole number of seconds >= 1s", ttl)
	}
	if safetyMargin < 0 || safetyMargin >= ttl {
		return nil, fmt.Errorf("dcs: safety margin %s must be in [0, ttl=%s)", safetyMargin, ttl)
	}
	l := &Lease{c: c, ttl: ttl, margin: safetyMargin, now: time.Now}
	tSend := l.now()
	var resp *clientv3.LeaseGrantResponse
	err := c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.Grant(ctx, int64(ttl/time.Second))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dcs: grant lease: %w", classify(ctx, err))
	}
	l.id = resp.ID
	l.deadline = l.deadlineFrom(tSend, resp.TTL)
	return l, nil
}

// ID is the lease's etcd id.
func (l *Lease) ID() int64 { return int64(l.id) }

// TTL is the lease's time to live.
func (l *Lease) TTL() time.Duration { return l.ttl }

// Deadline is the deadline of the last acknowledged renewal (or of the
// grant): the instant by which the holder must have stopped acting on the
// lease. It carries a monotonic clock reading.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Renew sends one keepalive and waits for its acknowledgement, for at most
// the client's request timeout. On success it returns the new deadline,
// t_send + ttl − safetyMargin, where t_send was read from the monotonic
// clock just before sending. On failure the deadline is unchanged and the
// error wraps ErrLeaseExpired (the lease is gone on the server: it can never
// be renewed again) or ErrNoQuorum (etcd did not answer in time).
func (l *Lease) Renew(ctx context.Context) (time.Time, error) {
	// t_send is before the first attempt: a renewal that a slow member
	// made late counts from the earlier instant, which is safe.
	tSend := l.now()
	var resp *clientv3.LeaseKeepAliveResponse
	err := l.c.call(ctx, func(ctx context.Context, cli *clientv3.Client) (err error) {
		resp, err = cli.KeepAliveOnce(ctx, l.id)
		return err
	})
	if err != nil {
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			return l.Deadline(), fmt.Errorf("dcs: renew lease %x: %w", l.id, ErrLeaseExpired)
		}
		return l.Deadline(), fmt.Errorf("dcs: renew lease %x: %w", l.id, classify(ctx, err))
	}
	d := l.deadlineFrom(tSend, resp.TTL)
	l.mu.Lock()
	defer l.mu.Unlock()
	if d.After(l.deadline) {
		l.deadline = d
	}
	return l.deadline, nil
}

// deadlineFrom is t_send + ttl − margin, with ttl the smaller of the asked
// and the granted TTL (the server may grant less).
func (l *Lease) deadlineFrom(tSend time.Time, grantedSeconds int64) time.Time {
	ttl := l.ttl
	if g := time.Duration(grantedSeconds) * time.Second; g > 0 && g < ttl {
		ttl = g
	}
	return tSend.Add(ttl - l.margin)
}

// Revoke revokes the lease, deleting every key attached to it at once. A
// lease already gone is not an error.
func (l *Lease) Revoke(ctx context.Context) error {
	err := l.c.call(ctx, func(ctx context.Context, cli *clientv3.Client) error {
		_, err := cli.Revoke(ctx, l.id)
		return err
	})
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("dcs: revoke lease %x: %w", l.id, classify(ctx, err))
	}
	l.mu.Lock()
	l.deadline = time.Time{}
	l.mu.Unlock()
	return nil
}

// AdoptLease takes over a lease granted to an earlier incarnation of this
// member (an agent that exited for an in-place upgrade and left its lease
// id behind): it renews the lease once, and the returned Lease's deadline
// counts from that renewal, as any other. It fails with ErrLeaseExpired when
// the lease is gone.
func (c *Client) AdoptLease(ctx context.Context, id int64, ttl, safetyMargin time.Duration) (*Lease, error) {
	if safetyMargin < 0 || safetyMargin >= ttl {
		return nil, fmt.Errorf("dcs: safety margin %s must be in [0, ttl=%s)", safetyMargin, ttl)
	}
	l := &Lease{c: c, id: clientv3.LeaseID(id), ttl: ttl, margin: safetyMargin, now: time.Now}
	if _, err := l.Renew(ctx); err != nil {
		return nil, err
	}
	return l, nil
}
