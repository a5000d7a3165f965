package executors

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Defaults for SSHConfig's zero values.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultKeepAlive      = 15 * time.Second
	// DefaultMaxSessions stays at sshd's default MaxSessions (10): the SFTP
	// subsystem and each held Lock count as one.
	DefaultMaxSessions = 10
	// DefaultLockPath is where Lock takes its flock when given no path.
	DefaultLockPath = "/run/pgherd.lock"
)

// SSHConfig says how to reach one host.
type SSHConfig struct {
	Name           string        // host name from the spec, used in every error message
	Address        string        // host name or IP
	Port           int           // 0 means 22
	User           string        // "" means root
	KeyFiles       []string      // private keys (ed25519/rsa/ecdsa, unencrypted)
	UseAgent       bool          // also offer the keys of the agent at SSH_AUTH_SOCK
	KnownHostsFile string        // "" means ~/.ssh/known_hosts
	HostKeyCheck   string        // "strict" (default) or "accept-new"
	Jump           *SSHConfig    // optional jump host
	Sudo           bool          // when User != root: wrap commands in `sudo -n sh -c ...`
	ConnectTimeout time.Duration // dial and handshake; 0 means DefaultConnectTimeout
	CommandTimeout time.Duration // per command, 0 = none
	KeepAlive      time.Duration // keepalive interval; 0 means DefaultKeepAlive; 3 missed replies close the connection
	MaxSessions    int           // concurrent sessions on the connection; 0 means DefaultMaxSessions
}

func (c SSHConfig) addr() string {
	port := c.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(c.Address, strconv.Itoa(port))
}

func (c SSHConfig) user() string {
	if c.User == "" {
		return "root"
	}
	return c.User
}

// SSH is one reused connection to a host. It is safe for concurrent use;
// concurrent sessions are bounded by MaxSessions.
type SSH struct {
	cfg    SSHConfig
	addr   string
	log    *slog.Logger
	client *ssh.Client
	jump   *SSH
	sem    chan struct{}
	sudo   bool // wrap commands in sudo
	admin  bool // commands run as root (root user or sudo)
	done   chan struct{}

	mu       sync.Mutex
	sftp     *sftp.Client
	closeErr error
	closed   sync.Once
}

