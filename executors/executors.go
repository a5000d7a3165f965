// Package executors is all pgherd knows of how to reach a host: run a
// command, put a file, get a file. Implementations: SSH (with SFTP for
// files), the local machine, and a recording fake for unit tests.
package executors

import (
	"fmt"
	"os"
	"strings"
)

// Result is what a command left behind. A command that ran and exited
// non-zero is a Result with ExitCode != 0, not an error; errors are kept for
// failures to run it at all (connection lost, sudo refused, timeout).
type Result struct {
	Stdout   []byte
	Stderr   []byte
	ExitCode int
}

// Err returns nil for a zero exit code and an *ExitError otherwise.
func (r Result) Err(host, cmd string) error {
	if r.ExitCode == 0 {
		return nil
	}
	return &ExitError{Host: host, Cmd: cmd, Code: r.ExitCode, Stderr: strings.TrimSpace(string(r.Stderr))}
}

// ExitError is a command that ran and failed.
type ExitError struct {
	Host   string
	Cmd    string
	Code   int
	Stderr string
}

func (e *ExitError) Error() string {
	cmd := e.Cmd
	if len(cmd) > 120 {
		cmd = cmd[:117] + "..."
	}
	msg := fmt.Sprintf("%s: %q exited with status %d", e.Host, cmd, e.Code)
	if e.Stderr != "" {
		msg += ": " + lastLines(e.Stderr, 5)
	}
	return msg
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// FileAttrs are the ownership and mode a file is written with. Empty owner
// or group means root.
type FileAttrs struct {
	Mode  os.FileMode
	Owner string
	Group string
}

// Quote quotes s for a POSIX shell, so that it is one word whatever it holds.
func Quote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:,+@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with spaces into one command line.
func Join(words ...string) string {
	q := make([]string, len(words))
	for i, w := range words {
		q[i] = Quote(w)
	}
	return strings.Join(q, " ")
}
