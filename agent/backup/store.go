package backup

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"golang.org/x/crypto/scrypt"
)

// ConfigKey is the key of the repository's configuration file, the one
// object stored as plain JSON.
const ConfigKey = "config.json"

// Sentinel errors of Init and Open.
var (
	// ErrNoConfig: the repository has no config.json (run Init first).
	ErrNoConfig = errors.New("repository is not initialized")
	// ErrExists: Init found a repository already there.
	ErrExists = errors.New("repository is already initialized")
	// ErrPassphraseRequired: the repository is encrypted and no
	// passphrase was given.
	ErrPassphraseRequired = errors.New("repository is encrypted: passphrase required")
)

// Config is the repository's config.json.
type Config struct {
	Version     int       `json:"version"`
	Created     time.Time `json:"created"`
	Compression string    `json:"compression"` // "zstd"
	// Level is the zstd level new objects are written with.
	Level      int               `json:"level"`
	Encryption *EncryptionConfig `json:"encryption,omitempty"`
}

// EncryptionConfig describes how the data key is protected. The data key
// (32 random bytes) is sealed with AES-256-GCM under the key-encryption key
// scrypt(passphrase, Salt, N, R, P); opening it is the key check.
type EncryptionConfig struct {
	Cipher    string `json:"cipher"` // "aes-256-gcm"
	ChunkSize int    `json:"chunk_size"`
	KDF       string `json:"kdf"` // "scrypt"
	N         int    `json:"n"`
	R         int    `json:"r"`
	P         int    `json:"p"`
	Salt      []byte `json:"salt"`
	// WrappedKey is nonce (12 bytes) || GCM-sealed data key || tag.
	WrappedKey []byte `json:"wrapped_key"`
}

// Options configure Init and Open.
type Options struct {
	// Passphrase enables encryption at Init; at Open it must match.
	Passphrase string
	// Level is the zstd level at Init (default 3); Open may override it
	// for the objects it writes (0 = the repository's).
	Level int
	// ScryptN is scrypt's cost at Init (default 32768).
	ScryptN int
	// KeyCacheDir, when set, keeps the key-encryption key derived from
	// the passphrase in a 0600 file there, so that the next Open (every
	// wal-push and wal-fetch is one) skips scrypt (see keycache.go).
	KeyCacheDir string
	// Name names the repository in errors and logs, where a cluster has
	// several ("" for none).
	Name string
	Log  *slog.Logger
}

// Store is an opened repository: a Repository plus its configuration and
// key. Its methods are safe for concurrent use.
type Store struct {
	repo    Repository
	cfg     Config
	dataKey []byte
	level   int
	name    string
	log     *slog.Logger
}

