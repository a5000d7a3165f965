//go:build !linux

package backup

import "os"

// writebackWriter writes to f (writeback hints are Linux only).
type writebackWriter struct{ f *os.File }

func newWritebackWriter(f *os.File) *writebackWriter { return &writebackWriter{f: f} }

func (w *writebackWriter) Write(p []byte) (int, error) { return w.f.Write(p) }

func (w *writebackWriter) flush() {}
