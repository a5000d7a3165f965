package executors

import (
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"
)

// holderInfo describes this process for a lock file: who, where, since when.
func holderInfo() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return fmt.Sprintf("%s@%s pid %d since %s", name, host, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
}

// lockScript is the shell that holds a host lock. It takes the flock on fd
// 9 without waiting, records the holder, says "ok" and blocks until its
// stdin closes; the lock dies with the shell. When the lock is held it says
// "locked" followed by the holder's record, and exits 75.
func lockScript(path, info string) string {
	p := Quote(path)
	return fmt.Sprintf(`umask 022
exec 9>>%s || exit 1
if ! flock -n 9; then
	echo locked
	cat %s
	exit 75
fi
: > %s
printf '%%s\n' %s >&9
echo ok
while read -r _; do :; done
`, p, p, p, Quote(info))
}

func lockedError(name, addr, path, holder string) error {
	holder = strings.TrimSpace(holder)
	if holder == "" {
		holder = "an unknown holder"
	}
	return hostErr(name, addr, ErrLocked, nil, "%s is held by %s; another pgherd is working on this host: wait for it to finish", path, holder)
}
