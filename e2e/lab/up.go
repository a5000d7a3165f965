package lab

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

const (
	// parallelStarts bounds how many containers start at once.
	parallelStarts = 6
	// bootTimeout bounds the wait for one host's sshd after its start.
	bootTimeout = 3 * time.Minute
	// inotifyThreshold is the host count past which Up raises
	// fs.inotify.max_user_instances (systemd hosts use several each).
	inotifyThreshold = 20
	inotifyInstances = 1024
	inotifySysctl    = "/proc/sys/fs/inotify/max_user_instances"
)

// Up brings the lab up and returns it. Config fields left unset are taken
// from the lab's state file, as Open does, else from the defaults. Up is
// idempotent: it builds the
// images when they are missing or their recipe changed, creates the
// network, starts the hosts that are not running (in parallel, boundedly),
// waits until each host's sshd answers, installs the lab's public key for
// root, writes known_hosts from each host's key read over docker exec (a
// trusted channel), removes the hosts past Config.Hosts that a larger lab
// left, and writes lab.hcl and lab.json to the state directory.
func Up(ctx context.Context, cfg Config) (*Lab, error) {
	l, err := Open(cfg)
	if err != nil {
		return nil, err
	}
	if err := checkDocker(ctx); err != nil {
		return nil, err
	}
	unlock, err := l.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := os.MkdirAll(l.dir, 0o700); err != nil {
		return nil, fmt.Errorf("lab %s: state directory: %w", l.name, err)
	}
	pub, err := l.ensureKey()
	if err != nil {
		return nil, err
	}
	if err := l.ensureImages(ctx); err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	if err := l.ensureNetwork(ctx); err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	if len(l.hosts) > inotifyThreshold {
		if err := raiseInotify(l); err != nil {
			return nil, fmt.Errorf("lab %s: %w", l.name, err)
		}
	}
	hostKeys := make([]string, len(l.hosts))
	err = l.each(ctx, func(ctx context.Context, i int, h Host) error {
		if err := l.ensureContainer(ctx, h); err != nil {
			return err
		}
		k, err := l.prepareHost(ctx, h, pub)
		hostKeys[i] = k
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	if err := l.removeExtraHosts(ctx); err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	if err := l.writeState(hostKeys); err != nil {
		return nil, fmt.Errorf("lab %s: %w", l.name, err)
	}
	l.log.Info("lab is up", "hosts", len(l.hosts), "spec", l.SpecFile())
	return l, nil
}

// each runs fn for every host, parallelStarts at a time, and joins the
// errors. It returns once every call has returned.
func (l *Lab) each(ctx context.Context, fn func(ctx context.Context, i int, h Host) error) error {
	sem := make(chan struct{}, parallelStarts)
	errs := make([]error, len(l.hosts))
	var wg sync.WaitGroup
	for i, h := range l.hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = fmt.Errorf("%s: %w", h.Name, ctx.Err())
				return
			}
			defer func() { <-sem }()
			if err := fn(ctx, i, h); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.Name, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ensureKey loads the lab's SSH key, making it on first use, and returns
// its public half in authorized_keys form.
func (l *Lab) ensureKey() (string, error) {
	b, err := os.ReadFile(l.KeyFile())
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return "", fmt.Errorf("lab %s: generate key: %w", l.name, err)
		}
		block, err := ssh.MarshalPrivateKey(priv, "pgherd-lab-"+l.name)
		if err != nil {
			return "", fmt.Errorf("lab %s: marshal key: %w", l.name, err)
		}
		b = pem.EncodeToMemory(block)
		if err := writeFileAtomic(l.KeyFile(), b, 0o600); err != nil {
			return "", fmt.Errorf("lab %s: write key: %w", l.name, err)
		}
	} else if err != nil {
		return "", fmt.Errorf("lab %s: read key: %w", l.name, err)
	}
	signer, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return "", fmt.Errorf("lab %s: key %s: %w", l.name, l.KeyFile(), err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))) + " pgherd-lab-" + l.name + "\n"
	if err := writeFileAtomic(l.KeyFile()+".pub", []byte(pub), 0o644); err != nil {
		return "", fmt.Errorf("lab %s: write public key: %w", l.name, err)
	}
	return pub, nil
}

