package executors

import (
	"bytes"
	"io"
	"sync"
)

// maxLine is the longest line lineWriter holds: a longer one is passed on
// in pieces of this size.
const maxLine = 64 << 10

// lineWriter calls fn with each line written to it, without its end of
// line, as soon as the line is complete. close passes on a last line that
// never ended; fn is not called after it.
type lineWriter struct {
	fn func(line string)

	mu     sync.Mutex
	buf    []byte
	closed bool
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(b)
	if w.closed {
		return n, nil
	}
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.buf = append(w.buf, b...)
			for len(w.buf) >= maxLine {
				w.fn(string(w.buf[:maxLine]))
				w.buf = append(w.buf[:0], w.buf[maxLine:]...)
			}
			break
		}
		w.buf = append(w.buf, b[:i]...)
		w.fn(string(bytes.TrimSuffix(w.buf, []byte("\r"))))
		w.buf = w.buf[:0]
		b = b[i+1:]
	}
	return n, nil
}

func (w *lineWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.closed && len(w.buf) > 0 {
		w.fn(string(w.buf))
	}
	w.closed, w.buf = true, nil
}

// teeLines returns a writer to w that, when fn is not nil, also calls fn
// with each line written, and end, which passes on a last line that never
// ended: fn is not called once end has returned.
func teeLines(w io.Writer, fn func(line string)) (_ io.Writer, end func()) {
	if fn == nil {
		return w, func() {}
	}
	lw := &lineWriter{fn: fn}
	return io.MultiWriter(w, lw), lw.close
}
