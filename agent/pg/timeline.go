package pg

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SwitchPoint is where timeline tli branched off its parent: the switch
// point the promotion wrote in the last line of pg_wal/<tli>.history. It is
// PostgreSQL's own record, exact where a replay position observed before
// the promotion would fall short of it.
func (i *Instance) SwitchPoint(tli uint32) (LSN, error) {
	path := filepath.Join(i.DataDir, "pg_wal", fmt.Sprintf("%08X.history", tli))
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("pg: timeline %d: %w", tli, err)
	}
	return parseSwitchPoint(string(b), tli)
}

// parseSwitchPoint reads a timeline history file: lines of
// "parentTLI<TAB>switchpoint<TAB>reason", comments starting with '#'; the
// last entry is the branch point of timeline tli.
func parseSwitchPoint(history string, tli uint32) (LSN, error) {
	var last string
	for _, l := range strings.Split(history, "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			last = l
		}
	}
	f := strings.Fields(last)
	if len(f) < 2 {
		return 0, fmt.Errorf("pg: timeline %d: history file has no entry", tli)
	}
	if parent, err := strconv.ParseUint(f[0], 10, 32); err != nil || uint32(parent) >= tli {
		return 0, fmt.Errorf("pg: timeline %d: bad history entry %q", tli, last)
	}
	lsn, err := ParseLSN(f[1])
	if err != nil {
		return 0, fmt.Errorf("pg: timeline %d: bad history entry %q: %w", tli, last, err)
	}
	return lsn, nil
}
