package chaos

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at is t0 plus ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func op(proc string, id int64, from, to int, o Outcome, node string) Op {
	return Op{Process: proc, ID: id, Invoke: at(from), Complete: at(to), Outcome: o, Node: node}
}

func TestCheck(t *testing.T) {
	// A clean failover: node1 is primary, stops answering, node2 takes
	// over. node1's last probe hangs across the failover and is
	// acknowledged late (it committed before): no split brain.
	clean := []Op{
		op("node1", 1, 0, 10, OK, "node1"),
		op("node1", 2, 200, 210, OK, "node1"),
		op("node1", 3, 400, 9000, OK, "node1"),
		op("node2", 4, 0, 5, Fail, ""),
		op("node2", 5, 5000, 5010, OK, "node2"),
		op("node2", 6, 5200, 5210, OK, "node2"),
		op("vip", 7, 100, 120, OK, "node1"),
		op("vip", 8, 130, 6000, Info, ""),
		op("vip", 9, 6000, 6020, OK, "node2"),
		op("vip", 10, 6030, 6040, Fail, ""),
	}
	all := map[int64]bool{1: true, 2: true, 3: true, 5: true, 6: true, 7: true, 9: true}

	cases := []struct {
		name      string
		ops       []Op
		present   map[int64]bool
		lost      int
		split     int
		failedIn  int
		passed    bool
		acked     int
		wantGapMs int
	}{
		{name: "clean failover", ops: clean, present: all, passed: true, acked: 2, wantGapMs: 5900},
		{name: "no primary at the end: unchecked", ops: clean, present: nil, acked: 2, wantGapMs: 5900},
		{name: "an acknowledged write lost", ops: clean, present: without(all, 9), lost: 1, acked: 2, wantGapMs: 5900},
		{name: "a failed write present", ops: clean, present: with(all, 10), failedIn: 1, acked: 2, wantGapMs: 5900},
		{name: "two probes' runs overlap", ops: []Op{
			op("node1", 1, 0, 10, OK, "node1"),
			op("node1", 2, 5100, 5110, OK, "node1"),
			op("node1", 3, 5300, 5310, OK, "node1"),
			op("node2", 5, 5000, 5010, OK, "node2"),
			op("node2", 6, 5200, 5210, OK, "node2"),
		}, present: all, split: 1, passed: false},
		{name: "a VIP write inside another host's run", ops: append(clean[:len(clean):len(clean)],
			op("node2", 13, 5400, 5410, OK, "node2"),
			op("vip", 14, 5250, 5260, OK, "node1"),
		), present: with(with(all, 13), 14), split: 1, acked: 3, wantGapMs: 5140},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := Check(c.ops, c.present)
			if len(r.Lost) != c.lost || len(r.SplitBrain) != c.split || len(r.FailedPresent) != c.failedIn || r.Passed() != c.passed || r.Acked != c.acked {
				t.Errorf("lost %v split %+v failed-present %v passed %v acked %d; want %d, %d, %d, %v, %d",
					r.Lost, r.SplitBrain, r.FailedPresent, r.Passed(), r.Acked, c.lost, c.split, c.failedIn, c.passed, c.acked)
			}
			if got := Quantile(r.Gaps, 1); got != time.Duration(c.wantGapMs)*time.Millisecond {
				t.Errorf("max gap %s, want %dms", got, c.wantGapMs)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0: 1, 0.5: 5, 0.99: 10, 1: 10} {
		if got := Quantile(d, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("Quantile of nothing is not 0")
	}
}

func with(m map[int64]bool, id int64) map[int64]bool {
	out := map[int64]bool{id: true}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func without(m map[int64]bool, id int64) map[int64]bool {
	out := with(m, id)
	delete(out, id)
	return out
}
