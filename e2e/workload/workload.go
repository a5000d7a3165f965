// Package workload is the write load that HA scenarios run through a
// cluster's primary port (HAProxy behind the VIP): one row per
// transaction, every acknowledged write recorded, so that a scenario can
// measure the write gap a client saw and count the acknowledged writes a
// new primary lost. The e2e tests and the ha bench suite share it.
package workload

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Ack is one write the cluster acknowledged.
type Ack struct {
	ID int64
	// Sent is when the write was sent, At when its acknowledgement was
	// received: a write sent before a primary froze may be acknowledged
	// by it, and received, after the freeze began.
	Sent, At time.Time
	// Server is the address of the PostgreSQL server that acknowledged
	// it (inet_server_addr): who took a write that went missing tells a
	// lost asynchronous tail from a second primary.
	Server string
}

// String describes the write for a report of lost writes.
func (a Ack) String() string {
	return fmt.Sprintf("id %d sent %s acknowledged %s by %s", a.ID, a.Sent.Format("15:04:05.000"), a.At.Format("15:04:05.000"), a.Server)
}

// Writer inserts one row per transaction into its table through url,
// reconnecting on any error, and records every acknowledged id. Its
// goroutine exits when the context given to Start ends; Done is closed
// then.
type Writer struct {
	url, table string

	mu     sync.Mutex
	acks   []Ack
	errs   int
	lastEr string
	// firstErrs are the first failed attempts, each with its time: what
	// a test reports when a client was not to see any.
	firstErrs []string
	done      chan struct{}
}

// Start creates table (id bigint primary key) if needed through url (for
// at most a minute) and starts writing ids above the largest one present,
// until ctx ends.
func Start(ctx context.Context, url, table string) (*Writer, error) {
	if table == "" {
		return nil, errors.New("workload: no table")
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ctx, run := sctx, ctx
	setup, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer setup.Close(context.Background())
	tbl := pgx.Identifier{table}.Sanitize()
	if _, err := setup.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+tbl+" (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return nil, fmt.Errorf("workload: create table %s: %w", table, err)
	}
	var next int64
	if err := setup.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM "+tbl).Scan(&next); err != nil {
		return nil, fmt.Errorf("workload: largest id of %s: %w", table, err)
	}
	w := &Writer{url: url, table: tbl, done: make(chan struct{})}
	go w.run(run, next)
	return w, nil
}

// connect connects to url, retrying every half second until ctx ends.
func connect(ctx context.Context, url string) (*pgx.Conn, error) {
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		conn, err := pgx.Connect(cctx, url)
		cancel()
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("workload: connect: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *Writer) run(ctx context.Context, id int64) {
	defer close(w.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	fail := func(err error) {
		if ctx.Err() != nil {
			// The writer is being stopped: the attempt it cut short is
			// no failure of the cluster's.
			return
		}
		w.mu.Lock()
		w.errs++
		w.lastEr = err.Error()
		if len(w.firstErrs) < maxFirstErrors {
			w.firstErrs = append(w.firstErrs, time.Now().Format("15:04:05.000")+" "+w.lastEr)
		}
		w.mu.Unlock()
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	insert := "INSERT INTO " + w.table + " (id) VALUES ($1) RETURNING coalesce(host(inet_server_addr()), '')"
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := pgx.Connect(cctx, w.url)
			cancel()
			if err != nil {
				fail(err)
				continue
			}
			conn = c
		}
		// Every attempt takes a new id: a write whose answer was lost
		// may have committed, and is then simply not counted.
		id++
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var server string
		err := conn.QueryRow(qctx, insert, id).Scan(&server)
		cancel()
		if err != nil {
			fail(err)
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, Ack{ID: id, Sent: sent, At: time.Now(), Server: server})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Done is closed when the writer has stopped.
func (w *Writer) Done() <-chan struct{} { return w.done }

// Mark is the number of acknowledged writes so far.
func (w *Writer) Mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// Since returns the acknowledged writes from mark on.
func (w *Writer) Since(mark int) []Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks[mark:])
}

// MaxGap is the longest time between two consecutive acknowledged writes
// from the one before mark (if any) on.
func (w *Writer) MaxGap(mark int) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	for i := max(mark, 1); i < len(w.acks); i++ {
		gap = max(gap, w.acks[i].At.Sub(w.acks[i-1].At))
	}
	return gap
}

// WaitAcks waits until n more writes are acknowledged after mark, or
// fails with the last write error when ctx ends first.
func (w *Writer) WaitAcks(ctx context.Context, mark, n int) error {
	for w.Mark() < mark+n {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %d writes acknowledged after mark %d: last error %s", n, mark, w.LastError())
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// Errors is the number of failed attempts so far.
func (w *Writer) Errors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs
}

// LastError is the last failed attempt's error.
func (w *Writer) LastError() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastEr
}

// maxFirstErrors is how many of the first failed attempts a Writer keeps.
const maxFirstErrors = 5

// FirstErrors are the first failed attempts (five at most), each as its
// time and error.
func (w *Writer) FirstErrors() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.firstErrs)
}

// WaitError waits until an attempt fails after the count before: the
// writer has felt the fault.
func (w *Writer) WaitError(ctx context.Context, before int) error {
	for w.Errors() <= before {
		select {
		case <-ctx.Done():
			return errors.New("no write failed after the fault")
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Missing returns the ids of acks absent from the writer's table on the
// primary behind its url, once a connection through url reaches a server
// at primaryAddr that is not in recovery (retrying until ctx ends).
func (w *Writer) Missing(ctx context.Context, primaryAddr string, acks []Ack) ([]int64, error) {
	return w.MissingVia(ctx, w.url, primaryAddr, acks)
}

// MissingVia is Missing reading through url instead of the writer's own
// (a writer on a server's own address checked through the VIP once that
// server is a cluster's primary); primaryAddr "" accepts any server that
// is not in recovery.
func (w *Writer) MissingVia(ctx context.Context, url, primaryAddr string, acks []Ack) ([]int64, error) {
	for {
		missing, err := w.missing(ctx, url, primaryAddr, acks)
		if err == nil {
			return missing, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reading the writes on %s: %w (last error: %v)", primaryAddr, ctx.Err(), err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *Writer) missing(ctx context.Context, url, primaryAddr string, acks []Ack) ([]int64, error) {
	conn, err := connect(ctx, url)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	var addr string
	var rec bool
	if err := conn.QueryRow(ctx, "SELECT host(inet_server_addr()), pg_is_in_recovery()").Scan(&addr, &rec); err != nil {
		return nil, err
	}
	switch {
	case rec:
		return nil, fmt.Errorf("reached %s, which is in recovery", addr)
	case primaryAddr != "" && addr != primaryAddr:
		return nil, fmt.Errorf("reached %s, not the primary %s", addr, primaryAddr)
	}
	rows, err := conn.Query(ctx, "SELECT id FROM "+w.table)
	if err != nil {
		return nil, err
	}
	present := map[int64]bool{}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	var missing []int64
	for _, a := range acks {
		if !present[a.ID] {
			missing = append(missing, a.ID)
		}
	}
	return missing, nil
}
