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
type Client struct {
	cli        *clientv3.Client
	prefix     string
	reqTimeout time.Duration
	log        *slog.Logger
}

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
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   o.Endpoints,
		DialTimeout: o.DialTimeout,
		// Detect a dead connection within about a request timeout.
		DialKeepAliveTime:    o.RequestTimeout,
		DialKeepAliveTimeout: o.RequestTimeout,
		TLS:                  o.TLS,
		Username:             o.Username,
		Password:             o.Password,
		Context:              ctx,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("dcs: connect to %v: %w", o.Endpoints, classify(ctx, err))
	}
	return &Client{
		cli:        cli,
		prefix:     "/pgherd/" + o.Cluster + "/",
		reqTimeout: o.RequestTimeout,
		log:        o.Logger.With("cluster", o.Cluster),
	}, nil
}

// Close closes the connection and ends the etcd client's goroutines.
func (c *Client) Close() error { return c.cli.Close() }

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
