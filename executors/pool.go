package executors

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// Pool keeps one SSH connection per host name, dialled on first use and
// shared by every caller. A connection found dead is dialled again; a failed
// dial is not remembered, so the next Get tries again.
type Pool struct {
	log *slog.Logger

	mu     sync.Mutex
	conns  map[string]*poolEntry
	closed bool
}

type poolEntry struct {
	ready chan struct{} // closed when the dial is done
	ssh   *SSH
	err   error
}

// ErrPoolClosed is returned by Get after Close.
var ErrPoolClosed = errors.New("executors: pool closed")

// NewPool returns an empty pool.
func NewPool(log *slog.Logger) *Pool {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pool{log: log, conns: map[string]*poolEntry{}}
}

// Get returns the connection for cfg.Name, dialling it if there is none or
// it died. Concurrent callers for one host share a single dial. The first
// cfg seen for a name is the one used while its connection lives.
func (p *Pool) Get(ctx context.Context, cfg SSHConfig) (*SSH, error) {
	name := cfg.Name
	if name == "" {
		name = cfg.Address
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		e, ok := p.conns[name]
		if !ok {
			e = &poolEntry{ready: make(chan struct{})}
			p.conns[name] = e
			p.mu.Unlock()
			e.ssh, e.err = DialSSH(ctx, cfg, p.log)
			p.mu.Lock()
			if e.err != nil && p.conns[name] == e {
				delete(p.conns, name)
			}
			if e.err == nil && p.closed {
				e.ssh.Close()
				e.ssh, e.err = nil, ErrPoolClosed
			}
			close(e.ready)
			p.mu.Unlock()
			return e.ssh, e.err
		}
		p.mu.Unlock()
		select {
		case <-e.ready:
		case <-ctx.Done():
			return nil, hostErr(name, "", nil, ctx.Err(), "waiting for the connection being dialled")
		}
		if e.err != nil {
			return nil, e.err
		}
		if e.ssh.Alive() {
			return e.ssh, nil
		}
		p.mu.Lock()
		if p.conns[name] == e {
			delete(p.conns, name)
			e.ssh.Close()
		}
		p.mu.Unlock()
	}
}

// Close closes every connection; Get fails afterwards.
func (p *Pool) Close() error {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = map[string]*poolEntry{}
	p.mu.Unlock()
	var errs []error
	for _, e := range conns {
		<-e.ready
		if e.ssh != nil {
			if err := e.ssh.Close(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
