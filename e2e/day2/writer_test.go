package day2

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A minimal continuous writer. (Another change moves e2e's writer into a
// shared package, e2e/workload; this one goes once that is on main.)

// ack is one write the cluster acknowledged.
type ack struct {
	id int64
	at time.Time
}

// writer inserts one row per transaction through the VIP's primary port,
// reconnecting on any error, and records every acknowledged id. Its
// goroutine exits when the context given to startWriter ends; done is
// closed then.
type writer struct {
	mu   sync.Mutex
	acks []ack
	errs int
	done chan struct{}
}

func startWriter(ctx context.Context, t *testing.T) *writer {
	t.Helper()
	setup := connect(ctx, t)
	defer setup.Close(context.Background())
	if _, err := setup.Exec(ctx, "CREATE TABLE IF NOT EXISTS day2_writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	var next int64
	if err := setup.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM day2_writes").Scan(&next); err != nil {
		t.Fatalf("max id: %v", err)
	}
	w := &writer{done: make(chan struct{})}
	go w.run(ctx, next)
	return w
}

func (w *writer) run(ctx context.Context, id int64) {
	defer close(w.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			c, err := pgx.Connect(cctx, pgURL())
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
		w.acks = append(w.acks, ack{id: id, at: time.Now()})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (w *writer) fail(ctx context.Context) {
	w.mu.Lock()
	w.errs++
	w.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-time.After(50 * time.Millisecond):
	}
}

// mark is the number of acknowledged writes so far.
func (w *writer) mark() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acks)
}

// since returns the acknowledged writes from mark on.
func (w *writer) since(mark int) []ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.acks[mark:])
}

// maxGap is the longest time between two consecutive acknowledged writes
// from the one before mark (if any) on.
func (w *writer) maxGap(mark int) time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var gap time.Duration
	for i := max(mark, 1); i < len(w.acks); i++ {
		gap = max(gap, w.acks[i].at.Sub(w.acks[i-1].at))
	}
	return gap
}

// waitAcks waits until n more writes are acknowledged after mark.
func (w *writer) waitAcks(t *testing.T, mark, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for w.mark() < mark+n {
		if time.Now().After(deadline) {
			t.Fatalf("the writer got %d acknowledgements in a minute, want %d", w.mark()-mark, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// missing returns the acknowledged ids absent from the primary.
func missing(ctx context.Context, t *testing.T, acks []ack) []int64 {
	t.Helper()
	conn := connect(ctx, t)
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT id FROM day2_writes")
	if err != nil {
		t.Fatalf("reading the writes: %v", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatalf("reading the writes: %v", err)
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
	return out
}
