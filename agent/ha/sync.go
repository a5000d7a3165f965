package ha

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/agent/dcs"
)

// syncActions returns the next step that brings synchronous_standby_names
// (P, in effect in PostgreSQL) and the sync key (K, in etcd) to the desired
// set D, one step per pass, ordered so that a member named in K always
// holds every acknowledged commit:
//
// FIRST n mode (P = FIRST |P| (…): every listed standby confirms each
// commit) keeps K ⊆ P:
//  1. shrink K first (K := K ∩ P ∩ D),
//  2. then set P := D,
//  3. then grow K with the members of D that PostgreSQL reports as
//     synchronous (caught up), never before.
//
// ANY k mode (quorum: each commit is on k of the n listed) keeps P ⊆ K and
// k_K ≤ k_P, so that any n−k+1 visible members of K include one holding
// every acknowledged commit:
//  1. grow K first (K := K ∪ D, k := min),
//  2. then set P := ANY k_D (D),
//  3. then shrink K to D.
//
// When no standby qualifies, strict mode sets P to "*" (commits block until
// any standby confirms) and "on" mode to "" (asynchronous); K is emptied
// first in both, so no member can be promoted automatically.
func syncActions(v View) []Action {
	st := v.DCS
	var K []string
	kq := 0
	rev := st.SyncRevision
	if st.Sync != nil {
		K, kq = st.Sync.Standbys, st.Sync.Quorum
	}
	P, kp, _ := parseSSN(v.Self.SyncStandbyNames)
	publish := func(names []string, q int) []Action {
		return []Action{{Kind: PublishSync, Standbys: sorted(names), Quorum: q, Revision: rev}}
	}
	setP := func(s string) []Action { return []Action{{Kind: SetSyncStandbyNames, Value: s}} }

	mode := v.Config.SynchronousMode
	if mode != dcs.SyncOn && mode != dcs.SyncStrict {
		switch {
		case len(K) > 0:
			return publish(nil, 0)
		case v.Self.SyncStandbyNames != "":
			return setP("")
		}
		return nil
	}

	n := max(v.Config.SynchronousNodeCount, 1)
	var cands []Standby
	for _, s := range v.Self.Streaming {
		if s.Streaming && !s.NoSync && hasMember(st, s.Name) {
			cands = append(cands, s)
		}
	}
	// Prefer the current synchronous standbys (no churn), then the most
	// advanced, then by name.
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		ai, bi := slices.Contains(P, a.Name), slices.Contains(P, b.Name)
		if ai != bi {
			return ai
		}
		if a.FlushLSN != b.FlushLSN {
			return a.FlushLSN > b.FlushLSN
		}
		return a.Name < b.Name
	})
	var D []string
	for _, c := range cands {
		D = append(D, c.Name)
	}
	quorum := v.Config.SynchronousQuorum
	if !quorum && len(D) > n {
		D = D[:n]
	}
	kd := 0
	if quorum {
		kd = min(n, len(D))
	}
	want := renderSSN(D, kd, mode == dcs.SyncStrict)

	if len(D) == 0 {
		switch {
		case len(K) > 0:
			return publish(nil, 0)
		case v.Self.SyncStandbyNames != want:
			return setP(want)
		}
		return nil
	}

	if !quorum {
		if keep := intersect(intersect(K, P), D); len(keep) != len(K) || kq != 0 {
			return publish(keep, 0)
		}
		if v.Self.SyncStandbyNames != want {
			return setP(want)
		}
		grown := slices.Clone(K)
		for _, s := range cands {
			if s.Sync && slices.Contains(D, s.Name) && !slices.Contains(K, s.Name) {
				grown = append(grown, s.Name)
			}
		}
		if len(grown) != len(K) {
			return publish(grown, 0)
		}
		return nil
	}

	union := union(union(K, P), D)
	uq := kd
	if kq > 0 {
		uq = min(uq, kq)
	}
	if kp > 0 {
		uq = min(uq, kp)
	}
	if v.Self.SyncStandbyNames != want {
		if len(union) != len(K) || kq != uq {
			return publish(union, uq)
		}
		return setP(want)
	}
	if !sameSet(K, D) || kq != kd {
		return publish(D, kd)
	}
	return nil
}

// renderSSN renders synchronous_standby_names: FIRST n (…) when quorum is
// 0, ANY quorum (…) otherwise; "*" (strict) or "" when names is empty.
func renderSSN(names []string, quorum int, strict bool) string {
	if len(names) == 0 {
		if strict {
			return "*"
		}
		return ""
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	if quorum > 0 {
		return fmt.Sprintf("ANY %d (%s)", quorum, strings.Join(q, ","))
	}
	return fmt.Sprintf("FIRST %d (%s)", len(names), strings.Join(q, ","))
}

// parseSSN parses what renderSSN produces (and the plain "a,b" and "n (a,b)"
// forms): the names, the ANY quorum (0 for FIRST), and whether it is "*".
func parseSSN(s string) (names []string, quorum int, star bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, 0, false
	}
	if s == "*" {
		return nil, 0, true
	}
	body := s
	if i := strings.IndexByte(s, '('); i >= 0 && strings.HasSuffix(s, ")") {
		head := strings.Fields(s[:i])
		body = s[i+1 : len(s)-1]
		if len(head) == 2 && strings.EqualFold(head[0], "ANY") {
			quorum, _ = strconv.Atoi(head[1])
		}
	}
	for _, p := range strings.Split(body, ",") {
		p = strings.TrimSpace(p)
		if u, err := strconv.Unquote(p); err == nil {
			p = u
		}
		if p == "*" {
			star = true
			continue
		}
		if p != "" {
			names = append(names, p)
		}
	}
	return names, quorum, star
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func union(a, b []string) []string {
	out := slices.Clone(a)
	for _, x := range b {
		if !slices.Contains(out, x) {
			out = append(out, x)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	return len(a) == len(b) && len(intersect(a, b)) == len(a)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
