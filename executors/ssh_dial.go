package executors

import (
	"context"
	"net"
	"sync"
)

// DialContext opens a TCP connection from the host to addr ("127.0.0.1:8008"
// means the host's own loopback), through the existing SSH connection (a
// direct-tcpip channel), so it reaches ports a firewall keeps from the
// operator. network must be "tcp", "tcp4" or "tcp6".
//
// An open connection holds one of the MaxSessions slots, like a session,
// until it is closed: callers close what they open (an http.Transport should
// keep few idle connections). A refused or unreachable addr is an error
// naming the host; it does not wrap ErrUnreachable, which means the host
// itself could not be reached.
func (s *SSH) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := s.acquire(ctx); err != nil {
		return nil, err
	}
	conn, err := s.client.DialContext(ctx, network, addr)
	if err != nil {
		s.release()
		select {
		case <-s.done:
			return nil, s.lost(err)
		default:
		}
		if ctx.Err() != nil {
			return nil, hostErr(s.cfg.Name, s.addr, nil, ctx.Err(), "dialling %s from the host", addr)
		}
		return nil, hostErr(s.cfg.Name, s.addr, nil, err, "dialling %s from the host", addr)
	}
	return &tunnelConn{Conn: conn, release: s.release}, nil
}

// tunnelConn gives back its session slot when closed.
type tunnelConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *tunnelConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
