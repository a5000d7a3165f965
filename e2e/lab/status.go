package lab

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// HostStatus is what Status sees of one host.
type HostStatus struct {
	Host
	// State is the container's state: "running", "paused", "exited",
	// "created", … or "missing" when there is no container.
	State string
	// Connected reports whether the host is attached to the lab network
	// (false after Disconnect).
	Connected bool
	// SSH reports whether the host's sshd answered from this machine.
	SSH bool
}

// Status reports the state of every host of the lab, node1 first. It
// changes nothing.
func (l *Lab) Status(ctx context.Context) ([]HostStatus, error) {
	if err := checkDocker(ctx); err != nil {
		return nil, err
	}
	out := make([]HostStatus, len(l.hosts))
	err := l.each(ctx, func(ctx context.Context, i int, h Host) error {
		st, connected, err := l.inspectHost(ctx, h)
		if err != nil {
			return err
		}
		s := HostStatus{Host: h, State: st, Connected: connected}
		if st == "running" && connected {
			s.SSH = sshAnswers(ctx, h.Address, 2*time.Second)
		}
		out[i] = s
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s: status: %w", l.name, err)
	}
	return out, nil
}

// Down removes the lab's containers and network, found by their labels
// whatever the number of hosts, and its known_hosts, lab.hcl and lab.json.
// It keeps the images and the SSH key. Taking down a lab that is not up is
// not an error.
func (l *Lab) Down(ctx context.Context) error {
	if err := checkDocker(ctx); err != nil {
		return err
	}
	unlock, err := l.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	out, err := docker(ctx, nil, "ps", "-aq", "--filter", "label="+labelLab+"="+l.name)
	if err != nil {
		return fmt.Errorf("lab %s: list containers: %w", l.name, err)
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		l.log.Info("removing hosts", "count", len(ids))
		if _, err := docker(ctx, nil, append([]string{"rm", "-f", "-v"}, ids...)...); err != nil {
			return fmt.Errorf("lab %s: remove containers: %w", l.name, err)
		}
	}
	out, err = docker(ctx, nil, "network", "ls", "-q", "--filter", "label="+labelLab+"="+l.name)
	if err != nil {
		return fmt.Errorf("lab %s: list networks: %w", l.name, err)
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		if _, err := docker(ctx, nil, append([]string{"network", "rm"}, ids...)...); err != nil {
			return fmt.Errorf("lab %s: remove network: %w", l.name, err)
		}
	}
	if err := l.removeDisks(ctx); err != nil {
		return fmt.Errorf("lab %s: %w", l.name, err)
	}
	for _, p := range []string{l.KnownHostsFile(), l.SpecFile(), l.stateFile()} {
		if err := removeIfExists(p); err != nil {
			return fmt.Errorf("lab %s: %w", l.name, err)
		}
	}
	l.log.Info("lab is down")
	return nil
}
