package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// tempPrefix marks files being written; List never shows them.
const tempPrefix = ".pgherd-tmp-"

// LocalRepo is a repository in a local (or NFS-mounted) directory. Put
// writes a temporary file, fsyncs it, renames it into place and fsyncs the
// directory, so that an object survives a crash once Put returns.
type LocalRepo struct {
	root string
	// NoSync skips the fsyncs (tests and benchmarks only).
	NoSync bool
}

// NewLocal returns a repository rooted at dir, which is created if absent.
func NewLocal(dir string) (*LocalRepo, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("backup: local repository %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o750); err != nil {
		return nil, fmt.Errorf("backup: local repository: %w", err)
	}
	return &LocalRepo{root: abs}, nil
}

// Root is the repository's directory.
func (l *LocalRepo) Root() string { return l.root }

func (l *LocalRepo) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return filepath.Join(l.root, filepath.FromSlash(key)), nil
}

// Put implements Repository.
func (l *LocalRepo) Put(ctx context.Context, key string, r io.Reader) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(p)
	var f *os.File
	// Two tries: a concurrent Delete may remove the directory it emptied
	// between MkdirAll and CreateTemp.
	for try := 0; ; try++ {
		if err = os.MkdirAll(dir, 0o750); err == nil {
			f, err = os.CreateTemp(dir, tempPrefix+"*")
		}
		if err == nil {
			break
		}
		if try > 0 || !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("backup: put %s: %w", key, err)
		}
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	var w io.Writer = f
	if !l.NoSync {
		// Start writing big objects out while they are produced, so that
		// the fsync below has little left to wait for.
		w = newWritebackWriter(f)
	}
	if _, err := io.Copy(w, ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("backup: put %s: %w", key, err)
	}
	if !l.NoSync {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("backup: put %s: fsync: %w", key, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: put %s: %w", key, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("backup: put %s: %w", key, err)
	}
	ok = true
	if !l.NoSync {
		if err := syncDir(dir); err != nil {
			return fmt.Errorf("backup: put %s: %w", key, err)
		}
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", dir, err)
	}
	return nil
}

// Get implements Repository.
func (l *LocalRepo) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := l.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: get %s: %w", key, err)
	}
	return f, nil
}

// Stat implements Repository.
func (l *LocalRepo) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := l.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && fi.IsDir()) {
		return ObjectInfo{}, fmt.Errorf("backup: stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("backup: stat %s: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Repository.
func (l *LocalRepo) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	// Walk only the deepest directory the prefix names.
	start := l.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(l.root, filepath.FromSlash(prefix[:i]))
	}
	var out []ObjectInfo
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(l.root, p)
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			if p != start && !strings.HasPrefix(key+"/", prefix) && !strings.HasPrefix(prefix, key+"/") {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasPrefix(d.Name(), tempPrefix) || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		out = append(out, ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("backup: list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Repository. Directories left empty are removed.
func (l *LocalRepo) Delete(ctx context.Context, key string) error {
	p, err := l.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("backup: delete %s: %w", key, err)
	}
	for dir := path.Dir(key); dir != "." && dir != "/"; dir = path.Dir(dir) {
		if os.Remove(filepath.Join(l.root, filepath.FromSlash(dir))) != nil {
			break // not empty (or gone): stop climbing
		}
	}
	return nil
}

// ctxReader stops a copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
