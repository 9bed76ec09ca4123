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
	"os"
	"path/filepath"
	"sync"
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

// TLSConfig serves the key pair tls.crt/tls.key in certDir, reloaded when either file
// changes (a renewed Secret volume swaps both), without a restart. It fails when the
// pair cannot be loaded now; a later broken pair keeps the last good one.
func TLSConfig(certDir string, logger logr.Logger) (*tls.Config, error) {
	r, err := newCertReloader(certDir, logger)
	if err != nil {
		return nil, err
	}
	return r.tlsConfig(), nil
}

func newCertReloader(certDir string, logger logr.Logger) (*certReloader, error) {
	r := &certReloader{
		certFile: filepath.Join(certDir, "tls.crt"),
		keyFile:  filepath.Join(certDir, "tls.key"),
		log:      logger,
		now:      time.Now,
	}
	if err := r.reload(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *certReloader) tlsConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}
}

// certReloader caches a key pair and reloads it when a file's mtime or size changes,
// checking at most once per checkEvery so handshakes cost no more than a clock read.
type certReloader struct {
	certFile, keyFile string
	log               logr.Logger
	now               func() time.Time

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string
	checked time.Time
}

const checkEvery = time.Second

func (r *certReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.now(); now.Sub(r.checked) >= checkEvery {
		r.checked = now
		if stamp, err := r.fileStamp(); err == nil && stamp != r.stamp {
			if err := r.reloadLocked(); err != nil {
				r.log.Error(err, "reloading the task API certificate failed; serving the previous one")
			} else {
				r.log.Info("task API certificate reloaded")
			}
		}
	}
	return r.cert, nil
}

func (r *certReloader) reload() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloadLocked()
}

func (r *certReloader) reloadLocked() error {
	stamp, err := r.fileStamp()
	if err != nil {
		return err
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("load the task API key pair: %w", err)
	}
	// A half-written pair fails above and is retried at the next check: the stamp
	// only moves on success.
	r.cert, r.stamp = &cert, stamp
	return nil
}

// fileStamp identifies the files' current versions. Stat follows symlinks, so the
// atomic "..data" swap of a Secret volume shows as a change.
func (r *certReloader) fileStamp() (string, error) {
	var b bytes.Buffer
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("task API certificate: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}
