package modules

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgherd/pgherd/executors"
)

// ErrBatchOutput is returned by SplitBatch when the output of a batch script
// is cut short or does not carry the markers of the nonce it was made with.
var ErrBatchOutput = errors.New("malformed batch probe output")

// NewNonce returns a random marker for BatchScript: 24 hex digits, which no
// probe can print by chance.
func NewNonce() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+).
	return hex.EncodeToString(b[:])
}

func batchBegin(nonce string, i int) string {
	return fmt.Sprintf("@@pgherd-%s-begin-%d@@\n", nonce, i)
}

func batchEnd(nonce string, i int) string {
	return fmt.Sprintf("\n@@pgherd-%s-end-%d@@ ", nonce, i)
}

// BatchScript joins probes into one shell script whose output can be split
// back per probe by SplitBatch, whatever a probe prints: each probe's stdout
// is framed by markers that carry the nonce (use NewNonce). Each probe runs in
// its own `sh -c` with stdin from /dev/null, so a probe that exits, fails or
// does not even parse affects no other; its exit code is captured. The
// probes' stderr is passed through.
func BatchScript(nonce string, probes []string) string {
	var b strings.Builder
	for i, p := range probes {
		fmt.Fprintf(&b, "printf '%%s' %s\n", executors.Quote(batchBegin(nonce, i)))
		fmt.Fprintf(&b, "sh -c %s </dev/null\n", executors.Quote(p))
		// The end marker starts with a newline of its own, so that a probe
		// whose output lacks a final newline still splits exactly.
		fmt.Fprintf(&b, "printf '%%s%%d\\n' %s \"$?\"\n", executors.Quote(batchEnd(nonce, i)))
	}
	b.WriteString("exit 0\n")
	return b.String()
}

// SplitBatch splits the stdout of a script made by BatchScript with the same
// nonce back into n facts, in the order of the probes. It fails with
// ErrBatchOutput when a probe's output or exit code is missing (the script
// was interrupted, or the nonce is not the one it was made with).
func SplitBatch(nonce string, out []byte, n int) ([]Fact, error) {
	facts := make([]Fact, n)
	rest := out
	for i := range n {
		begin := []byte(batchBegin(nonce, i))
		j := bytes.Index(rest, begin)
		if j < 0 {
			return nil, fmt.Errorf("probe %d: no begin marker: %w", i, ErrBatchOutput)
		}
		rest = rest[j+len(begin):]
		end := []byte(batchEnd(nonce, i))
		k := bytes.Index(rest, end)
		if k < 0 {
			return nil, fmt.Errorf("probe %d: no end marker: %w", i, ErrBatchOutput)
		}
		stdout := rest[:k]
		rest = rest[k+len(end):]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("probe %d: no exit code: %w", i, ErrBatchOutput)
		}
		code, err := strconv.Atoi(string(rest[:nl]))
		if err != nil {
			return nil, fmt.Errorf("probe %d: exit code %q: %w", i, rest[:nl], ErrBatchOutput)
		}
		rest = rest[nl+1:]
		facts[i] = Fact{Stdout: bytes.Clone(stdout), ExitCode: code}
	}
	return facts, nil
}
