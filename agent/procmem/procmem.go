// Package procmem keeps a long-running process's resident set to what it
// uses. Most of a Go daemon's RSS is its own executable's pages: the kernel
// maps them in 64 KB chunks around each first touch (fault-around), and
// start-up (package initialisation, flag parsing, the configuration) touches
// code and tables the steady loop never runs again. Those pages are clean
// and shared with the page cache, so giving them back costs nothing but a
// page fault if one is needed again.
package procmem

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// TrimExecutable drops the calling process's mappings of its executable's
// read-only segments (code, read-only data) from its page tables; pages it
// touches again fault back in from the page cache. Writable segments are
// never touched (MADV_DONTNEED on them would lose what was written). It
// returns how many bytes of mappings it advised.
func TrimExecutable() (int, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("procmem: %w", err)
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("procmem: %w", err)
	}
	defer f.Close()
	type span struct{ start, end uintptr }
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 00400000-00f55000 r-xp 00000000 00:b1 1360381   /usr/local/bin/pgherd
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || strings.Join(fields[5:], " ") != exe || strings.Contains(fields[1], "w") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			return 0, fmt.Errorf("procmem: /proc/self/maps line %q", sc.Text())
		}
		spans = append(spans, span{uintptr(start), uintptr(end)})
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("procmem: reading /proc/self/maps: %w", err)
	}
	total := 0
	for _, s := range spans {
		// The addresses go to the kernel only: no Go pointer is made.
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, s.start, s.end-s.start, syscall.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("procmem: madvise %x-%x: %w", s.start, s.end, errno)
		}
		total += int(s.end - s.start)
	}
	return total, nil
}

// Resident is the process's resident set in bytes: all of it, and its
// anonymous (private) part, from /proc/self/status.
func Resident() (rss, anon int64, err error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, fmt.Errorf("procmem: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch {
		case k == "VmRSS" && err == nil:
			rss = kb << 10
		case k == "RssAnon" && err == nil:
			anon = kb << 10
		}
	}
	if rss == 0 {
		return 0, 0, fmt.Errorf("procmem: no VmRSS in /proc/self/status")
	}
	return rss, anon, nil
}
