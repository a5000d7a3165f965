package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgherd/pgherd/agent/backup"
)

// countingRepo counts what goes through a repository, for progress: the
// objects and bytes stored, and the bytes read.
type countingRepo struct {
	backup.Repository
	puts, putBytes, getBytes atomic.Int64
}

func (c *countingRepo) Put(ctx context.Context, key string, r io.Reader) error {
	err := c.Repository.Put(ctx, key, &countReader{r: r, n: &c.putBytes})
	if err == nil && strings.HasPrefix(key, "backup/") {
		c.puts.Add(1)
	}
	return err
}

func (c *countingRepo) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.Repository.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{&countReader{r: rc, n: &c.getBytes}, rc}, nil
}

// wrap makes c count what goes through repo, from zero: a restore may
// look into several repositories before it reads one.
func (c *countingRepo) wrap(repo backup.Repository) backup.Repository {
	c.Repository = repo
	c.puts.Store(0)
	c.putBytes.Store(0)
	c.getBytes.Store(0)
	return c
}

// Close closes the repository counted, if it holds a connection (SFTP).
func (c *countingRepo) Close() error {
	if cl, ok := c.Repository.(io.Closer); ok {
		return cl.Close()
	}
	return nil
}

// put returns the backup objects and bytes stored so far.
func (c *countingRepo) put() (int64, int64) { return c.puts.Load(), c.putBytes.Load() }

// got returns the bytes read so far.
func (c *countingRepo) got() int64 { return c.getBytes.Load() }

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// progress reports a long operation on stderr until stop is called.
type progress struct {
	stop func()
}

// startProgress reports what status says: on a terminal, a line rewritten
// every second; otherwise a plain line every 10 seconds. Its goroutine
// has ended when stop returns.
func (a *app) startProgress(ctx context.Context, what string, status func() string) *progress {
	w := a.env.Stderr
	term := isTerminal(w)
	every := 10 * time.Second
	if term {
		every = time.Second
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-done:
				if term {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-ctx.Done():
				return
			case <-t.C:
				el := time.Since(start).Round(time.Second)
				if term {
					fmt.Fprintf(w, "\r\033[K%s: %s, %s", what, status(), el)
				} else {
					fmt.Fprintf(w, "%s: %s, %s\n", what, status(), el)
				}
			}
		}
	})
	var once sync.Once
	return &progress{stop: func() { once.Do(func() { close(done); wg.Wait() }) }}
}
