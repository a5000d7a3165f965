package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// Errors a caller may want to tell apart with errors.Is.
var (
	// ErrDockerMissing means the docker CLI is not installed.
	ErrDockerMissing = errors.New("docker is not installed (install it with `apt-get install docker.io`)")
	// ErrDockerNotRunning means the docker CLI cannot reach an engine.
	ErrDockerNotRunning = errors.New("the Docker engine is not running or not reachable (start it with `systemctl start docker`, or run `dockerd &` where there is no systemd)")
	// ErrDebootstrapMissing means the base image must be built but
	// debootstrap is not installed.
	ErrDebootstrapMissing = errors.New("debootstrap is not installed (install it with `apt-get install debootstrap`)")
	// ErrNotRoot means the base image must be built but debootstrap needs
	// root.
	ErrNotRoot = errors.New("building the lab's base image needs root (debootstrap): run once as root, or have root build it")
	// ErrSubnetConflict means the lab's subnet overlaps a network that
	// already exists.
	ErrSubnetConflict = errors.New("subnet conflict")
	// ErrUnknownHost means a host name that is not one of the lab's hosts.
	ErrUnknownHost = errors.New("unknown lab host")
	// ErrNoSuchObject means docker knows no container, network or image of
	// that name.
	ErrNoSuchObject = errors.New("no such docker object")
)

// CommandError is a docker command that ran and failed.
type CommandError struct {
	Args   []string
	Code   int // exit status, -1 when it did not exit normally
	Stderr string
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("docker %s: exit status %d", strings.Join(e.Args, " "), e.Code)
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

// Is lets errors.Is(err, ErrNoSuchObject) match docker's "No such ..."
// answers.
func (e *CommandError) Is(target error) bool {
	if target != ErrNoSuchObject {
		return false
	}
	s := strings.ToLower(e.Stderr)
	return strings.Contains(s, "no such") || strings.Contains(s, "not found")
}

// docker runs the docker CLI with args and returns its standard output. A
// non-zero exit is a *CommandError carrying docker's standard error.
func docker(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return dockerEnv(ctx, nil, stdin, args...)
}

func dockerEnv(ctx context.Context, env []string, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	if env != nil {
		cmd.Env = append(cmd.Environ(), env...)
	}
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			if ctx.Err() != nil {
				return stdout.String(), fmt.Errorf("docker %s: %w", strings.Join(args, " "), ctx.Err())
			}
			return stdout.String(), &CommandError{Args: args, Code: ee.ExitCode(), Stderr: stderr.String()}
		}
		if errors.Is(err, exec.ErrNotFound) {
			return "", ErrDockerMissing
		}
		return "", fmt.Errorf("docker %s: %w", strings.Join(args, " "), err)
	}
	return stdout.String(), nil
}

// checkDocker makes sure the docker CLI exists and reaches an engine.
func checkDocker(ctx context.Context) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return ErrDockerMissing
	}
	if _, err := docker(ctx, nil, "version", "--format", "{{.Server.Version}}"); err != nil {
		if ctx.Err() != nil {
			return err
		}
		return fmt.Errorf("%w: %w", ErrDockerNotRunning, err)
	}
	return nil
}
