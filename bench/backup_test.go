package main

import (
	"strings"
	"testing"
	"time"
)

func TestBackrestLabel(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"20261122-012107F", true},
		{"20261122-012107F_20261122-012126I", true},
		{"20261122-012107F_20261122-012126D", true},
		{"backup.info", false},
		{"backup.history", false},
		{"20261122-012107F.tmp", false},
		{"latest", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := reBackrestLabel.MatchString(tt.name); got != tt.ok {
				t.Fatalf("match = %v, want %v", got, tt.ok)
			}
		})
	}
}

func TestRenderBackup(t *testing.T) {
	res := func(stored int64, secs ...float64) *backupResult {
		r := &backupResult{stored: stored}
		for _, s := range secs {
			r.times = append(r.times, time.Duration(s*float64(time.Second)))
		}
		return r
	}
	rows := []backupRow{
		{"full backup", 4e9, res(1.4e9, 20, 10, 30), res(1.5e9, 40, 40, 40), res(1.6e9, 25), true},
		{"incremental backup", 4e9, res(1e8, 2), res(1.2e9, 40), nil, true},
		{"restore of the full backup", 4e9, res(0, 8), res(0, 10), nil, false},
	}
	out := renderBackup(4e9, 2.9, 3, map[string]string{"pgbackrest": "pgBackRest 2.45", "pg_basebackup": "pg_basebackup 15"}, rows)
	for _, want := range []string{
		"| full backup | 200 MB/s (20.0 s); best 400 MB/s | 100 MB/s (40.0 s); best 100 MB/s | 160 MB/s (25.0 s) | 2.00×; best 4.00× |", // median, best
		"| … stored in the repository | 1.40 GB | 1.50 GB | 1.60 GB | 1.07× |",
		"| incremental backup | 2000 MB/s (2.0 s) | 100 MB/s (40.0 s) | — | 20.00× |",
		"| … stored in the repository | 100 MB | 1.20 GB | — | 12.00× |",
		"| restore of the full backup | 500 MB/s (8.0 s) | 400 MB/s (10.0 s) | — | 1.25× |",
		"took 10.0× less time than its full backup (pgBackRest: 1.0×)",
		"compresses it 2.9×",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
