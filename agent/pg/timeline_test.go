package pg

import "testing"

func TestParseSwitchPoint(t *testing.T) {
	for _, c := range []struct {
		name, in string
		tli      uint32
		want     LSN
		err      bool
	}{
		{"first promotion", "1\t0/3000060\tno recovery target specified\n", 2, 0x3000060, false},
		{"several", "1\t0/3000060\tno recovery target specified\n\n2\t0/74131A0\tno recovery target specified\n", 3, 0x74131A0, false},
		{"comments and blank lines", "# comment\n\n1\t0/5000000\tx\n\n", 2, 0x5000000, false},
		{"empty", "", 2, 0, true},
		{"parent not older", "3\t0/5000000\tx\n", 3, 0, true},
		{"bad lsn", "1\tzz\tx\n", 2, 0, true},
	} {
		got, err := parseSwitchPoint(c.in, c.tli)
		if (err != nil) != c.err || got != c.want {
			t.Errorf("%s: got %v, %v; want %v, error %v", c.name, got, err, c.want, c.err)
		}
	}
}
