package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// recipeLabel is the image label holding the hash of the recipe an image
// was built from; a different hash means the recipe changed and the image
// is rebuilt.
const recipeLabel = "pgherd.lab.recipe"

// Suite is the Debian release the lab's hosts run.
const Suite = "bookworm"

const mirror = "http://deb.debian.org/debian"

// basePackages are installed by debootstrap into the base image.
var basePackages = []string{
	"openssh-server", "systemd", "systemd-sysv", "iproute2", "ca-certificates", "sudo",
	"procps", "iputils-ping", "curl",
}

func debootstrapArgs(rootfs string) []string {
	return []string{"--variant=minbase", "--include=" + strings.Join(basePackages, ","), Suite, rootfs, mirror}
}

// hostFiles is the build context of the host image, on top of the base
// image. Everything here goes into the recipe hash.
var hostFiles = map[string]string{
	"Dockerfile": `FROM {{BASE}}
ENV container=docker
COPY sources.list /etc/apt/sources.list
COPY sshd.conf /etc/ssh/sshd_config.d/pgherd-lab.conf
COPY ssh-hostkeys.service /etc/systemd/system/ssh-hostkeys.service
RUN set -eux; \
    rm -f /etc/ssh/ssh_host_*; \
    : > /etc/machine-id; rm -f /var/lib/dbus/machine-id; \
    systemctl enable ssh.service ssh-hostkeys.service; \
    systemctl mask getty.target console-getty.service getty@tty1.service \
        systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
        systemd-modules-load.service systemd-remount-fs.service systemd-firstboot.service \
        sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount dev-hugepages.mount \
        apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; \
    mkdir -p /root/.ssh; chmod 700 /root/.ssh; \
    printf 'Acquire::Retries "3";\n' > /etc/apt/apt.conf.d/80-retries; \
    printf 'APT::Install-Recommends "false";\n' > /etc/apt/apt.conf.d/80-no-recommends; \
    apt-get clean; rm -rf /var/lib/apt/lists/*
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
`,
	"sources.list": "deb http://deb.debian.org/debian bookworm main\n" +
		"deb http://deb.debian.org/debian bookworm-updates main\n" +
		"deb http://deb.debian.org/debian-security bookworm-security main\n",
	"sshd.conf": `# Written by pgherd's lab: root logs in with keys only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
# One host key, the one known_hosts holds, so that every client agrees on it.
HostKey /etc/ssh/ssh_host_ed25519_key
MaxSessions 64
MaxStartups 64:30:128
`,
	// Each host makes its own host keys on first boot: the image holds none,
	// so that no two hosts share a key.
	"ssh-hostkeys.service": `[Unit]
Description=Generate SSH host keys (pgherd lab)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N "" -C "" -f /etc/ssh/ssh_host_ed25519_key

[Install]
WantedBy=multi-user.target ssh.service
`,
}

// baseRecipeHash identifies the base image's recipe.
func baseRecipeHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "debootstrap %q\n", debootstrapArgs("ROOTFS"))
	fmt.Fprintf(h, "import CMD /sbin/init\n")
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// hostRecipeHash identifies the host image's recipe, its base included.
func hostRecipeHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "base %s\n", baseRecipeHash())
	names := make([]string, 0, len(hostFiles))
	for n := range hostFiles {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s %d\n%s", n, len(hostFiles[n]), hostFiles[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// imageRecipe returns the recipe label of an image, or ErrNoSuchObject.
func imageRecipe(ctx context.Context, image string) (string, error) {
	out, err := docker(ctx, nil, "image", "inspect", "--format", `{{index .Config.Labels "`+recipeLabel+`"}}`, image)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// ensureImages builds the base and host images unless images built from
// the current recipe exist.
func (l *Lab) ensureImages(ctx context.Context) error {
	unlock, err := l.lockImages(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	base, host := l.baseImage(), l.hostImage()
	want := hostRecipeHash()
	got, err := imageRecipe(ctx, host)
	if err == nil && got == want {
		l.log.Debug("host image is up to date", "image", host)
		return nil
	}
	if err != nil && !errors.Is(err, ErrNoSuchObject) {
		return fmt.Errorf("inspect image %s: %w", host, err)
	}
	if err := l.ensureBaseImage(ctx, base); err != nil {
		return err
	}
	return l.buildHostImage(ctx, base, host, want)
}

func (l *Lab) ensureBaseImage(ctx context.Context, image string) error {
	want := baseRecipeHash()
	got, err := imageRecipe(ctx, image)
	if err == nil && got == want {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNoSuchObject) {
		return fmt.Errorf("inspect image %s: %w", image, err)
	}
	if os.Geteuid() != 0 {
		return ErrNotRoot
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		return ErrDebootstrapMissing
	}
	tmp, err := os.MkdirTemp("", "pgherd-lab-rootfs-")
	if err != nil {
		return fmt.Errorf("build base image: %w", err)
	}
	defer os.RemoveAll(tmp)
	rootfs := filepath.Join(tmp, "rootfs")
	l.log.Info("building base image with debootstrap (about a minute, once)", "image", image)
	out, err := exec.CommandContext(ctx, "debootstrap", debootstrapArgs(rootfs)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("build base image %s: debootstrap: %w\n%s", image, err, lastLines(string(out), 15))
	}
	// tar the root file system into docker import.
	tar := exec.CommandContext(ctx, "tar", "-C", rootfs, "--numeric-owner", "-c", ".")
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return fmt.Errorf("build base image: %w", err)
	}
	var tarErr strings.Builder
	tar.Stderr = &tarErr
	if err := tar.Start(); err != nil {
		return fmt.Errorf("build base image: tar: %w", err)
	}
	_, importErr := docker(ctx, pipe, "import",
		"-c", `CMD ["/sbin/init"]`,
		"-c", "LABEL "+recipeLabel+"="+want,
		"-", image)
	tarWaitErr := tar.Wait()
	if importErr != nil {
		return fmt.Errorf("build base image %s: import: %w", image, importErr)
	}
	if tarWaitErr != nil {
		return fmt.Errorf("build base image %s: tar: %w: %s", image, tarWaitErr, tarErr.String())
	}
	l.log.Info("built base image", "image", image, "recipe", want)
	return nil
}

func (l *Lab) buildHostImage(ctx context.Context, base, image, recipe string) error {
	dir, err := os.MkdirTemp("", "pgherd-lab-build-")
	if err != nil {
		return fmt.Errorf("build host image: %w", err)
	}
	defer os.RemoveAll(dir)
	for name, content := range hostFiles {
		content = strings.ReplaceAll(content, "{{BASE}}", base)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("build host image: %w", err)
		}
	}
	l.log.Info("building host image", "image", image)
	oldID, _ := docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", image)
	_, err = dockerEnv(ctx, []string{"DOCKER_BUILDKIT=0"}, nil,
		"build", "--quiet", "--label", recipeLabel+"="+recipe, "-t", image, dir)
	if err != nil {
		return fmt.Errorf("build host image %s: %w", image, err)
	}
	l.log.Info("built host image", "image", image, "recipe", recipe)
	// Drop the image this one replaces; docker refuses while containers
	// still use it, which is fine.
	if oldID = strings.TrimSpace(oldID); oldID != "" {
		_, _ = docker(ctx, nil, "image", "rm", oldID)
	}
	return nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