// Init creates the repository's configuration, refusing with ErrExists a
// repository that has one.
func Init(ctx context.Context, repo Repository, opts Options) (*Store, error) {
	if _, err := repo.Stat(ctx, ConfigKey); err == nil {
		return nil, fmt.Errorf("backup: init: %w", ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup: init: %w", err)
	}
	cfg := Config{Version: 1, Created: time.Now().UTC(), Compression: "zstd", Level: opts.Level}
	if cfg.Level == 0 {
		cfg.Level = 3
	}
	if opts.Passphrase != "" {
		ec := &EncryptionConfig{Cipher: "aes-256-gcm", ChunkSize: DefaultChunkSize, KDF: "scrypt",
			N: opts.ScryptN, R: 8, P: 1, Salt: make([]byte, 16)}
		if ec.N == 0 {
			ec.N = 1 << 15
		}
		dataKey := make([]byte, 32)
		nonce := make([]byte, 12)
		for _, b := range [][]byte{ec.Salt, dataKey, nonce} {
			if _, err := rand.Read(b); err != nil {
				return nil, err
			}
		}
		kek, err := scrypt.Key([]byte(opts.Passphrase), ec.Salt, ec.N, ec.R, ec.P, 32)
		if err != nil {
			return nil, fmt.Errorf("backup: init: kdf: %w", err)
		}
		gcm, err := newGCM(kek)
		if err != nil {
			return nil, err
		}
		ec.WrappedKey = gcm.Seal(nonce, nonce, dataKey, []byte("pgherd data key v1"))
		cfg.Encryption = ec
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := repo.Put(ctx, ConfigKey, bytes.NewReader(append(data, '\n'))); err != nil {
		return nil, fmt.Errorf("backup: init: %w", err)
	}
	return Open(ctx, repo, opts)
}

func newGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Open reads the repository's configuration and, for an encrypted
// repository, unwraps its key with the passphrase (ErrWrongKey when it does
// not match, ErrPassphraseRequired when none is given).
func Open(ctx context.Context, repo Repository, opts Options) (*Store, error) {
	rc, err := repo.Get(ctx, ConfigKey)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("backup: open: %w", ErrNoConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: open: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("backup: open: %w", err)
	}
	s := &Store{repo: repo, name: opts.Name, log: opts.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.name != "" {
		s.log = s.log.With("repository", s.name)
	}
	if err := json.Unmarshal(data, &s.cfg); err != nil {
		return nil, fmt.Errorf("backup: open: %s: %w", ConfigKey, err)
	}
	if s.cfg.Version != 1 || s.cfg.Compression != "zstd" {
		return nil, fmt.Errorf("backup: open: unsupported repository version %d / compression %q", s.cfg.Version, s.cfg.Compression)
	}
	s.level = s.cfg.Level
	if opts.Level != 0 {
		s.level = opts.Level
	}
	if ec := s.cfg.Encryption; ec != nil {
		if opts.Passphrase == "" {
			return nil, fmt.Errorf("backup: open: %w", ErrPassphraseRequired)
		}
		if ec.Cipher != "aes-256-gcm" || ec.KDF != "scrypt" || len(ec.WrappedKey) < 12+tagLen || ec.ChunkSize <= 0 {
			return nil, fmt.Errorf("backup: open: unsupported encryption settings %s/%s", ec.Cipher, ec.KDF)
		}
		kek, cached := cachedKEK(opts.KeyCacheDir, ec, opts.Passphrase)
		if !cached {
			if kek, err = scrypt.Key([]byte(opts.Passphrase), ec.Salt, ec.N, ec.R, ec.P, 32); err != nil {
				return nil, fmt.Errorf("backup: open: kdf: %w", err)
			}
		}
		gcm, err := newGCM(kek)
		if err != nil {
			return nil, err
		}
		s.dataKey, err = gcm.Open(nil, ec.WrappedKey[:12], ec.WrappedKey[12:], []byte("pgherd data key v1"))
		if err != nil {
			return nil, fmt.Errorf("backup: open: %w", ErrWrongKey)
		}
		if !cached && opts.KeyCacheDir != "" {
			if err := cacheKEK(opts.KeyCacheDir, ec, opts.Passphrase, kek); err != nil {
				s.log.Warn("caching the repository's key-encryption key", "err", err)
			}
		}
	}
	return s, nil
}

// Config returns the repository's configuration.
func (s *Store) Config() Config { return s.cfg }

// Repository returns the underlying repository.
func (s *Store) Repository() Repository { return s.repo }

// Name is the repository's name (Options.Name).
func (s *Store) Name() string { return s.name }

// in names the repository for an error message: ` in repository "x"`,
// or "" when it has no name.
func (s *Store) in() string {
	if s.name == "" {
		return ""
	}
	return fmt.Sprintf(" in repository %q", s.name)
}

// Close closes the repository's connection, if it holds one (SFTP).
func (s *Store) Close() {
	if c, ok := s.repo.(io.Closer); ok {
		c.Close()
	}
}

// Encrypted reports whether objects are encrypted.
func (s *Store) Encrypted() bool { return s.dataKey != nil }

// suffix is the extension of encoded objects: ".zst" or ".zst.enc".
func (s *Store) suffix() string {
	if s.Encrypted() {
		return ".zst.enc"
	}
	return ".zst"
}

// countWriter counts bytes on their way to w.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// put stores b encoded under key and returns the stored size.
func (s *Store) put(ctx context.Context, key string, b []byte) (int64, error) {
	return s.putEncoded(ctx, key, len(b) <= smallObject, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// putFunc stores under key, encoded, what produce writes, and returns the
// stored size. produce runs on its own goroutine, which has returned when
// putFunc returns; a produce error fails the Put.
func (s *Store) putFunc(ctx context.Context, key string, produce func(w io.Writer) error) (int64, error) {
	return s.putEncoded(ctx, key, false, produce)
}

// putEncoded is putFunc with the size class of what produce writes.
func (s *Store) putEncoded(ctx context.Context, key string, small bool, produce func(w io.Writer) error) (int64, error) {
	pr, pw := io.Pipe()
	cw := &countWriter{w: pw}
	done := make(chan error, 1)
	go func() {
		err := s.encode(cw, small, produce)
		pw.CloseWithError(err)
		done <- err
	}()
	err := s.repo.Put(ctx, key, pr)
	pr.CloseWithError(errors.New("repository put ended"))
	encErr := <-done
	if encErr != nil && (err == nil || errors.Is(err, io.ErrClosedPipe)) {
		err = fmt.Errorf("backup: put %s: %w", key, encErr)
	}
	if err != nil {
		return 0, err
	}
	return cw.n, nil
}

// encode runs produce with a writer that compresses (and encrypts) to w.
func (s *Store) encode(w io.Writer, small bool, produce func(w io.Writer) error) error {
	var ew *encWriter
	dst := w
	if s.Encrypted() {
		var err error
		if ew, err = newEncWriter(w, s.dataKey, s.cfg.Encryption.ChunkSize); err != nil {
			return err
		}
		dst = ew
	}
	zw := getEncoder(s.level, small)
	defer putEncoder(s.level, small, zw)
	zw.Reset(dst)
	if err := produce(zw); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if ew != nil {
		return ew.Close()
	}
	return nil
}

// putBytes stores b encoded under key.
func (s *Store) putBytes(ctx context.Context, key string, b []byte) error {
	_, err := s.put(ctx, key, b)
	return err
}

// get opens key and returns its decoded content.
func (s *Store) get(ctx context.Context, key string) (io.ReadCloser, error) {
	return s.getSized(ctx, key, false)
}

// getSized is get with the decoder for small objects when small; it
// decodes an object of any size, only slower when it is large.
func (s *Store) getSized(ctx context.Context, key string, small bool) (io.ReadCloser, error) {
	rc, err := s.repo.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	var r io.Reader = rc
	if s.Encrypted() {
		dr, err := newDecReader(rc, s.dataKey, s.cfg.Encryption.ChunkSize)
		if err != nil {
			rc.Close()
			return nil, fmt.Errorf("backup: %s: %w", key, err)
		}
		r = dr
	}
	zr, err := newZstdReader(r, rc, small)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("backup: %s: %w", key, err)
	}
	return zr, nil
}

// getBytes reads and decodes a whole (small) object.
func (s *Store) getBytes(ctx context.Context, key string) ([]byte, error) {
	rc, err := s.getSized(ctx, key, true)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("backup: %s: %w", key, err)
	}
	return b, nil
}
