package executors

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key check modes for SSHConfig.HostKeyCheck.
const (
	HostKeyStrict    = "strict"
	HostKeyAcceptNew = "accept-new"
)

// hostKeyChecker verifies a host's key against a known_hosts file, and
// remembers why it refused one so that the dial error can say so.
type hostKeyChecker struct {
	name, file, mode string
	cb               ssh.HostKeyCallback // nil when the file does not exist
	failure          error               // set by check, a *HostError
}

func newHostKeyChecker(name, file, mode string) (*hostKeyChecker, error) {
	switch mode {
	case "", HostKeyStrict:
		mode = HostKeyStrict
	case HostKeyAcceptNew:
	default:
		return nil, fmt.Errorf("%s: host_key_check %q: want %q or %q", name, mode, HostKeyStrict, HostKeyAcceptNew)
	}
	h := &hostKeyChecker{name: name, file: file, mode: mode}
	cb, err := knownhosts.New(file)
	switch {
	case err == nil:
		h.cb = cb
	case errors.Is(err, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("%s: reading known_hosts: %w", name, err)
	}
	return h, nil
}

// algorithms returns the host key algorithms known_hosts holds for addr, so
// that the server is asked for a key type we can check (else a host known by
// its ed25519 key that offers rsa first would look like a changed key).
func (h *hostKeyChecker) algorithms(addr string) []string {
	if h.cb == nil {
		return nil
	}
	err := h.cb(addr, fakeAddr(addr), probeKey{})
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, k := range ke.Want {
		for _, a := range algosForKeyType(k.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algosForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

func (h *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	err := h.verify(hostname, remote, key)
	if err != nil {
		h.failure = err
	}
	return err
}

func (h *hostKeyChecker) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	fp := ssh.FingerprintSHA256(key)
	var err error
	if h.cb != nil {
		err = h.cb(hostname, remote, key)
		if err == nil {
			return nil
		}
	}
	var ke *knownhosts.KeyError
	var re *knownhosts.RevokedError
	switch {
	case errors.As(err, &re):
		return hostErr(h.name, hostname, ErrHostKeyMismatch, nil, "host key %s is marked @revoked in %s:%d", fp, re.Revoked.Filename, re.Revoked.Line)
	case errors.As(err, &ke) && len(ke.Want) > 0:
		w := ke.Want[0]
		return hostErr(h.name, hostname, ErrHostKeyMismatch, nil,
			"the host now presents %s key %s but %s line %d records a different key; if the host was reinstalled on purpose, remove that line (ssh-keygen -R %s -f %s) and connect again, otherwise someone may be intercepting the connection",
			key.Type(), fp, w.Filename, w.Line, knownhosts.Normalize(hostname), h.file)
	case err != nil && !errors.As(err, &ke):
		return hostErr(h.name, hostname, ErrHostKeyMismatch, err, "checking the host key")
	}
	// Unknown host.
	if h.mode != HostKeyAcceptNew {
		return hostErr(h.name, hostname, ErrUnknownHost, nil,
			"%s key %s is not in %s; set host_key_check = %q to record it on first use, or add it with: ssh-keyscan -p PORT HOST >> %s",
			key.Type(), fp, h.file, HostKeyAcceptNew, h.file)
	}
	if err := appendKnownHost(h.file, hostname, key); err != nil {
		return hostErr(h.name, hostname, ErrUnknownHost, err, "recording the new host key in %s", h.file)
	}
	return nil
}

func appendKnownHost(file, hostname string, key ssh.PublicKey) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key) + "\n"
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// probeKey is a key of a type no host has: checking it returns the keys
// known_hosts records for an address.
type probeKey struct{}

func (probeKey) Type() string                        { return "pgherd-probe" }
func (probeKey) Marshal() []byte                     { return []byte("pgherd-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }
func (probeKey) String() string                      { return "pgherd-probe" }

// fakeAddr is a placeholder remote address: knownhosts checks the host name
// it is given, and only needs the remote address to be TCP.
func fakeAddr(string) net.Addr { return &net.TCPAddr{} }
