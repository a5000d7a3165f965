package pg

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// An operation that rewrites the data directory in place (pg_rewind, a
// clone by pg_basebackup) and stops midway — an error, a full disk, the
// agent killed — leaves a directory that must never be started: pg_rewind
// documents that its target is then "likely not in a state that can be
// recovered", and a half-cloned directory has no consistent checkpoint. The
// data directory's own files cannot record that (the operation rewrites
// them), so a marker file beside it does: written before the operation
// starts, removed when it has finished.

// incompletePath is the marker of an unfinished operation on the data
// directory.
func (i *Instance) incompletePath() string { return i.DataDir + ".pgherd-incomplete" }

// Incomplete names the operation that left the data directory unusable
// ("" if none did).
func (i *Instance) Incomplete() (string, error) {
	b, err := os.ReadFile(i.incompletePath())
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("pg: read %s: %w", i.incompletePath(), err)
	}
	if op := strings.TrimSpace(string(b)); op != "" {
		return op, nil
	}
	return "unknown operation", nil
}

// beginIncomplete marks the data directory as being rewritten by op; the
// mark is written through to disk before op may start.
func (i *Instance) beginIncomplete(op string) error {
	if err := writeMark(i.incompletePath(), op); err != nil {
		return fmt.Errorf("pg: mark the data directory as being rewritten: %w", err)
	}
	return nil
}

// writeMark writes a marker file beside the data directory, through to
// disk, with one line of content.
func writeMark(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.WriteString(content + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// endIncomplete removes the mark once the data directory is whole again.
func (i *Instance) endIncomplete() error {
	if err := os.Remove(i.incompletePath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pg: clear the rewrite mark of the data directory: %w", err)
	}
	return nil
}
