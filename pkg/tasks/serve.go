package tasks

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// shutdownGrace is how long requests in flight may finish once the context ends.
const shutdownGrace = 10 * time.Second

// Serve serves handler on l until ctx ends, then shuts down gracefully. With tlsConfig
// nil it serves plain HTTP (local use only: tokens and passwords travel in the clear).
func Serve(ctx context.Context, l net.Listener, handler http.Handler, tlsConfig *tls.Config, logger logr.Logger) error {
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      2 * apiTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		TLSConfig:         tlsConfig,
		// Handshake failures and the like: noise from probes and scanners, kept at V(1).
		ErrorLog: log.New(logWriter{logger.V(1)}, "", 0),
	}
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(l, "", "") // the certificate comes from GetCertificate
			return
		}
		errc <- srv.Serve(l)
	}()
	logger.Info("serving the task API", "addr", l.Addr().String(), "tls", tlsConfig != nil)
	select {
	case err := <-errc:
		return fmt.Errorf("task API server: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return fmt.Errorf("task API shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("task API server: %w", err)
	}
	return nil
}

type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info("task API server", "message", string(bytes.TrimSpace(p)))
	return len(p), nil
}

// TLSConfig is the task API's TLS: TLS 1.2 at least, HTTP/2 offered, and the certificate
// from getCertificate, the process's one watcher of the serving pair (controller-runtime's
// certwatcher, as the webhook's), so a renewed Secret is served without a restart.
func TLSConfig(getCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: getCertificate, NextProtos: []string{"h2", "http/1.1"}}
}
