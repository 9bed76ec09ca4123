package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

// Paths of the observability endpoint.
const (
	MetricsPath = "/metrics"
	LivePath    = "/healthz"
	ReadyPath   = "/readyz"
)

// MetricsOptions configure the observability endpoint: /metrics, /healthz and /readyz on
// one address. The probes are never behind authentication: the kubelet has no token.
type MetricsOptions struct {
	Addr string
	// Secure serves HTTPS; false serves plain HTTP (local use: /metrics then goes to
	// anyone who can reach the port, in the clear).
	Secure bool
	// GetCertificate supplies the HTTPS pair. Until it has one (nil, or an error) a
	// self-signed pair is served, so probes (which skip verification) answer before the
	// Secret's pair is loaded.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// Auth guards /metrics (MetricsAuth); nil leaves it open.
	Auth Filter
	// Ready are the /readyz checks by name, each also at /readyz/<name> with its reason.
	// /healthz has none: a replica is live while it answers, whatever it waits for.
	Ready  map[string]healthz.Checker
	Logger logr.Logger
}

// MetricsServer is a running observability endpoint.
type MetricsServer struct {
	// Addr is the address it listens on (the real port when Options.Addr had port 0).
	Addr string
	srv  *http.Server
	done chan struct{}
}

// ServeMetrics listens on o.Addr and serves until Shutdown.
func ServeMetrics(o MetricsOptions) (*MetricsServer, error) {
	mux := metricsMux(o)
	l, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics-addr %s: %w", o.Addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute}
	if o.Secure {
		if srv.TLSConfig, err = metricsTLS(o.GetCertificate); err != nil {
			l.Close()
			return nil, err
		}
		l = tls.NewListener(l, srv.TLSConfig)
	}
	s := &MetricsServer{Addr: l.Addr().String(), srv: srv, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error(err, "metrics server stopped")
		}
	}()
	o.Logger.Info("serving metrics and probes", "addr", s.Addr, "https", o.Secure, "authenticated", o.Auth != nil)
	return s, nil
}

// Shutdown stops serving, letting scrapes in flight finish until ctx ends.
func (s *MetricsServer) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

func metricsMux(o MetricsOptions) *http.ServeMux {
	scrape := metrics.Handler()
	if o.Auth != nil {
		scrape = o.Auth(scrape)
	}
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, scrape)
	mux.Handle(LivePath, http.StripPrefix(LivePath, &healthz.Handler{}))
	mux.Handle(LivePath+"/", http.StripPrefix(LivePath, &healthz.Handler{}))
	ready := http.StripPrefix(ReadyPath, &healthz.Handler{Checks: o.Ready})
	mux.Handle(ReadyPath, ready)
	mux.Handle(ReadyPath+"/", ready)
	return mux
}

// metricsTLS serves get's pair once it has one, a self-signed pair before.
func metricsTLS(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) (*tls.Config, error) {
	ca, err := certs.NewCA("image-prewarm-metrics-self-signed", 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.IssueServing([]string{"image-prewarm-metrics", "localhost", "127.0.0.1"}, 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	fallback, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 only, as the webhook: HTTP/2's rapid-reset floods reach anyone who can
		// connect, before authentication; a scrape gains nothing from HTTP/2.
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if get != nil {
				if cert, err := get(hello); err == nil && cert != nil {
					return cert, nil
				}
			}
			return &fallback, nil
		},
	}, nil
}
