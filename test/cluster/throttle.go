package cluster

import (
	"context"
	"errors"
	"io"
	"net"
	"path/filepath"
	"sync"
	"time"
)

// ThrottledRegistry puts a TCP proxy on loopback in front of the private registry that
// passes registry-to-node bytes at a fixed rate, like a slow link to a remote Harbor.
// TLS goes through untouched (the registry's certificate is for 127.0.0.1, whatever the
// port). Every real node trusts the proxy's host:port. It returns that host; the proxy
// stops when ctx ends.
func (c *Cluster) ThrottledRegistry(ctx context.Context, bytesPerSecond int64) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	host := l.Addr().String()
	c.proxies = append(c.proxies, host)
	for _, n := range c.realNodes {
		if err := n.trustRegistry(filepath.Join(n.Dir, "containerd", "certs.d")); err != nil {
			l.Close()
			return "", err
		}
	}
	p := &throttle{target: c.Registry.Host, rate: bytesPerSecond}
	go func() {
		<-ctx.Done()
		l.Close()
		p.closeAll()
	}()
	go p.serve(l)
	return host, nil
}

type throttle struct {
	target string
	rate   int64
	mu     sync.Mutex
	conns  []net.Conn
	free   time.Time // when the link is next free
}

func (p *throttle) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go p.relay(conn)
	}
}

func (p *throttle) relay(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	go func() {
		_, _ = io.Copy(server, client)
		_ = server.(*net.TCPConn).CloseWrite()
	}()
	_ = p.copyAtRate(client, server)
	client.Close()
	server.Close()
}

func (p *throttle) track(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conns = append(p.conns, conns...)
}

func (p *throttle) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

// copyAtRate copies in chunks of 1/20 s worth of bytes; every chunk of every
// connection books its slot on the link's one schedule, so all connections together
// (containerd fetches layers in parallel) never run ahead of the rate.
func (p *throttle) copyAtRate(dst io.Writer, src io.Reader) error {
	buf := make([]byte, max(p.rate/20, 1024))
	for {
		n, err := src.Read(buf)
		if n > 0 {
			time.Sleep(time.Until(p.book(n)))
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// book reserves the link for n bytes and returns when they may be sent.
func (p *throttle) book(n int) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if p.free.Before(now) {
		p.free = now
	}
	at := p.free
	p.free = p.free.Add(time.Duration(float64(n) / float64(p.rate) * float64(time.Second)))
	return at
}
