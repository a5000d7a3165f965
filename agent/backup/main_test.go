package backup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"testing"
)

// TestMain lets PostgreSQL run this test binary as its archive_command and
// restore_command (the lead wires the real CLI): with PGHERD_BACKUP_HELPER
// set, the binary is a tiny wal-push / wal-fetch tool configured by
// environment variables instead of a test run.
func TestMain(m *testing.M) {
	if os.Getenv("PGHERD_BACKUP_HELPER") != "" {
		os.Exit(helperMain(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func helperMain(args []string) int {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	repo, err := NewLocal(os.Getenv("PGHERD_REPO"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	st, err := Open(ctx, repo, Options{Passphrase: os.Getenv("PGHERD_PASS"), Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	switch {
	case len(args) == 2 && args[0] == "wal-push":
		spool := os.Getenv("PGHERD_SPOOL")
		err = st.WALPush(ctx, args[1], WALPushOptions{Async: spool != "", SpoolDir: spool})
	case len(args) == 3 && args[0] == "wal-fetch":
		spool := os.Getenv("PGHERD_SPOOL")
		prefetch := 0
		if spool != "" {
			prefetch = 4
		}
		err = st.WALFetch(ctx, args[1], args[2], WALFetchOptions{Prefetch: prefetch, SpoolDir: spool})
		if errors.Is(err, ErrNotFound) {
			return 1
		}
	default:
		err = fmt.Errorf("usage: wal-push PATH | wal-fetch NAME DEST; got %q", args)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}
