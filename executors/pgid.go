package executors

import (
	"bytes"
	"io"
	"strconv"
	"sync"
)

// pgidPrefix starts the line the command wrapper prints first on stderr:
// the process group of the command, so that a cancelled command can be
// killed with all its children (sshd does not deliver signals to root
// sessions, and a signal to sudo does not reach the whole tree).
const pgidPrefix = "pgherd-pgid:"

// pgidWrapper runs "$1" with sh -c after reporting its process group.
const pgidWrapper = `read -r _ _ _ _ g _ </proc/$$/stat && echo "` + pgidPrefix + `$g" >&2; exec sh -c "$1"`

// pgidWriter passes stderr through to w, except for the wrapper's first
// line, from which it takes the process group.
type pgidWriter struct {
	w io.Writer

	mu   sync.Mutex
	head []byte // first line, until complete
	done bool
	pgid int
}

func (p *pgidWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(b)
	if !p.done {
		i := bytes.IndexByte(b, '\n')
		if i < 0 && len(p.head)+len(b) < 64 {
			p.head = append(p.head, b...)
			return n, nil
		}
		p.done = true
		var line []byte
		if i >= 0 {
			line = append(p.head, b[:i+1]...)
			b = b[i+1:]
		} else {
			line = append(p.head, b...)
			b = nil
		}
		p.head = nil
		if rest, ok := bytes.CutPrefix(line, []byte(pgidPrefix)); ok {
			p.pgid, _ = strconv.Atoi(string(bytes.TrimSpace(rest)))
		} else if _, err := p.w.Write(line); err != nil {
			return 0, err
		}
	}
	if len(b) == 0 {
		return n, nil
	}
	if _, err := p.w.Write(b); err != nil {
		return 0, err
	}
	return n, nil
}

// flush writes out a first line that never ended.
func (p *pgidWriter) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.done && len(p.head) > 0 {
		p.w.Write(p.head)
	}
	p.done = true
}

func (p *pgidWriter) group() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pgid
}
