package modules

import "errors"

var (
	// ErrProbe is returned by Diff when the probe itself failed, so there
	// is no fact to compare with.
	ErrProbe = errors.New("probe failed")
	// ErrInvalid is returned by Diff when the resource's arguments are
	// invalid (a bad mode, a package name apt would read as an option).
	ErrInvalid = errors.New("invalid resource")
	// ErrConflict is returned by Diff when the host holds something the
	// resource must not touch (a directory where a file is wanted).
	ErrConflict = errors.New("conflicting object on host")
	// ErrRefused is returned by Diff when a pre-flight check refuses a
	// procedure (a migration) as the host is; the error says what to fix.
	ErrRefused = errors.New("refused by the pre-flight checks")
)
