package executors

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error an executor returns for a failure to reach or
// use a host wraps one of these (test with errors.Is) and starts with the
// host's name.
var (
	// ErrUnreachable: the host could not be dialled (refused, timeout, no
	// route) or the connection was lost.
	ErrUnreachable = errors.New("host unreachable")
	// ErrAuth: every authentication method was refused.
	ErrAuth = errors.New("authentication failed")
	// ErrHostKeyMismatch: the host presented a key that differs from the
	// one recorded in known_hosts.
	ErrHostKeyMismatch = errors.New("host key mismatch")
	// ErrUnknownHost: strict host key checking and the host is not in
	// known_hosts.
	ErrUnknownHost = errors.New("unknown host key")
	// ErrSudo: sudo refused to run a command (a password is required, the
	// user is not in sudoers, or sudo is missing).
	ErrSudo = errors.New("sudo refused")
	// ErrLocked: the host lock is held by another pgherd.
	ErrLocked = errors.New("host is locked")
)

// HostError is a failure tied to one host. It wraps a sentinel (Kind) and,
// when there is one, the underlying cause (a net error, a context error).
type HostError struct {
	Host   string // the host's name in the spec
	Addr   string // host:port dialled, may be empty
	Kind   error  // one of the sentinels above, may be nil
	Detail string // human explanation and fix hint
	Cause  error  // underlying error, may be nil
}

func (e *HostError) Error() string {
	msg := e.Host
	if e.Addr != "" {
		msg += " (" + e.Addr + ")"
	}
	if e.Kind != nil {
		msg += ": " + e.Kind.Error()
	}
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

// Unwrap gives errors.Is and errors.As both the sentinel and the cause.
func (e *HostError) Unwrap() []error {
	var errs []error
	if e.Kind != nil {
		errs = append(errs, e.Kind)
	}
	if e.Cause != nil {
		errs = append(errs, e.Cause)
	}
	return errs
}

func hostErr(host, addr string, kind error, cause error, format string, args ...any) *HostError {
	return &HostError{Host: host, Addr: addr, Kind: kind, Cause: cause, Detail: fmt.Sprintf(format, args...)}
}