// ensureNetwork creates the lab network, or checks the existing one has
// the lab's subnet.
func (l *Lab) ensureNetwork(ctx context.Context) error {
	out, err := docker(ctx, nil, "network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}", l.network())
	if err == nil {
		got := strings.Fields(out)
		if len(got) == 1 && got[0] == l.subnet.String() {
			return nil
		}
		return fmt.Errorf("%w: network %s exists with subnet %q, not %s: remove it (`pgherd lab down --name %s`) or choose another subnet",
			ErrSubnetConflict, l.network(), strings.Join(got, " "), l.subnet, l.name)
	}
	if !errors.Is(err, ErrNoSuchObject) {
		return fmt.Errorf("inspect network %s: %w", l.network(), err)
	}
	_, err = docker(ctx, nil, "network", "create", "--driver", "bridge",
		"--subnet", l.subnet.String(), "--label", labelLab+"="+l.name, l.network())
	if err != nil {
		var ce *CommandError
		if errors.As(err, &ce) && strings.Contains(strings.ToLower(ce.Stderr), "overlap") {
			return fmt.Errorf("%w: subnet %s overlaps a network that exists (%s); choose another subnet for lab %s: %w",
				ErrSubnetConflict, l.subnet, l.overlapping(ctx), l.name, err)
		}
		return fmt.Errorf("create network %s: %w", l.network(), err)
	}
	l.log.Info("created network", "network", l.network(), "subnet", l.subnet)
	return nil
}