// DialSSH connects and authenticates to a host, checks its key against
// known_hosts, and, when sudo is asked for, checks that sudo works without a
// password. The connection lives until Close; a goroutine sends keepalives
// and closes it when the host stops answering.
func DialSSH(ctx context.Context, cfg SSHConfig, log *slog.Logger) (*SSH, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Address
	}
	addr := cfg.addr()
	log = log.With("host", cfg.Name)
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.KnownHostsFile == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("%s: no known_hosts file given and no home directory: %w", cfg.Name, err)
		}
		cfg.KnownHostsFile = path.Join(home, ".ssh", "known_hosts")
	}

	checker, err := newHostKeyChecker(cfg.Name, cfg.KnownHostsFile, cfg.HostKeyCheck)
	if err != nil {
		return nil, err
	}
	auth, authNote, closeAgent, err := authMethods(cfg)
	if err != nil {
		return nil, err
	}
	defer closeAgent()

	var jump *SSH
	if cfg.Jump != nil {
		jc := *cfg.Jump
		if jc.KnownHostsFile == "" {
			jc.KnownHostsFile = cfg.KnownHostsFile
		}
		if jc.ConnectTimeout == 0 {
			jc.ConnectTimeout = cfg.ConnectTimeout
		}
		jc.Sudo = false
		jump, err = DialSSH(ctx, jc, log)
		if err != nil {
			return nil, fmt.Errorf("%s: through jump host: %w", cfg.Name, err)
		}
	}
	fail := func(err error) (*SSH, error) {
		if jump != nil {
			jump.Close()
		}
		return nil, err
	}

	dctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	if jump != nil {
		conn, err = jump.client.DialContext(dctx, "tcp", addr)
		if err != nil {
			err = fmt.Errorf("through jump host %s (%s): %w", jump.cfg.Name, jump.addr, err)
		}
	} else {
		conn, err = (&net.Dialer{KeepAlive: cfg.KeepAlive}).DialContext(dctx, "tcp", addr)
	}
	if err != nil {
		return fail(unreachable(cfg.Name, addr, ctx, err))
	}
	// The handshake is bounded by the same deadline, and by ctx.
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	conf := &ssh.ClientConfig{
		User:              cfg.user(),
		Auth:              auth,
		HostKeyCallback:   checker.check,
		HostKeyAlgorithms: checker.algorithms(addr),
		Timeout:           cfg.ConnectTimeout,
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, conf)
	if !stop() { // the deadline or ctx closed the connection mid-handshake
		if err == nil {
			cc.Close()
		}
		err = fmt.Errorf("ssh handshake: %w", dctx.Err())
	}
	if err != nil {
		conn.Close()
		switch {
		case checker.failure != nil:
			return fail(checker.failure)
		case strings.Contains(err.Error(), "unable to authenticate"):
			return fail(hostErr(cfg.Name, addr, ErrAuth, nil, "user %q: the server refused every key offered%s", cfg.user(), authNote))
		default:
			return fail(unreachable(cfg.Name, addr, ctx, err))
		}
	}
	s := &SSH{
		cfg:    cfg,
		addr:   addr,
		log:    log,
		client: ssh.NewClient(cc, chans, reqs),
		jump:   jump,
		sem:    make(chan struct{}, cfg.MaxSessions),
		sudo:   cfg.Sudo && cfg.user() != "root",
		admin:  cfg.Sudo || cfg.user() == "root",
		done:   make(chan struct{}),
	}
	go func() { // exits when the connection ends, for whatever reason
		s.client.Wait()
		close(s.done)
	}()
	go s.keepAlive() // exits when s.done is closed
	if s.sudo {
		res, err := s.run(ctx, "true", nil, nil, false) // wrapped in sudo -n
		if err == nil && res.ExitCode != 0 {
			err = sudoError(s.cfg.Name, s.addr, s.cfg.user(), res)
		}
		if err != nil {
			s.Close()
			return nil, err
		}
	}
	log.Debug("connected", "addr", addr, "user", cfg.user())
	return s, nil
}

func unreachable(name, addr string, ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return hostErr(name, addr, ErrUnreachable, ctx.Err(), "connecting")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return hostErr(name, addr, ErrUnreachable, err, "connect timeout")
	}
	return hostErr(name, addr, ErrUnreachable, err, "")
}

// authMethods loads the key files and the agent. authNote is appended to an
// ErrAuth message (it names keys that could not be used).
func authMethods(cfg SSHConfig) (auth []ssh.AuthMethod, authNote string, closeAgent func(), err error) {
	closeAgent = func() {}
	var signers []ssh.Signer
	var notes []string
	for _, f := range cfg.KeyFiles {
		pem, err := os.ReadFile(f)
		if err != nil {
			return nil, "", closeAgent, hostErr(cfg.Name, cfg.addr(), ErrAuth, err, "reading key file")
		}
		signer, err := ssh.ParsePrivateKey(pem)
		var pme *ssh.PassphraseMissingError
		switch {
		case errors.As(err, &pme):
			notes = append(notes, fmt.Sprintf("key %s is passphrase-protected: load it into ssh-agent (ssh-add %s) and set use_agent = true", f, f))
			continue
		case err != nil:
			return nil, "", closeAgent, hostErr(cfg.Name, cfg.addr(), ErrAuth, err, "parsing key file %s", f)
		}
		signers = append(signers, signer)
	}
	var agentSigners func() ([]ssh.Signer, error)
	if cfg.UseAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" {
			notes = append(notes, "use_agent is set but SSH_AUTH_SOCK is empty")
		} else if c, err := net.Dial("unix", sock); err != nil {
			notes = append(notes, fmt.Sprintf("cannot reach ssh-agent at %s: %v", sock, err))
		} else {
			closeAgent = func() { c.Close() }
			agentSigners = agent.NewClient(c).Signers // never forwarded
		}
	}
	if len(notes) > 0 {
		authNote = " (" + strings.Join(notes, "; ") + ")"
	}
	if len(signers) == 0 && agentSigners == nil {
		closeAgent()
		return nil, "", func() {}, hostErr(cfg.Name, cfg.addr(), ErrAuth, nil, "no usable key: give key_files or use_agent%s", authNote)
	}
	auth = []ssh.AuthMethod{ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		all := append([]ssh.Signer(nil), signers...)
		if agentSigners != nil {
			if as, err := agentSigners(); err == nil {
				all = append(all, as...)
			}
		}
		return all, nil
	})}
	return auth, authNote, closeAgent, nil
}

