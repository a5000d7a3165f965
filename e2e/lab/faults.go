package lab

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// Exec runs a command in a host through docker exec, as root, and returns
// its standard output. A non-zero exit is a *CommandError with the
// command's standard error.
func (l *Lab) Exec(ctx context.Context, host string, cmd ...string) (string, error) {
	h, err := l.host(host)
	if err != nil {
		return "", err
	}
	if len(cmd) == 0 {
		return "", fmt.Errorf("exec on %s: no command", h.Name)
	}
	return docker(ctx, nil, append([]string{"exec", h.Container}, cmd...)...)
}

// Kill kills a host's container at once, as a power loss would (docker
// kill). Its disk survives; Start boots it again.
func (l *Lab) Kill(ctx context.Context, host string) error {
	return l.simple(ctx, host, "kill")
}

// Start boots a stopped or killed host and waits until its sshd answers.
func (l *Lab) Start(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, nil, "start", h.Container); err != nil {
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	if err := l.waitSSH(ctx, h); err != nil {
		return fmt.Errorf("start %s: %w", h.Name, err)
	}
	return nil
}

// Pause freezes every process of a host (docker pause), as a VM stall
// would; its network stays up but nothing answers.
func (l *Lab) Pause(ctx context.Context, host string) error {
	return l.simple(ctx, host, "pause")
}

// Unpause thaws a paused host.
func (l *Lab) Unpause(ctx context.Context, host string) error {
	return l.simple(ctx, host, "unpause")
}

// Disconnect cuts a host off the lab network: it can reach no other host
// and none can reach it. Connect undoes it.
func (l *Lab) Disconnect(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, nil, "network", "disconnect", l.network(), h.Container); err != nil {
		return fmt.Errorf("disconnect %s: %w", h.Name, err)
	}
	return nil
}

// Connect puts a disconnected host back on the lab network with its own
// address. Connecting a connected host is not an error.
func (l *Lab) Connect(ctx context.Context, host string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	_, err = docker(ctx, nil, "network", "connect", "--ip", h.Address, l.network(), h.Container)
	var ce *CommandError
	if errors.As(err, &ce) && strings.Contains(ce.Stderr, "already exists") {
		return nil
	}
	if err != nil {
		return fmt.Errorf("connect %s: %w", h.Name, err)
	}
	return nil
}

func (l *Lab) simple(ctx context.Context, host, verb string) error {
	h, err := l.host(host)
	if err != nil {
		return err
	}
	if _, err := docker(ctx, nil, verb, h.Container); err != nil {
		return fmt.Errorf("%s %s: %w", verb, h.Name, err)
	}
	return nil
}
