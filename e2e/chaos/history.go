// Package chaos is pgherd's chaos soak: a write load through the VIP of an
// HA cluster in synchronous mode while a seeded nemesis injects faults on
// random lab hosts (see docs/chaos.md). This file and check.go are the
// checker: a Jepsen-style history of every write attempt, and what it
// proves about the cluster. The soak itself is chaos_test.go, run with
// PGHERD_E2E=1 (make test, make chaos).
package chaos

import (
	"encoding/json"
	"io"
	"slices"
	"sync"
	"time"
)

// Outcome is how a write attempt ended, as Jepsen names it.
type Outcome string

const (
	// OK: the server acknowledged the commit; the write must survive.
	OK Outcome = "ok"
	// Fail: the write certainly did not happen (no connection, or the
	// server refused the statement).
	Fail Outcome = "fail"
	// Info: unknown (a timeout, a lost connection, a FATAL error): the
	// write may or may not have committed.
	Info Outcome = "info"
)

// Op is one write attempt of one process: the VIP writer ("vip") or the
// direct probe of a host ("node1", …). Node is the host whose server
// acknowledged it (OK only).
type Op struct {
	Process  string    `json:"process"`
	ID       int64     `json:"id"`
	Invoke   time.Time `json:"invoke"`
	Complete time.Time `json:"complete"`
	Outcome  Outcome   `json:"outcome"`
	Node     string    `json:"node,omitempty"`
	Err      string    `json:"error,omitempty"`
}

// History records the ops of every process. Safe for concurrent use.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add records a completed op.
func (h *History) Add(op Op) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

// Ops returns a copy of the history so far.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Count is the number of ops of process (any, when empty) with outcome.
func (h *History) Count(process string, o Outcome) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, op := range h.ops {
		if (process == "" || op.Process == process) && op.Outcome == o {
			n++
		}
	}
	return n
}

// event is one line of the history file: an invocation or a completion.
type event struct {
	Time    time.Time `json:"time"`
	Process string    `json:"process"`
	Type    string    `json:"type"`
	ID      int64     `json:"id"`
	Node    string    `json:"node,omitempty"`
	Err     string    `json:"error,omitempty"`
}

// WriteJSONL writes ops as Jepsen-style events, one JSON object a line,
// in time order: {"type":"invoke"} then {"type":"ok"|"fail"|"info"}.
func WriteJSONL(w io.Writer, ops []Op) error {
	var evs []event
	for _, op := range ops {
		evs = append(evs,
			event{Time: op.Invoke, Process: op.Process, Type: "invoke", ID: op.ID},
			event{Time: op.Complete, Process: op.Process, Type: string(op.Outcome), ID: op.ID, Node: op.Node, Err: op.Err})
	}
	slices.SortStableFunc(evs, func(a, b event) int { return a.Time.Compare(b.Time) })
	enc := json.NewEncoder(w)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	return nil
}
