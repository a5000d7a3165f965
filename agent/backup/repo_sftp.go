package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SFTPRepo is a repository under a directory of an SFTP server. Put writes
// a temporary file, fsyncs it (fsync@openssh.com) and renames it into
// place with posix-rename@openssh.com, which replaces atomically.
type SFTPRepo struct {
	c    *sftp.Client
	root string
	// closeFn closes what DialSFTP opened.
	closeFn func() error
}

// NewSFTP returns a repository rooted at root (an absolute path on the
// server) over an existing SFTP client. The caller keeps ownership of c.
func NewSFTP(c *sftp.Client, root string) *SFTPRepo {
	return &SFTPRepo{c: c, root: path.Clean(root)}
}

// SFTPConfig says how DialSFTP reaches the server.
type SFTPConfig struct {
	Addr string // host:port
	User string
	// Auth is typically ssh.PublicKeys(signer).
	Auth []ssh.AuthMethod
	// HostKeyCallback checks the server's key (knownhosts.New); required.
	HostKeyCallback ssh.HostKeyCallback
	Root            string
}

// DialSFTP connects to an SFTP server. Close the repository when done.
func DialSFTP(ctx context.Context, cfg SFTPConfig) (*SFTPRepo, error) {
	if cfg.HostKeyCallback == nil {
		return nil, errors.New("backup: sftp: a host key callback is required")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("backup: sftp: %w", err)
	}
	sc, chans, reqs, err := ssh.NewClientConn(conn, cfg.Addr, &ssh.ClientConfig{
		User: cfg.User, Auth: cfg.Auth, HostKeyCallback: cfg.HostKeyCallback,
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("backup: sftp: ssh %s: %w", cfg.Addr, err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	c, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true), sftp.UseFstat(true))
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("backup: sftp: %w", err)
	}
	r := NewSFTP(c, cfg.Root)
	r.closeFn = func() error { c.Close(); return client.Close() }
	return r, nil
}

// Close closes the connection opened by DialSFTP (no-op for NewSFTP).
func (s *SFTPRepo) Close() error {
	if s.closeFn == nil {
		return nil
	}
	return s.closeFn()
}

func (s *SFTPRepo) path(key string) (string, error) {
	if err := ValidateKey(key); err != nil {
		return "", err
	}
	return path.Join(s.root, key), nil
}

func notFound(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, os.ErrNotExist)
}

// Put implements Repository.
func (s *SFTPRepo) Put(ctx context.Context, key string, r io.Reader) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	dir := path.Dir(p)
	if err := s.c.MkdirAll(dir); err != nil {
		return fmt.Errorf("backup: sftp put %s: %w", key, err)
	}
	var rnd [8]byte
	randRead(rnd[:])
	tmp := path.Join(dir, fmt.Sprintf("%s%x", tempPrefix, rnd))
	f, err := s.c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil {
		return fmt.Errorf("backup: sftp put %s: %w", key, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			s.c.Remove(tmp)
		}
	}()
	if _, err := f.ReadFrom(ctxReader{ctx, r}); err != nil {
		return fmt.Errorf("backup: sftp put %s: %w", key, err)
	}
	if err := f.Sync(); err != nil && !errors.Is(err, sftp.ErrSSHFxOpUnsupported) {
		return fmt.Errorf("backup: sftp put %s: fsync: %w", key, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("backup: sftp put %s: %w", key, err)
	}
	if err := s.c.PosixRename(tmp, p); err != nil {
		return fmt.Errorf("backup: sftp put %s: rename: %w", key, err)
	}
	ok = true
	return nil
}

// Get implements Repository.
func (s *SFTPRepo) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := s.c.Open(p)
	if notFound(err) {
		return nil, fmt.Errorf("backup: sftp get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("backup: sftp get %s: %w", key, err)
	}
	return sftpFile{f}, nil
}

// sftpFile reads with WriteTo, which pipelines requests.
type sftpFile struct{ f *sftp.File }

func (s sftpFile) Read(p []byte) (int, error)         { return s.f.Read(p) }
func (s sftpFile) WriteTo(w io.Writer) (int64, error) { return s.f.WriteTo(w) }
func (s sftpFile) Close() error                       { return s.f.Close() }

// Stat implements Repository.
func (s *SFTPRepo) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	p, err := s.path(key)
	if err != nil {
		return ObjectInfo{}, err
	}
	fi, err := s.c.Stat(p)
	if notFound(err) || (err == nil && fi.IsDir()) {
		return ObjectInfo{}, fmt.Errorf("backup: sftp stat %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("backup: sftp stat %s: %w", key, err)
	}
	return ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List implements Repository.
func (s *SFTPRepo) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	startKey := ""
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		startKey = prefix[:i]
	}
	var out []ObjectInfo
	var walk func(dirKey string) error
	walk = func(dirKey string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		entries, err := s.c.ReadDir(path.Join(s.root, dirKey))
		if notFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			key := e.Name()
			if dirKey != "" {
				key = dirKey + "/" + e.Name()
			}
			if e.IsDir() {
				if strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
					if err := walk(key); err != nil {
						return err
					}
				}
				continue
			}
			if strings.HasPrefix(e.Name(), tempPrefix) || !strings.HasPrefix(key, prefix) {
				continue
			}
			out = append(out, ObjectInfo{Key: key, Size: e.Size(), ModTime: e.ModTime()})
		}
		return nil
	}
	if err := walk(startKey); err != nil {
		return nil, fmt.Errorf("backup: sftp list %s: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete implements Repository.
func (s *SFTPRepo) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := s.c.Remove(p); err != nil && !notFound(err) {
		return fmt.Errorf("backup: sftp delete %s: %w", key, err)
	}
	return nil
}
