package backup

import (
	"os"
	"syscall"
)

// writebackChunk is how much a writebackWriter lets pile up before it asks
// the kernel to start writing it out.
const writebackChunk = 8 << 20

// writebackWriter writes to f and starts the kernel's writeback of what
// was written every writebackChunk bytes (sync_file_range without waiting:
// a hint, not a durability guarantee), so that a later fsync or sync(2),
// PostgreSQL's own included, finds little left to do, and the disk works
// while the CPU decompresses.
type writebackWriter struct {
	f            *os.File
	off, started int64
}

func newWritebackWriter(f *os.File) *writebackWriter { return &writebackWriter{f: f} }

func (w *writebackWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	w.off += int64(n)
	if w.off-w.started >= writebackChunk {
		w.flush()
	}
	return n, err
}

// flush starts the writeback of what is not started yet; errors are
// ignored (it is only a hint).
func (w *writebackWriter) flush() {
	if w.off > w.started {
		syscall.SyncFileRange(int(w.f.Fd()), w.started, w.off-w.started, 2 /* SYNC_FILE_RANGE_WRITE */)
		w.started = w.off
	}
}
