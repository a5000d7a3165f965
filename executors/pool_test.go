package executors_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pgherd/pgherd/executors"
)

// freezer is a TCP proxy to target that can stop passing bytes, like a
// host that froze or a network that partitioned without a reset.
type freezer struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
}

func newFreezer(t *testing.T, target string) *freezer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &freezer{l: l, target: target}
	f.thawed = sync.NewCond(&f.mu)
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		l.Close()
		f.freeze(false)
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
	})
	go func() { // exits when l is closed
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, c, u)
			cmu.Unlock()
			go f.pipe(c, u) // each exits when a side is closed
			go f.pipe(u, c)
		}
	}()
	return f
}

func (f *freezer) port() int { return f.l.Addr().(*net.TCPAddr).Port }

func (f *freezer) freeze(on bool) {
	f.mu.Lock()
	f.frozen = on
	f.mu.Unlock()
	f.thawed.Broadcast()
}

func (f *freezer) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		f.mu.Lock()
		for f.frozen {
			f.thawed.Wait()
		}
		f.mu.Unlock()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

func TestSSHKeepAliveDetectsDeadHost(t *testing.T) {
	d := startSSHD(t)
	f := newFreezer(t, net.JoinHostPort("127.0.0.1", itoa(d.Port)))
	cfg := d.config(t, "root")
	cfg.Port = f.port()
	// known_hosts records the real port; the proxy is another one.
	cfg.KnownHostsFile = d.knownHostsFor(t, f.port())
	cfg.KeepAlive = 100 * time.Millisecond
	pool := executors.NewPool(nil)
	defer pool.Close()
	c, err := pool.Get(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.freeze(true)
	deadline := time.Now().Add(10 * time.Second)
	for c.Alive() {
		if time.Now().After(deadline) {
			t.Fatal("connection to a frozen host still alive after 10 s of 100 ms keepalives")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Run(ctxT(t), "true", nil); !errors.Is(err, executors.ErrUnreachable) {
		t.Errorf("Run on a dead connection: %v, want ErrUnreachable", err)
	}
	f.freeze(false)
	c2, err := pool.Get(ctxT(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == c {
		t.Fatal("pool returned the dead connection")
	}
	if res, err := c2.Run(ctxT(t), "echo back", nil); err != nil || string(res.Stdout) != "back\n" {
		t.Fatalf("after redial: %q %v", res.Stdout, err)
	}
}

func TestPool(t *testing.T) {
	d := startSSHD(t)
	cfg := d.config(t, "root")
	pool := executors.NewPool(nil)
	const n = 8
	got := make([]*executors.SSH, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			c, err := pool.Get(ctxT(t), cfg)
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	for i := range got {
		if got[i] != got[0] {
			t.Fatalf("Get %d returned another connection", i)
		}
	}
	other := cfg
	other.Name = "db2"
	c2, err := pool.Get(ctxT(t), other)
	if err != nil {
		t.Fatal(err)
	}
	if c2 == got[0] {
		t.Error("two host names share a connection")
	}
	// A failed dial is not remembered.
	bad := cfg
	bad.Name = "db3"
	bad.KeyFiles = []string{fixture.otherKey}
	if _, err := pool.Get(ctxT(t), bad); !errors.Is(err, executors.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	bad.KeyFiles = cfg.KeyFiles
	if _, err := pool.Get(ctxT(t), bad); err != nil {
		t.Fatalf("retry after a failed dial: %v", err)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if got[0].Alive() {
		t.Error("connection alive after pool.Close")
	}
	if _, err := pool.Get(ctxT(t), cfg); !errors.Is(err, executors.ErrPoolClosed) {
		t.Errorf("Get after Close: %v", err)
	}
}