func (s *SSH) keepAlive() {
	t := time.NewTicker(s.cfg.KeepAlive)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		reply := make(chan error, 1)
		go func() { // exits when the request is answered or the connection closes
			_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
			reply <- err
		}()
		select {
		case <-s.done:
			return
		case err := <-reply:
			if err != nil {
				s.log.Warn("keepalive failed, closing connection", "err", err)
				s.client.Close()
				return
			}
			missed = 0
		case <-time.After(s.cfg.KeepAlive):
			missed++
			if missed >= 3 {
				s.log.Warn("host stopped answering keepalives, closing connection")
				s.client.Close()
				return
			}
		}
	}
}

// Name is the host's name in the spec.
func (s *SSH) Name() string { return s.cfg.Name }

// Alive reports whether the connection is still up.
func (s *SSH) Alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// Close closes the SFTP client, the connection, and the jump host's.
func (s *SSH) Close() error {
	s.closed.Do(func() {
		s.mu.Lock()
		if s.sftp != nil {
			s.sftp.Close()
		}
		s.mu.Unlock()
		if err := s.client.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.closeErr = hostErr(s.cfg.Name, s.addr, nil, err, "closing connection")
		}
		// Once Close returns the connection is gone: Alive says so and
		// waiting callers see it (client.Wait ends once the transport is
		// closed).
		<-s.done
		if s.jump != nil {
			s.jump.Close()
		}
	})
	return s.closeErr
}

func (s *SSH) acquire(ctx context.Context) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-s.done:
		return s.lost(nil)
	case <-ctx.Done():
		return hostErr(s.cfg.Name, s.addr, nil, ctx.Err(), "waiting for a free SSH session")
	}
}

func (s *SSH) release() { <-s.sem }

func (s *SSH) lost(cause error) error {
	return hostErr(s.cfg.Name, s.addr, ErrUnreachable, cause, "connection lost")
}