// overlapping names the docker networks whose subnets overlap the lab's,
// for an error message.
func (l *Lab) overlapping(ctx context.Context) string {
	out, err := docker(ctx, nil, "network", "ls", "-q")
	if err != nil {
		return "see `docker network ls`"
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return "see `docker network ls`"
	}
	out, err = docker(ctx, nil, append([]string{"network", "inspect", "--format", "{{.Name}} {{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)...)
	if err != nil {
		return "see `docker network ls`"
	}
	var hits []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		for _, s := range f[1:] {
			if p, err := netip.ParsePrefix(s); err == nil && p.Overlaps(l.subnet) {
				hits = append(hits, f[0]+" "+s)
			}
		}
	}
	if len(hits) == 0 {
		return "maybe a host route; see `ip route`"
	}
	return "docker network " + strings.Join(hits, ", ")
}

// containerState is a container's docker state ("running", "exited",
// "paused", …) or "missing".
func containerState(ctx context.Context, container string) (string, error) {
	out, err := docker(ctx, nil, "container", "inspect", "--format", "{{.State.Status}}", container)
	if errors.Is(err, ErrNoSuchObject) {
		return "missing", nil
	}
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// inspectHost returns a host container's state, or "missing", and whether
// it is attached to the lab network.
func (l *Lab) inspectHost(ctx context.Context, h Host) (state string, connected bool, err error) {
	format := fmt.Sprintf(`{{.State.Status}} {{with index .NetworkSettings.Networks %q}}connected{{end}}`, l.network())
	out, err := docker(ctx, nil, "container", "inspect", "--format", format, h.Container)
	if errors.Is(err, ErrNoSuchObject) {
		return "missing", false, nil
	}
	if err != nil {
		return "", false, err
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return "", false, fmt.Errorf("inspect %s: empty answer", h.Container)
	}
	return f[0], len(f) > 1, nil
}

// runArgs are the docker run arguments of a host: systemd as PID 1 without
// --privileged (which fails on some engines), fixed name and address.
func (l *Lab) runArgs(h Host) []string {
	var disk []string
	if l.dataDisk != "" {
		disk = []string{"-v", l.diskDir(h) + ":" + DataMount}
	}
	return append([]string{"run", "-d",
		"--name", h.Container,
		"--hostname", h.Name,
		"--network", l.network(),
		"--ip", h.Address,
		"--label", labelLab + "=" + l.name,
		"--label", labelHost + "=" + h.Name,
		"--cap-add", "SYS_ADMIN", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
		"--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
		"--cgroupns=host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
		"--tmpfs", "/run", "--tmpfs", "/run/lock"},
		append(disk, l.hostImage(), "/sbin/init")...)
}

// ensureContainer makes the host's container run, creating it if missing.
func (l *Lab) ensureContainer(ctx context.Context, h Host) error {
	st, connected, err := l.inspectHost(ctx, h)
	if err != nil {
		return err
	}
	if st != "missing" && !connected {
		l.log.Info("reconnecting host to the lab network", "host", h.Name)
		if err := l.Connect(ctx, h.Name); err != nil {
			return err
		}
	}
	if l.dataDisk != "" && st != "running" {
		if err := l.ensureDisk(ctx, h); err != nil {
			return err
		}
	}
	switch st {
	case "running":
		return nil
	case "missing":
		l.log.Info("starting host", "host", h.Name, "address", h.Address)
		_, err = docker(ctx, nil, l.runArgs(h)...)
	case "paused":
		_, err = docker(ctx, nil, "unpause", h.Container)
	default: // created, exited, dead
		l.log.Info("restarting host", "host", h.Name, "state", st)
		_, err = docker(ctx, nil, "start", h.Container)
	}
	return err
}

// prepareHost waits for the host's sshd, installs the lab's key for root
// and returns the host's known_hosts line.
func (l *Lab) prepareHost(ctx context.Context, h Host, pub string) (string, error) {
	if err := l.waitSSH(ctx, h); err != nil {
		return "", err
	}
	install := "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys.tmp && mv /root/.ssh/authorized_keys.tmp /root/.ssh/authorized_keys"
	if _, err := docker(ctx, strings.NewReader(pub), "exec", "-i", h.Container, "sh", "-c", install); err != nil {
		return "", fmt.Errorf("install key: %w", err)
	}
	out, err := docker(ctx, nil, "exec", h.Container, "cat", "/etc/ssh/ssh_host_ed25519_key.pub")
	if err != nil {
		return "", fmt.Errorf("read host key: %w", err)
	}
	key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	if err != nil {
		return "", fmt.Errorf("host key %q: %w", strings.TrimSpace(out), err)
	}
	return h.Address + " " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(key))), nil
}

// waitSSH waits until the host's sshd sends its banner, and fails early
// when the container stops.
func (l *Lab) waitSSH(ctx context.Context, h Host) error {
	ctx, cancel := context.WithTimeout(ctx, bootTimeout)
	defer cancel()
	for i := 0; ; i++ {
		if sshAnswers(ctx, h.Address, time.Second) {
			return nil
		}
		if i%8 == 7 {
			st, err := containerState(ctx, h.Container)
			if err == nil && st != "running" {
				logs, _ := docker(context.WithoutCancel(ctx), nil, "logs", "--tail", "15", h.Container)
				return fmt.Errorf("container %s is %s while booting; last output:\n%s", h.Container, st, logs)
			}
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("sshd on %s did not answer within %s (see `docker logs %s` and `docker exec %s systemctl --failed`)",
					h.Address, bootTimeout, h.Container, h.Container)
			}
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// sshAnswers reports whether an SSH server answers on addr:22 with its
// banner.
func sshAnswers(ctx context.Context, addr string, timeout time.Duration) bool {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(addr, "22"))
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, "SSH-")
}

// raiseInotify raises fs.inotify.max_user_instances to 1024 if it is lower:
// past about 25 systemd hosts, containers exit at boot otherwise.
func raiseInotify(l *Lab) error {
	b, err := os.ReadFile(inotifySysctl)
	if err != nil {
		return fmt.Errorf("read %s: %w", inotifySysctl, err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("read %s: %w", inotifySysctl, err)
	}
	if n >= inotifyInstances {
		return nil
	}
	if err := os.WriteFile(inotifySysctl, []byte(strconv.Itoa(inotifyInstances)), 0o644); err != nil {
		return fmt.Errorf("%d hosts need fs.inotify.max_user_instances >= %d (it is %d): run `sysctl -w fs.inotify.max_user_instances=%d` as root: %w",
			len(l.hosts), inotifyInstances, n, inotifyInstances, err)
	}
	l.log.Info("raised fs.inotify.max_user_instances", "from", n, "to", inotifyInstances)
	return nil
}

// writeState writes known_hosts, lab.hcl and lab.json.
func (l *Lab) writeState(hostKeys []string) error {
	kh := strings.Join(hostKeys, "\n") + "\n"
	if err := writeFileAtomic(l.KnownHostsFile(), []byte(kh), 0o644); err != nil {
		return fmt.Errorf("write known_hosts: %w", err)
	}
	if err := writeFileAtomic(l.SpecFile(), []byte(l.SpecSnippet()), 0o644); err != nil {
		return fmt.Errorf("write lab.hcl: %w", err)
	}
	b, err := json.MarshalIndent(state{Name: l.name, Subnet: l.subnet.String(), Hosts: l.hosts}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(l.stateFile(), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write lab.json: %w", err)
	}
	return nil
}

// writeFileAtomic writes a file through a temporary file and a rename.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// removeExtraHosts removes the lab's containers that are not among its
// hosts (left by an earlier Up with more hosts).
func (l *Lab) removeExtraHosts(ctx context.Context) error {
	out, err := docker(ctx, nil, "ps", "-a", "--filter", "label="+labelLab+"="+l.name,
		"--format", "{{.Names}}")
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	var extra []string
	for _, name := range strings.Fields(out) {
		if _, err := l.host(name); err != nil {
			extra = append(extra, name)
		}
	}
	if len(extra) == 0 {
		return nil
	}
	l.log.Info("removing hosts past the lab's size", "containers", extra)
	if _, err := docker(ctx, nil, append([]string{"rm", "-f", "-v"}, extra...)...); err != nil {
		return fmt.Errorf("remove extra hosts: %w", err)
	}
	return nil
}
