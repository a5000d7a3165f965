// Package backup is pgherd's backup agent: a repository of base backups and
// archived WAL (the role pgBackRest plays), reached through a small
// Repository interface with local, SFTP and S3 implementations.
//
// Everything stored is a zstd frame, optionally wrapped in AES-256-GCM
// chunks (see docs/backup.md). A Store ties a Repository to its
// configuration (compression level, encryption key) and offers the
// operations the CLI wires: WALPush, WALFetch, Backup, Restore, Verify,
// Expire, List.
package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Sentinel errors; test them with errors.Is.
var (
	// ErrNotFound: the key does not exist in the repository.
	ErrNotFound = errors.New("not found in repository")
	// ErrInvalidKey: a key is empty, absolute, holds "." or ".." elements,
	// empty elements, a backslash or a NUL byte.
	ErrInvalidKey = errors.New("invalid repository key")
)

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Repository is where backups and WAL live. Keys are slash-separated
// relative paths (see ValidateKey). Put makes an object visible atomically:
// a reader sees either no object or the complete one, never a prefix.
// Implementations are safe for concurrent use.
type Repository interface {
	// Put stores the content of r under key, replacing any object there.
	Put(ctx context.Context, key string, r io.Reader) error
	// Get opens the object; the error wraps ErrNotFound when it is absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object; the error wraps ErrNotFound when absent.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix (a plain
	// string prefix, not only a directory), sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
}

// MaxKeyLen bounds the length of a key (S3's limit).
const MaxKeyLen = 1024

// ValidateKey checks that key is a clean relative slash-separated path that
// cannot escape the repository's root: not empty, not absolute, no empty,
// "." or ".." elements, no backslash, no NUL or other control bytes.
func ValidateKey(key string) error {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrInvalidKey, key, why) }
	switch {
	case key == "":
		return bad("empty")
	case len(key) > MaxKeyLen:
		return bad("too long")
	case strings.HasPrefix(key, "/"):
		return bad("absolute")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return bad("control byte or backslash")
		}
	}
	for _, el := range strings.Split(key, "/") {
		switch el {
		case "":
			return bad("empty element")
		case ".", "..":
			return bad("dot element")
		}
	}
	return nil
}

// validatePrefix checks a List prefix: "" or a key, optionally ending in
// "/", and with a last element that may be partial.
func validatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	p := strings.TrimSuffix(prefix, "/")
	if err := ValidateKey(p); err != nil {
		return err
	}
	return nil
}