// newSession opens a session. sshd frees a closed session's slot a moment
// after the client sees it closed, so a refusal to open one is retried for
// a while (the semaphore keeps us within MaxSessions otherwise).
func (s *SSH) newSession(ctx context.Context) (*ssh.Session, error) {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		sess, err := s.client.NewSession()
		if err == nil {
			return sess, nil
		}
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || attempt >= 40 {
			return nil, s.lost(err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, hostErr(s.cfg.Name, s.addr, nil, ctx.Err(), "opening a session (%v)", err)
		case <-s.done:
			return nil, s.lost(err)
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// wrap turns a command line into what the session runs: `sh -c` always,
// under `sudo -n` when the user is not root and sudo is on, behind a
// wrapper that first reports the command's process group on stderr.
func (s *SSH) wrap(cmd string) string {
	w := "sh -c " + Quote(pgidWrapper) + " sh " + Quote(cmd)
	if s.sudo {
		w = "sudo -n " + w
	}
	return w
}

// kill kills a cancelled command's process group from a new session.
func (s *SSH) kill(pgid int) {
	if pgid <= 1 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sess, err := s.newSession(ctx)
	if err != nil {
		return
	}
	defer sess.Close()
	cmd := "kill -KILL -- -" + strconv.Itoa(pgid)
	if s.sudo {
		cmd = "sudo -n " + cmd
	}
	done := make(chan struct{})
	go func() { sess.Run(cmd); close(done) }() // ends with the session
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// commandContext bounds one command or file transfer by CommandTimeout, so
// that a stalled host never holds an apply forever.
func (s *SSH) commandContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.CommandTimeout > 0 {
		return context.WithTimeout(ctx, s.cfg.CommandTimeout)
	}
	return context.WithCancel(ctx)
}

// Run runs cmd with `sh -c` (as root through sudo when configured). A
// non-zero exit is a Result; an error means the command could not run, or
// was killed because ctx ended or CommandTimeout passed.
func (s *SSH) Run(ctx context.Context, cmd string, stdin io.Reader) (Result, error) {
	return s.RunStreaming(ctx, cmd, stdin, nil)
}

// RunStreaming is Run that also calls stderrLine, when not nil, with each
// line of the command's standard error as it comes (the Result still holds
// all of it), from one goroutine at a time and never once it returned.
func (s *SSH) RunStreaming(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(line string)) (Result, error) {
	return s.run(ctx, cmd, stdin, stderrLine, true)
}

func (s *SSH) run(ctx context.Context, cmd string, stdin io.Reader, stderrLine func(string), checkSudo bool) (Result, error) {
	ctx, cancel := s.commandContext(ctx)
	defer cancel()
	if err := s.acquire(ctx); err != nil {
		return Result{}, err
	}
	defer s.release()
	sess, err := s.newSession(ctx)
	if err != nil {
		return Result{}, err
	}
	defer sess.Close()
	var stdout, stderr bytes.Buffer
	errW, endLines := teeLines(&stderr, stderrLine)
	defer endLines()
	pw := &pgidWriter{w: errW}
	sess.Stdout, sess.Stderr = &stdout, pw
	if stdin != nil {
		sess.Stdin = stdin
	}
	start := time.Now()
	if err := sess.Start(s.wrap(cmd)); err != nil {
		return Result{}, s.lost(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sess.Wait() }() // exits when the session ends; Close below ends it
	select {
	case err = <-waited:
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL) // refused by sshd for root sessions
		sess.Close()
		s.kill(pw.group())
		what := "cancelled"
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			what = "timed out"
		}
		s.log.Warn("command "+what, "cmd", shorten(cmd), "after", time.Since(start).Round(time.Millisecond))
		return Result{}, hostErr(s.cfg.Name, s.addr, nil, ctx.Err(), "command %q %s after %s", shorten(cmd), what, time.Since(start).Round(time.Millisecond))
	}
	pw.flush()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var ee *ssh.ExitError
	var em *ssh.ExitMissingError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ee.Signal() != "" && ee.ExitStatus() == 0 {
			res.ExitCode = 128 + 9
		} else {
			res.ExitCode = ee.ExitStatus()
		}
	case errors.As(err, &em):
		return res, s.lost(err)
	default:
		return res, s.lost(err)
	}
	if checkSudo && s.sudo && isSudoFailure(res) {
		return res, sudoError(s.cfg.Name, s.addr, s.cfg.user(), res)
	}
	s.log.Debug("ran", "cmd", shorten(cmd), "exit", res.ExitCode, "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

func shorten(cmd string) string {
	if len(cmd) > 120 {
		return cmd[:117] + "..."
	}
	return cmd
}

func isSudoFailure(res Result) bool {
	if res.ExitCode == 0 {
		return false
	}
	e := string(res.Stderr)
	return strings.Contains(e, "sudo: a password is required") ||
		strings.Contains(e, "is not in the sudoers file") ||
		strings.Contains(e, "is not allowed to run sudo") ||
		strings.Contains(e, "sudo: a terminal is required") ||
		(res.ExitCode == 127 && strings.Contains(e, "sudo: not found")) ||
		(res.ExitCode == 127 && strings.Contains(e, "sudo: command not found"))
}

func sudoError(name, addr, user string, res Result) error {
	msg := strings.TrimSpace(string(res.Stderr))
	if msg == "" {
		msg = fmt.Sprintf("exit status %d", res.ExitCode)
	}
	return hostErr(name, addr, ErrSudo, nil, "user %q cannot run `sudo -n` without a password (%s); allow it in /etc/sudoers.d (%s ALL=(ALL) NOPASSWD: ALL) or connect as root", user, lastLines(msg, 3), user)
}

func (s *SSH) sftpClient() (*sftp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sftp != nil {
		return s.sftp, nil
	}
	// The SFTP subsystem holds one session for the connection's life.
	select {
	case s.sem <- struct{}{}:
	case <-s.done:
		return nil, s.lost(nil)
	}
	c, err := sftp.NewClient(s.client)
	if err != nil {
		s.release()
		return nil, hostErr(s.cfg.Name, s.addr, nil, err, "starting SFTP")
	}
	s.sftp = c
	return c, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// PutFile uploads content over SFTP to a temporary file (mode 0600 before
// any byte is written), then, as root, sets owner, group and mode and
// renames it over path. For a non-root user with sudo the upload lands in
// the user's home (or /tmp) and is copied next to path with umask 077 by
// sudo before the rename, so no copy of the content is ever readable by
// others, and path is replaced atomically.
func (s *SSH) PutFile(ctx context.Context, p string, content io.Reader, attrs FileAttrs) error {
	fail := func(err error, what string) error {
		return hostErr(s.cfg.Name, s.addr, nil, err, "put %s: %s", p, what)
	}
	if !path.IsAbs(p) {
		return fail(errors.New("path must be absolute"), "bad path")
	}
	ctx, cancel := s.commandContext(ctx)
	defer cancel()
	c, err := s.sftpClient()
	if err != nil {
		return err
	}
	dir, base := path.Split(p)
	tmp := path.Join(dir, "."+base+".pgherd-"+randomSuffix())
	upload := tmp
	if s.sudo {
		upload = ".pgherd-upload-" + randomSuffix() // relative: the user's home
	}
	f, err := c.OpenFile(upload, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if err != nil && s.sudo {
		upload = "/tmp/.pgherd-upload-" + randomSuffix()
		f, err = c.OpenFile(upload, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	}
	if err != nil {
		return fail(err, "creating temporary file")
	}
	cleanup := func() { c.Remove(upload) }
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		cleanup()
		return fail(err, "chmod temporary file")
	}
	// Closing f ends a transfer stuck on the host; reading content
	// through ctx ends one that would not stop on its own.
	stop := context.AfterFunc(ctx, func() { f.Close() })
	_, err = io.Copy(f, ctxReader{ctx, content})
	if !stop() {
		err = ctx.Err()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		cleanup()
		return fail(err, "uploading")
	}
	mode := attrs.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	var script strings.Builder
	script.WriteString("set -e\n")
	if upload != tmp {
		fmt.Fprintf(&script, "trap 'rm -f %s' EXIT\n", Quote(upload))
		fmt.Fprintf(&script, "(umask 077; cat %s > %s)\n", Quote(upload), Quote(tmp))
	}
	fmt.Fprintf(&script, "if ! { ")
	if s.admin || attrs.Owner != "" || attrs.Group != "" {
		fmt.Fprintf(&script, "chown %s %s && ", Quote(ownerGroup(attrs)), Quote(tmp))
	}
	fmt.Fprintf(&script, "chmod %o %s && mv -f %s %s; }; then rm -f %s; exit 1; fi\n", mode, Quote(tmp), Quote(tmp), Quote(p), Quote(tmp))
	res, err := s.Run(ctx, script.String(), nil)
	if err == nil {
		err = res.Err(s.cfg.Name, "install "+p)
	}
	if err != nil {
		cleanup()
		return err
	}
	return nil
}

func ownerGroup(a FileAttrs) string {
	o, g := a.Owner, a.Group
	if o == "" {
		o = "root"
	}
	if g == "" {
		g = "root"
	}
	return o + ":" + g
}

// notFoundExit is the exit status GetFile's script uses for a missing file.
const notFoundExit = 44

// GetFile reads a whole file: over SFTP as root, with `cat` through sudo
// otherwise. A missing file is an error wrapping fs.ErrNotExist.
func (s *SSH) GetFile(ctx context.Context, p string) ([]byte, error) {
	ctx, cancel := s.commandContext(ctx)
	defer cancel()
	if s.sudo {
		q := Quote(p)
		res, err := s.Run(ctx, fmt.Sprintf("[ -e %s ] || [ -L %s ] || exit %d; exec cat -- %s", q, q, notFoundExit, q), nil)
		if err != nil {
			return nil, err
		}
		if res.ExitCode == notFoundExit {
			return nil, hostErr(s.cfg.Name, s.addr, nil, fs.ErrNotExist, "get %s", p)
		}
		if err := res.Err(s.cfg.Name, "cat "+p); err != nil {
			return nil, err
		}
		return res.Stdout, nil
	}
	c, err := s.sftpClient()
	if err != nil {
		return nil, err
	}
	f, err := c.Open(p)
	if err != nil {
		return nil, hostErr(s.cfg.Name, s.addr, nil, err, "get %s", p)
	}
	defer f.Close()
	stop := context.AfterFunc(ctx, func() { f.Close() })
	b, err := io.ReadAll(f)
	if !stop() {
		err = ctx.Err()
	}
	if err != nil {
		return nil, hostErr(s.cfg.Name, s.addr, nil, err, "get %s", p)
	}
	return b, nil
}

// Lock takes an exclusive flock on path ("" means DefaultLockPath) on the
// host and holds it until unlock is called or the connection dies: a shell
// on the host holds the lock and waits for its stdin to close, so the kernel
// releases it whenever that shell goes away. The lock file records who holds
// it; if it is already held, the error wraps ErrLocked and says by whom.
func (s *SSH) Lock(ctx context.Context, p string) (unlock func() error, err error) {
	if p == "" {
		p = DefaultLockPath
	}
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	released := false
	defer func() {
		if !released {
			s.release()
		}
	}()
	sess, err := s.newSession(ctx)
	if err != nil {
		return nil, err
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		sess.Close()
		return nil, s.lost(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		sess.Close()
		return nil, s.lost(err)
	}
	var stderr bytes.Buffer
	pw := &pgidWriter{w: &stderr}
	sess.Stderr = pw
	if err := sess.Start(s.wrap(lockScript(p, holderInfo()))); err != nil {
		sess.Close()
		return nil, s.lost(err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	r := bufio.NewReader(stdout)
	first, rerr := r.ReadString('\n')
	if !stop() {
		sess.Close()
		return nil, hostErr(s.cfg.Name, s.addr, nil, ctx.Err(), "taking lock %s", p)
	}
	if strings.TrimSpace(first) == "ok" {
		released = true
		var once sync.Once
		var uerr error
		return func() error {
			once.Do(func() {
				defer s.release()
				stdin.Close()
				werr := sess.Wait()
				sess.Close()
				var ee *ssh.ExitError
				if werr != nil && !errors.As(werr, &ee) {
					uerr = hostErr(s.cfg.Name, s.addr, nil, werr, "releasing lock %s (the kernel releases it when the connection ends)", p)
				}
			})
			return uerr
		}, nil
	}
	rest, _ := io.ReadAll(r)
	werr := sess.Wait()
	sess.Close()
	pw.flush()
	res := Result{Stderr: stderr.Bytes()}
	var ee *ssh.ExitError
	if errors.As(werr, &ee) {
		res.ExitCode = ee.ExitStatus()
	}
	if strings.TrimSpace(first) == "locked" {
		return nil, lockedError(s.cfg.Name, s.addr, p, string(rest))
	}
	if s.sudo && isSudoFailure(res) {
		return nil, sudoError(s.cfg.Name, s.addr, s.cfg.user(), res)
	}
	cause := rerr
	if werr != nil {
		cause = werr
	}
	return nil, hostErr(s.cfg.Name, s.addr, nil, cause, "taking lock %s: %s", p, strings.TrimSpace(stderr.String()))
}
