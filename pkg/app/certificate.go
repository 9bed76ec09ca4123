package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// servingCert is the process's one certificate watcher: the webhook, the TLS task API and
// the metrics endpoint all serve the key pair in one directory through it. It is
// controller-runtime's certwatcher (fsnotify plus a periodic re-read; a broken or missing
// pair keeps the last good one), started only once a first pair loads: a replica whose
// Secret is absent or broken stays up and reports not ready instead of crash-looping,
// and serves as soon as the files become valid.
type servingCert struct {
	certFile, keyFile string
	// retry is how often a missing or broken first pair is tried again; interval is
	// certwatcher's re-read period once loaded (fsnotify usually notices first).
	retry, interval time.Duration
	log             logr.Logger

	loaded chan struct{} // closed when watcher is set
	mu     sync.Mutex
	w      *certwatcher.CertWatcher
	err    error // why the first pair did not load yet
}

func newServingCert(dir string, logger logr.Logger) *servingCert {
	return &servingCert{
		certFile: filepath.Join(dir, webhook.CertName),
		keyFile:  filepath.Join(dir, webhook.KeyName),
		retry:    time.Second,
		interval: 10 * time.Second,
		log:      logger,
		loaded:   make(chan struct{}),
		err:      errors.New("not read yet"),
	}
}

// run loads the first pair, retrying until it is valid, then watches it until ctx ends.
func (c *servingCert) run(ctx context.Context) error {
	t := time.NewTicker(c.retry)
	defer t.Stop()
	for logged := false; ; {
		w, err := certwatcher.New(c.certFile, c.keyFile)
		if err == nil {
			c.set(w.WithWatchInterval(c.interval), nil)
			c.log.Info("serving certificate loaded", "cert", c.certFile)
			return w.Start(ctx)
		}
		c.set(nil, err)
		if !logged { // once: the readiness check repeats the reason
			c.log.Error(err, "serving certificate not loadable yet; not ready until it is", "cert", c.certFile, "key", c.keyFile)
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (c *servingCert) set(w *certwatcher.CertWatcher, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
	if w != nil && c.w == nil {
		c.w = w
		close(c.loaded)
	}
}

// wait blocks until a first pair is loaded; false when ctx ended first.
func (c *servingCert) wait(ctx context.Context) bool {
	select {
	case <-c.loaded:
		return true
	case <-ctx.Done():
		return false
	}
}

// current is the pair being served, nil before the first one loaded.
func (c *servingCert) current() *tls.Certificate {
	c.mu.Lock()
	w := c.w
	c.mu.Unlock()
	if w == nil {
		return nil
	}
	cert, _ := w.GetCertificate(nil) // never fails
	return cert
}

// GetCertificate is the tls.Config hook of every server of this process.
func (c *servingCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.current(); cert != nil {
		return cert, nil
	}
	return nil, c.check(nil)
}

// check is the readiness check "certificate".
func (c *servingCert) check(*http.Request) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w != nil {
		return nil
	}
	return fmt.Errorf("serving certificate %s not loaded: %w", c.certFile, c.err)
}
