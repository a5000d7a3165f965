// Package dcs is the HA agent's distributed configuration store: the
// cluster's keys in etcd v3 under /pgherd/<cluster>/.
//
//	leader          member name, attached to the leader's lease; created
//	                only by a txn guarded by create_revision == 0
//	members/<name>  JSON Member, attached to the member's own lease so that
//	                dead members vanish
//	config          JSON Config (dynamic configuration)
//	sync            JSON Sync {leader, standbys}
//	switchover      JSON Switchover {from, to, scheduled_at}
//	switchover_result JSON SwitchoverResult: how the last request ended
//	initialize      the system identifier, created once ("pending:<name>",
//	                on the bootstrapper's leader lease, while it runs initdb)
//	history         JSON []HistoryEntry
//	status          JSON Status
//
// The package reads like etcd's own client/v3/concurrency: small types,
// ctx first, sentinel errors. It differs on one point on purpose: a Lease is
// never kept alive by a background goroutine. The caller's loop renews it
// with Lease.Renew, so the caller knows when each renewal was sent and
// therefore until when it may act as leader (see Lease.Renew).
//
// Every decision-grade read is linearizable (etcd's default); this package
// never uses clientv3.WithSerializable, because a serializable read may be
// served by a stale member that has lost quorum.
package dcs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors, tested with errors.Is. Errors from etcd are wrapped
// together with the sentinel that classifies them.
var (
	// ErrNotLeader: a leader-only write was refused because the leader key
	// does not hold this member's name (and lease).
	ErrNotLeader = errors.New("dcs: not the leader")
	// ErrLeaderExists: the leader key is held by another member (or by
	// this member under another lease).
	ErrLeaderExists = errors.New("dcs: leader key already held")
	// ErrLeaseExpired: the lease no longer exists on the server.
	ErrLeaseExpired = errors.New("dcs: lease expired")
	// ErrNoQuorum: etcd could not be reached or could not answer a
	// linearizable request before the request's deadline.
	ErrNoQuorum = errors.New("dcs: etcd unreachable or without quorum")
	// ErrConflict: a compare-and-swap lost because the key changed since
	// it was read.
	ErrConflict = errors.New("dcs: key changed since it was read")
	// ErrAlreadyInitialized: the initialize key exists already.
	ErrAlreadyInitialized = errors.New("dcs: cluster already initialized")
)

// Options configure a Client.
type Options struct {
	// Endpoints are the etcd client URLs; the client fails over between
	// them.
	Endpoints []string
	// Cluster names the cluster; keys live under /pgherd/<Cluster>/.
	Cluster string
	// DialTimeout bounds establishing the first connection (default 2 s).
	DialTimeout time.Duration
	// RequestTimeout bounds every request the Client makes, whatever the
	// caller's ctx allows (default 2 s). A stuck request never blocks the
	// caller's loop past it.
	RequestTimeout time.Duration
	// TLS, when set, is used for client connections (https endpoints).
	TLS *tls.Config
	// Username and Password enable etcd authentication when Username is
	// set.
	Username string
	Password string
	// Logger receives the package's own log lines (default: discard).
	Logger *slog.Logger
}

// Client is a connection to etcd bound to one cluster's key prefix. It is
// safe for concurrent use. It starts the etcd client's own goroutines,
// which end at Close.
//
// It holds one etcd client per member and sends each request to one
// member at a time (see call), rather than letting the etcd client
// balance requests across members: a frozen member's connection stays
// open (its kernel still acknowledges), gRPC's keepalive cannot notice
// it in less than 10 s, and a third of the balanced requests would wait
// for it until they time out, for as long as the freeze lasts, costing
// the new primary its lease.
type Client struct {
	clis       []*clientv3.Client
	endpoints  []string
	first      atomic.Int32 // index of the member tried first
	prefix     string
	reqTimeout time.Duration
	attempt    time.Duration
	log        *slog.Logger
}

// minAttempt is the shortest time a member is given to answer before the
// request goes to the next one: more than an etcd leader election takes
// with pgherd's timings (election timeout 500 ms).
const minAttempt = 600 * time.Millisecond

