package day2

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A minimal continuous writer, shared by the tests and the day2 bench
// suite. (Another change moves e2e's writer into a shared package,
// e2e/workload; this one goes there once that is on main.)

// Ack is one write the cluster acknowledged.
type Ack struct {
	id int64
	at time.Time
}

// Writer inserts one row per transaction into day2_writes through dsn
// (the VIP's primary port), reconnecting on any error, and records every
// acknowledged id. Its goroutine exits when the context given to
// StartWriter ends; Done is closed then.
type Writer struct {
	dsn  string
	mu   sync.Mutex
	acks []Ack
	errs int
	Done chan struct{}
}

// StartWriter creates the table (connecting for up to a minute) and starts
// writing.
func StartWriter(ctx context.Context, dsn string) (*Writer, error) {
	setup, err := connectRetry(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer setup.Close(context.Background())
	if _, err := setup.Exec(ctx, "CREATE TABLE IF NOT EXISTS day2_writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return nil, fmt.Errorf("create table: %w", err)
	}
	var next int64
	if err := setup.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM day2_writes").Scan(&next); err != nil {
		return nil, fmt.Errorf("max id: %w", err)
	}
	w := &Writer{dsn: dsn, Done: make(chan struct{})}
	go w.run(ctx, next)
	return w, nil
}

// connectRetry connects to dsn, retrying for a minute.
func connectRetry(ctx context.Context, dsn string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (w *Writer) run(ctx context.Context, id int64) {
	defer close(w.Done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := pgx.Connect(cctx, w.dsn)
			cancel()
			if err != nil {
				w.fail(ctx)
				continue
			}
			conn = c
		}
		// Every attempt takes a new id: a write whose answer was lost may
		// have committed, and is then simply not counted.
		id++
		qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := conn.Exec(qctx, "INSERT INTO day2_writes (id) VALUES ($1)", id)
		cancel()
		if err != nil {
			conn.Close(context.Background())
			conn = nil
			w.fail(ctx)
			continue
		}
		w.mu.Lock()
		w.acks = append(w.acks, Ack{id: id, at: time.Now()})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (w *Writer) fail(ctx context.Context) {
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}

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
		gap = max(gap, w.acks[i].at.Sub(w.acks[i-1].at))
	}
	return gap
}

// WaitAcks waits until n more writes are acknowledged after mark, for up
// to a minute.
func (w *Writer) WaitAcks(ctx context.Context, mark, n int) error {
	deadline := time.Now().Add(time.Minute)
	for w.Mark() < mark+n {
		if time.Now().After(deadline) {
			return fmt.Errorf("the writer got %d acknowledgements in a minute, want %d", w.Mark()-mark, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// Missing returns the acknowledged writes absent from the primary.
func (w *Writer) Missing(ctx context.Context, acks []Ack) ([]int64, error) {
	conn, err := connectRetry(ctx, w.dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM day2_writes")
	if err != nil {
		return nil, fmt.Errorf("reading the writes: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("reading the writes: %w", err)
	}
	present := map[int64]bool{}
	for _, id := range ids {
		present[id] = true
	}
	var out []int64
	for _, a := range acks {
		if !present[a.id] {
			out = append(out, a.id)
		}
	}
	return out, nil
}
