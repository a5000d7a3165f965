package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
)

// PostgreSQL runs restore_command once per file it wants: every WAL
// segment it replays, and, when a standby is promoted, the history files
// of the timelines after its own. Each `pgherd wal-fetch` that opens the
// repository itself (and each wal-push, once per segment on the primary)
// pays a process start, an SSH handshake and
// authentication with an SFTP repository, and a read of its
// configuration: 0.5 to 1 s on a busy host, and a promotion makes two or
// three such calls before the server takes writes. So the agent keeps the
// repository open and serves wal-fetch over a unix socket in its run
// directory, private to the user PostgreSQL and the agent run as;
// wal-fetch opens the repository itself only when no agent answers.

// WALSocket is the socket's path in runDir.
func WALSocket(runDir string) string { return filepath.Join(runDir, "wal.sock") }

// walRequest is one line a client sends; walReply the line it gets back.
type walRequest struct {
	Op   string `json:"op"`             // "fetch" or "push"
	Name string `json:"name,omitempty"` // fetch: the archived file's name
	Dest string `json:"dest,omitempty"` // fetch: where it goes (absolute)
	Path string `json:"path,omitempty"` // push: the WAL file (absolute)
}

type walReply struct {
	Status string `json:"status"` // "ok", "missing", "error"
	Error  string `json:"error,omitempty"`
}

// ErrNoWALServer: no agent serves the socket (wal-fetch then opens the
// repository itself).
var ErrNoWALServer = errors.New("no agent serves WAL on this host")

// FetchWALVia asks the agent listening on sock for the archived file name,
// written to dest (an absolute path). It returns backup.ErrNotFound when the
// archive has no such file, and ErrNoWALServer (wrapped) when no agent
// answers.
func FetchWALVia(ctx context.Context, sock, name, dest string) error {
	return askWALServer(ctx, sock, walRequest{Op: "fetch", Name: name, Dest: dest})
}

// PushWALVia asks the agent listening on sock to archive the WAL file at
// path (absolute), as wal-push does; ErrNoWALServer (wrapped) when no
// agent answers.
func PushWALVia(ctx context.Context, sock, path string) error {
	return askWALServer(ctx, sock, walRequest{Op: "push", Path: path})
}

func askWALServer(ctx context.Context, sock string, req walRequest) error {
	name := req.Name + req.Path
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNoWALServer, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("%w: %v", ErrNoWALServer, err)
	}
	var r walReply
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&r); err != nil {
		return fmt.Errorf("%w: %v", ErrNoWALServer, err)
	}
	switch r.Status {
	case "ok":
		return nil
	case "missing":
		return fmt.Errorf("wal-%s %s: %w", req.Op, name, backup.ErrNotFound)
	default:
		return fmt.Errorf("wal-%s %s through the agent: %s", req.Op, name, r.Error)
	}
}

// walServer serves FetchWALVia and PushWALVia with the repositories kept
// open between requests.
type walServer struct {
	log *slog.Logger
	cfg func() *BackupConfig // the configuration in force

	mu         sync.Mutex
	stores     *backup.Stores
	storesFrom *BackupConfig // the configuration stores were made from
	busy       int           // requests being served

	history historyAhead // history files looked up ahead (history.go)
}

// serve listens on sock until ctx ends. A stale socket file from an
// earlier run is replaced.
func (s *walServer) serve(ctx context.Context, sock string) error {
	if err := os.Remove(sock); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("wal socket: %w", err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("wal socket: %w", err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("wal socket: %w", err)
	}
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	defer s.close()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("wal socket: %w", err)
		}
		go s.handle(ctx, c)
	}
}

func (s *walServer) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	s.mu.Lock()
	s.busy++
	s.mu.Unlock()
	defer s.idle()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	var req walRequest
	reply := func(r walReply) { json.NewEncoder(c).Encode(r) }
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		reply(walReply{Status: "error", Error: "bad request: " + err.Error()})
		return
	}
	var err error
	switch {
	case req.Op == "fetch" && filepath.IsAbs(req.Dest):
		err = s.fetch(ctx, req.Name, req.Dest)
	case req.Op == "push" && filepath.IsAbs(req.Path):
		err = s.push(ctx, req.Path)
	default:
		reply(walReply{Status: "error", Error: "bad request: want op fetch with an absolute dest, or push with an absolute path"})
		return
	}
	switch {
	case err == nil:
		reply(walReply{Status: "ok"})
	case errors.Is(err, backup.ErrNotFound):
		reply(walReply{Status: "missing"})
	default:
		reply(walReply{Status: "error", Error: err.Error()})
	}
}

// fetch runs one wal-fetch on the kept repositories, or from the
// history files looked up ahead.
func (s *walServer) fetch(ctx context.Context, name, dest string) error {
	if ok, err := s.serveHistory(name, dest); ok {
		return err
	}
	ss, b, err := s.kept()
	if err != nil {
		return err
	}
	return ss.WALFetch(ctx, name, dest, b.WALFetchOptions())
}

// push runs one wal-push on the kept repositories.
func (s *walServer) push(ctx context.Context, path string) error {
	ss, b, err := s.kept()
	if err != nil {
		return err
	}
	return ss.WALPush(ctx, path, b.WALPushOptions())
}

// kept returns the repositories of the configuration in force, each
// opened when first needed and kept open (and opened again when a kept
// connection fails: backup.Stores). A new configuration closes the
// repositories of the old one.
func (s *walServer) kept() (*backup.Stores, *BackupConfig, error) {
	b := s.cfg()
	if b == nil {
		return nil, nil, ErrNoBackup
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores != nil && s.storesFrom == b {
		return s.stores, b, nil
	}
	if s.stores != nil {
		s.stores.Close()
	}
	s.stores, s.storesFrom = b.Stores(s.log), b
	return s.stores, b, nil
}

func (s *walServer) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stores != nil {
		s.stores.Close()
		s.stores = nil
	}
}

// serveWAL runs the WAL socket for as long as ctx; a failure to listen
// only costs speed (wal-fetch then opens the repository itself).
func (a *Agent) serveWAL(ctx context.Context) {
	if err := os.MkdirAll(a.cfg.RunDir, 0o755); err != nil {
		a.log.Warn("wal socket: no run directory", "err", err)
		return
	}
	if err := a.wal.serve(ctx, WALSocket(a.cfg.RunDir)); err != nil {
		a.log.Warn("wal socket", "err", err)
	}
}

// idle ends a request. When none is left, the memory the request used
// (zstd and cipher buffers of a WAL segment, tens of MB) goes back to the
// system at once: the agent is a long-lived process whose resident size is
// compared with Patroni's, and Go would keep that heap for minutes.
func (s *walServer) idle() {
	s.mu.Lock()
	s.busy--
	last := s.busy == 0
	s.mu.Unlock()
	if last {
		// Twice: pooled encoders survive one collection (sync.Pool's
		// victim cache) and are freed by the second.
		debug.FreeOSMemory()
		debug.FreeOSMemory()
	}
}
