package images

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Registry is the test registry: distribution on loopback with TLS and htpasswd.
type Registry struct {
	// Host is 127.0.0.1:<port> (an IP literal: nothing here resolves names).
	Host string
	// CA verifies the registry's certificate; if nil, CAFile (PEM) is read.
	CA     *x509.CertPool
	CAFile string
	// Username and Password are sent as basic auth; empty Username pushes anonymously.
	Username, Password string
}

// Ref returns the full reference of path (repository:tag or repository@digest) in
// this registry, as pods name it.
func (r Registry) Ref(path string) string {
	return r.Host + "/" + path
}

// Push uploads an image (v1.Image) or an index (v1.ImageIndex, with its images) to
// ref, which must name r's host: credentials go to that host only. It is how test
// images reach the registry the real node pulls from.
func Push(ctx context.Context, ref string, content remote.Taggable, r Registry) error {
	tag, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	if got := tag.Context().RegistryStr(); got != r.Host {
		return fmt.Errorf("push %s: registry %s is not %s", ref, got, r.Host)
	}
	tr, err := r.transport()
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(tr), remote.WithAuth(r.auth())}
	switch c := content.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(tag, c, opts...)
	case v1.Image:
		err = remote.Write(tag, c, opts...)
	default:
		err = fmt.Errorf("%T is neither an image nor an index", content)
	}
	if err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	return nil
}

func (r Registry) auth() authn.Authenticator {
	if r.Username == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.Username, Password: r.Password}
}

// transport trusts r's CA only, uses no proxy, and dials IP literals only, so that
// no request leaves loopback or asks the machine's resolver.
func (r Registry) transport() (*http.Transport, error) {
	if err := ipHostPort(r.Host); err != nil {
		return nil, err
	}
	pool := r.CA
	if pool == nil {
		if r.CAFile == "" {
			return nil, fmt.Errorf("registry %s: no CA given", r.Host)
		}
		pem, err := os.ReadFile(r.CAFile)
		if err != nil {
			return nil, fmt.Errorf("registry CA: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("registry CA %s: no certificate in it", r.CAFile)
		}
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := ipHostPort(addr); err != nil {
				return nil, err
			}
			return dialer.DialContext(ctx, network, addr)
		},
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout: 10 * time.Second,
		MaxIdleConnsPerHost: 8,
	}, nil
}

// ipHostPort accepts ip:port only.
func ipHostPort(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("registry address %q: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return fmt.Errorf("registry address %q: want an IP address, not a name", addr)
	}
	return nil
}
