package modules

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/executors"
)

// invalidProbe is the probe of a resource whose arguments Diff will reject:
// nothing that could be read as an option reaches a command line.
const invalidProbe = "exit 2\n"

// parseKV reads the key=value lines most probes print. Lines without '='
// are kept as keys with an empty value; a later key wins.
func parseKV(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

// probeFailed is the error of a Diff handed the fact of a probe that failed.
func probeFailed(addr string, f Fact) error {
	msg := strings.TrimSpace(string(f.Stdout))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Errorf("%s: probe exited with status %d: %q: %w", addr, f.ExitCode, msg, ErrProbe)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// shortHash is how plans show a content hash.
func shortHash(h string) string {
	if h == "" {
		return ""
	}
	if len(h) > 12 {
		h = h[:12]
	}
	return "sha256:" + h
}

// parseMode reads an octal mode ("0640", "640"); empty gives 0, false.
func parseMode(s string) (uint32, bool, error) {
	if s == "" {
		return 0, false, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o7777 {
		return 0, false, fmt.Errorf("mode %q: want octal like 0640: %w", s, ErrInvalid)
	}
	return uint32(m), true, nil
}

func fmtMode(m uint32) string { return fmt.Sprintf("%04o", m) }

// statProbe prints type, owner, group, mode and size of path, without
// following a final symlink. Read-only.
func statProbe(path string) string {
	p := executors.Quote(path)
	return "p=" + p + `
if [ -L "$p" ]; then echo type=symlink
elif [ -f "$p" ]; then echo type=file
elif [ -d "$p" ]; then echo type=directory
elif [ -e "$p" ]; then echo type=other
else echo type=absent; exit 0; fi
s=$(stat -c 'owner=%U
group=%G
mode=%a
size=%s' -- "$p") || exit 1
printf '%s\n' "$s"
`
}
