package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DataMount is where a host sees its data disk (Config.DataDisk).
const DataMount = "/data"

// diskDir is the machine's mount point of a host's data disk.
func (l *Lab) diskDir(h Host) string { return filepath.Join(l.dir, "disks", h.Name) }

// ensureDisk mounts the host's data disk on the machine unless it is
// mounted already (a killed host keeps its disk).
func (l *Lab) ensureDisk(ctx context.Context, h Host) error {
	dir := l.diskDir(h)
	mounted, err := mountsUnder(dir)
	if err != nil || len(mounted) > 0 {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("data disk of %s: %w", h.Name, err)
	}
	if out, err := exec.CommandContext(ctx, "mount", "-t", "tmpfs", "-o", "size="+l.dataDisk+",mode=0755", "tmpfs", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("data disk of %s: mount: %w: %s", h.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// removeDisks unmounts every data disk of the lab and removes their mount
// points.
func (l *Lab) removeDisks(ctx context.Context) error {
	root := filepath.Join(l.dir, "disks")
	mounted, err := mountsUnder(root)
	if err != nil {
		return err
	}
	for _, m := range mounted {
		if out, err := exec.CommandContext(ctx, "umount", m).CombinedOutput(); err != nil {
			return fmt.Errorf("data disk %s: umount: %w: %s", m, err, strings.TrimSpace(string(out)))
		}
	}
	return os.RemoveAll(root)
}

// mountsUnder lists the mount points at or under dir.
func mountsUnder(dir string) ([]string, error) {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return nil, fmt.Errorf("list mounts: %w", err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			out = append(out, f[1])
		}
	}
	return out, nil
}
