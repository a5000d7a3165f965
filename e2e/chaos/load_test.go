package chaos

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// process is one client of the history: it inserts one row per
// transaction into chaos_writes over its own connection, one op at a
// time, reconnecting after any error. The VIP writer goes through
// HAProxy; a probe connects to one host's PostgreSQL directly, so that
// every host that accepts a write as primary shows in the history.
type process struct {
	name    string
	dsn     string
	timeout time.Duration // of one op
	pause   time.Duration // between ops
	ids     *atomic.Int64
	hist    *History
	nodes   map[string]string // server address → host name
}

// run loops until ctx ends.
func (p *process) run(ctx context.Context) {
	var conn *pgx.Conn
	var notice atomic.Pointer[string]
	closeConn := func() {
		if conn != nil {
			closeCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			conn.Close(closeCtx)
			cancel()
			conn = nil
		}
	}
	defer closeConn()
	for ctx.Err() == nil {
		if conn == nil {
			cfg, err := pgx.ParseConfig(p.dsn)
			if err != nil {
				panic(err) // the test's own DSN
			}
			cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
				s := n.Severity + ": " + n.Message
				notice.Store(&s)
			}
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			conn, err = pgx.ConnectConfig(cctx, cfg)
			cancel()
			if err != nil {
				// Nothing was sent: no op.
				conn = nil
				sleep(ctx, 200*time.Millisecond)
				continue
			}
		}
		op := Op{Process: p.name, ID: p.ids.Add(1), Invoke: time.Now()}
		notice.Store(nil)
		qctx, cancel := context.WithTimeout(ctx, p.timeout)
		var addr string
		err := conn.QueryRow(qctx, "INSERT INTO chaos_writes (id, src) VALUES ($1, $2) RETURNING host(inet_server_addr())", op.ID, p.name).Scan(&addr)
		cancel()
		op.Complete = time.Now()
		if err == nil {
			op.Outcome, op.Node = OK, p.nodes[addr]
			if op.Node == "" {
				op.Node = addr
			}
			if n := notice.Load(); n != nil {
				op.Err = *n
			}
		} else {
			op.Outcome, op.Err = classify(err), firstLine(err.Error())
			closeConn()
		}
		if ctx.Err() != nil && op.Outcome != OK {
			// Cut short by the end of the run, not by the cluster.
			op.Outcome = Info
		}
		p.hist.Add(op)
		if err != nil {
			sleep(ctx, 100*time.Millisecond)
		} else {
			sleep(ctx, p.pause)
		}
	}
}

// classify tells a write that certainly did not happen from one whose
// outcome is unknown. An ERROR aborts the statement's transaction; a
// FATAL (an administrator's shutdown during the wait for the synchronous
// standby, say) may come after the local commit; a write whose request
// never left is certainly not done; anything else (a timeout, a lost
// connection) is unknown.
func classify(err error) Outcome {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if pe.Severity == "ERROR" {
			return Fail
		}
		return Info
	}
	if pgconn.SafeToRetry(err) {
		return Fail
	}
	return Info
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
