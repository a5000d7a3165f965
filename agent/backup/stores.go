package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
)

// Stores are a cluster's repositories, in order: WAL is archived into every
// one (WALPush) and fetched from the first that has it (WALFetch). Each is
// opened when first needed and kept open until Close, so that a host that
// only fetches (a standby) holds no connection to the repositories after
// the first. Safe for concurrent use.
type Stores struct {
	names []string
	open  func(ctx context.Context, i int) (*Store, error)
	log   *slog.Logger

	mu     sync.Mutex
	stores []*Store // by index; nil until opened
}

// NewStores returns the repositories names (one "" for a single unnamed
// repository), which open opens by index.
func NewStores(names []string, open func(ctx context.Context, i int) (*Store, error), log *slog.Logger) *Stores {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Stores{names: names, open: open, log: log, stores: make([]*Store, len(names))}
}

// store returns repository i, opening it unless it is open already
// (kept).
func (ss *Stores) store(ctx context.Context, i int) (st *Store, kept bool, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if st := ss.stores[i]; st != nil {
		return st, true, nil
	}
	st, err = ss.open(ctx, i)
	if err != nil {
		return nil, false, err
	}
	ss.stores[i] = st
	return st, false, nil
}

// Uninitialized names the repositories that were never initialized
// (their open fails with ErrNoConfig), as `repository "offsite"`, or "the
// repository" for a single unnamed one; the error reports the other
// failures to open one (unreachable, a wrong key). A repository that
// opens is kept open, as for a push.
func (ss *Stores) Uninitialized(ctx context.Context) ([]string, error) {
	var names []string
	var errs []error
	for i := range ss.names {
		_, _, err := ss.store(ctx, i)
		switch {
		case errors.Is(err, ErrNoConfig) && ss.names[i] != "":
			names = append(names, fmt.Sprintf("repository %q", ss.names[i]))
		case errors.Is(err, ErrNoConfig):
			names = append(names, "the repository")
		case err != nil:
			errs = append(errs, ss.named(i, err))
		}
	}
	return names, errors.Join(errs...)
}

// named wraps err, a failure to open repository i, with its name where it
// has one.
func (ss *Stores) named(i int, err error) error {
	if ss.names[i] == "" {
		return err
	}
	return fmt.Errorf("repository %q: %w", ss.names[i], err)
}

// in names repository i for an error message, as Store.in does.
func (ss *Stores) in(i int) string {
	if ss.names[i] == "" {
		return ""
	}
	return fmt.Sprintf(" in repository %q", ss.names[i])
}

// drop closes repository i if it is still st.
func (ss *Stores) drop(i int, st *Store) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.stores[i] == st {
		st.Close()
		ss.stores[i] = nil
	}
}

// Close closes every open repository.
func (ss *Stores) Close() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for i, st := range ss.stores {
		if st != nil {
			st.Close()
			ss.stores[i] = nil
		}
	}
}

// with runs op on repository i. When a repository kept open fails (its
// connection may have gone), it is opened again and op runs once more.
func (ss *Stores) with(ctx context.Context, i int, op func(*Store) error) error {
	var err error
	for range 2 {
		st, kept, oerr := ss.store(ctx, i)
		if oerr != nil {
			return ss.named(i, oerr)
		}
		err = op(st)
		if err == nil || !kept || errors.Is(err, ErrNotFound) || errors.Is(err, ErrBadWALName) || errors.Is(err, ErrWALMismatch) {
			return err
		}
		ss.log.Warn("the kept repository connection failed; reconnecting", "repository", ss.names[i], "err", err)
		ss.drop(i, st)
	}
	return err
}

// WALPush archives the WAL file at walPath into every repository, as
// Store.WALPush does into one; it succeeds only when every repository has
// the file, so that none has a hole. A repository that fails does not
// stop the others; the error names each that failed. While one cannot be
// opened, async mode pushes only the requested file: PostgreSQL retries
// it, and pushing ahead into the others at every retry would read every
// ready file again for nothing.
func (ss *Stores) WALPush(ctx context.Context, walPath string, opts WALPushOptions) error {
	if done, err := pushedAhead(walPath, opts, ss.log); done || err != nil {
		return err
	}
	var targets []target
	var errs []error
	for i := range ss.names {
		if _, _, err := ss.store(ctx, i); err != nil {
			errs = append(errs, fmt.Errorf("backup: wal-push %s%s: %w", filepath.Base(walPath), ss.in(i), err))
			continue
		}
		targets = append(targets, func(op func(*Store) error) error { return ss.with(ctx, i, op) })
	}
	if len(errs) > 0 {
		opts.Async = false
	}
	if len(targets) > 0 {
		errs = append(errs, walPush(ctx, ss.log, targets, walPath, opts))
	}
	return errors.Join(errs...)
}

// WALFetch restores the archived WAL file name to dest from the first
// repository, in order, that has it (checking its checksum, as
// Store.WALFetch does). A repository that cannot be reached, or whose copy
// is damaged, is passed over. When none has the file the error wraps
// ErrNotFound, unless one of them failed: then it is that failure, since
// PostgreSQL would take "not found" for the end of the archive.
func (ss *Stores) WALFetch(ctx context.Context, name, dest string, opts WALFetchOptions) error {
	var errs []error
	for i := range ss.names {
		err := ss.with(ctx, i, func(st *Store) error { return st.WALFetch(ctx, name, dest, opts) })
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrBadWALName):
			return err
		case errors.Is(err, ErrNotFound):
			continue
		}
		if len(ss.names) > 1 {
			ss.log.Warn("cannot fetch WAL from a repository", "repository", ss.names[i], "wal", name, "err", err)
		}
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return fmt.Errorf("backup: WAL %s: %w", name, ErrNotFound)
}