// New connects to etcd. It does not block until a connection is made: the
// first request reports an unreachable cluster (as ErrNoQuorum).
func New(ctx context.Context, o Options) (*Client, error) {
	if len(o.Endpoints) == 0 {
		return nil, errors.New("dcs: no etcd endpoints")
	}
	if o.Cluster == "" || strings.Contains(o.Cluster, "/") {
		return nil, fmt.Errorf("dcs: invalid cluster name %q", o.Cluster)
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		endpoints:  o.Endpoints,
		prefix:     "/pgherd/" + o.Cluster + "/",
		reqTimeout: o.RequestTimeout,
		attempt:    max(o.RequestTimeout/time.Duration(len(o.Endpoints)), minAttempt),
		log:        o.Logger.With("cluster", o.Cluster),
	}
	for _, ep := range o.Endpoints {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{ep},
			DialTimeout: o.DialTimeout,
			// Detect a dead connection as soon as gRPC allows (10 s).
			DialKeepAliveTime:    o.RequestTimeout,
			DialKeepAliveTimeout: o.RequestTimeout,
			TLS:                  o.TLS,
			Username:             o.Username,
			Password:             o.Password,
			Context:              ctx,
			Logger:               zap.NewNop(),
		})
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("dcs: connect to %s: %w", ep, classify(ctx, err))
		}
		c.clis = append(c.clis, cli)
	}
	return c, nil
}

// call runs op, bounded by the request timeout, on one member after
// another, starting with the one that last answered, until one answers:
// every member but the last is given the attempt time, the last what is
// left. An answer is anything but a timeout or an unavailable member
// (ErrNoQuorum's cases): a failed compare or a missing lease is an
// answer. A member that did not answer is tried last by the next call.
//
// A request abandoned on a member that does not answer may still be
// carried out later (a frozen member reads it when it thaws): the
// operations are written so that this is harmless (a lease renewed later
// only lives longer than its holder counts on; a txn repeated finds its
// own earlier write).
func (c *Client) call(ctx context.Context, op func(ctx context.Context, cli *clientv3.Client) error) error {
	rctx, cancel := c.reqCtx(ctx)
	defer cancel()
	n := len(c.clis)
	first := int(c.first.Load())
	var err error
	for i := range n {
		k := (first + i) % n
		actx, acancel := rctx, context.CancelFunc(func() {})
		if i < n-1 {
			actx, acancel = context.WithTimeout(rctx, c.attempt)
		}
		err = op(actx, c.clis[k])
		acancel()
		if err == nil || rctx.Err() != nil || !errors.Is(classify(rctx, err), ErrNoQuorum) {
			return err
		}
		next := (k + 1) % n
		if c.first.CompareAndSwap(int32(k), int32(next)) && n > 1 {
			c.log.Warn("etcd member did not answer: trying the next one", "endpoint", c.endpoints[k], "next", c.endpoints[next], "err", err)
		}
	}
	return err
}

// current is the member's client requests go to first.
func (c *Client) current() *clientv3.Client { return c.clis[int(c.first.Load())%len(c.clis)] }

// Close closes the connection and ends the etcd client's goroutines.
func (c *Client) Close() error {
	var errs []error
	for _, cli := range c.clis {
		errs = append(errs, cli.Close())
	}
	return errors.Join(errs...)
}

// Prefix is the cluster's key prefix, "/pgherd/<cluster>/".
func (c *Client) Prefix() string { return c.prefix }

// Key names for the cluster's keys, relative to Prefix.
const (
	KeyLeader     = "leader"
	KeyMembers    = "members/"
	KeyConfig     = "config"
	KeySync       = "sync"
	KeySwitchover = "switchover"
	// KeySwitchoverResult is not under KeySwitchover's name as a prefix
	// of a directory: Read tells the keys apart by their full name.
	KeySwitchoverResult = "switchover_result"
	KeyInitialize       = "initialize"
	KeyHistory          = "history"
	KeyStatus           = "status"
)

func (c *Client) key(k string) string { return c.prefix + k }

// reqCtx bounds a request by the client's request timeout.
func (c *Client) reqCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.reqTimeout)
}

// classify wraps an etcd error with ErrNoQuorum when the cluster could not
// answer in time. The caller's own cancellation is returned as is.
func classify(parent context.Context, err error) error {
	if err == nil {
		return nil
	}
	if perr := parent.Err(); perr != nil {
		return fmt.Errorf("%w (%w)", perr, err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	for _, e := range []error{rpctypes.ErrNoLeader, rpctypes.ErrNotCapable, rpctypes.ErrStopped,
		rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrTimeoutDueToConnectionLost,
		rpctypes.ErrTimeoutWaitAppliedIndex, rpctypes.ErrLeaderChanged, rpctypes.ErrUnhealthy} {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrNoQuorum, err)
		}
	}
	// The server's own deadline, relayed as an unknown gRPC error.
	if msg := err.Error(); strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "no leader") || strings.Contains(msg, "timed out") {
		return fmt.Errorf("%w: %w", ErrNoQuorum, err)
	}
	return err
}
