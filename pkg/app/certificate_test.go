package app

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

// TestServingCertWaitsThenWatches: with no pair the certificate check fails with the
// file's reason and nothing is served; a pair written later is picked up within the
// retry period; rotations follow, and broken or missing files keep the last good pair.
func TestServingCertWaitsThenWatches(t *testing.T) {
	dir := t.TempDir()
	c := newServingCert(dir, logr.Discard())
	c.retry, c.interval = 20*time.Millisecond, 50*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})

	if err := c.check(nil); err == nil || !strings.Contains(err.Error(), "tls.crt") {
		t.Fatalf("check without a pair: %v, want an error naming tls.crt", err)
	}
	if cert, err := c.GetCertificate(nil); cert != nil || err == nil {
		t.Fatalf("GetCertificate without a pair: %v, %v", cert, err)
	}
	writePair(t, dir, "first")
	waitCtx, stop := context.WithTimeout(ctx, 5*time.Second)
	defer stop()
	if !c.wait(waitCtx) || c.check(nil) != nil {
		t.Fatalf("pair not loaded: %v", c.check(nil))
	}
	steps := []struct {
		name   string
		change func()
		want   string
		fresh  bool // a new pair, which must show; else the served one must stay
	}{
		{"loaded", func() {}, "first", false},
		{"rotated", func() { writePair(t, dir, "second") }, "second", true},
		{"broken key keeps the last good pair", func() { writeFile(t, filepath.Join(dir, "tls.key"), "junk") }, "second", false},
		{"repaired", func() { writePair(t, dir, "third") }, "third", true},
		{"files gone keep the last good pair", func() { _ = os.Remove(filepath.Join(dir, "tls.crt")) }, "third", false},
	}
	for _, s := range steps {
		s.change()
		if got := eventuallyServed(t, c, s.want, s.fresh); got != s.want {
			t.Fatalf("%s: serving %q, want %q", s.name, got, s.want)
		}
	}
}

// eventuallyServed waits up to 5 s for want when fresh; otherwise it lets several
// re-reads pass and returns what is served then.
func eventuallyServed(t *testing.T, c *servingCert, want string, fresh bool) string {
	t.Helper()
	if !fresh {
		time.Sleep(300 * time.Millisecond)
		return servedName(t, c)
	}
	deadline := time.Now().Add(5 * time.Second)
	got := servedName(t, c)
	for got != want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		got = servedName(t, c)
	}
	return got
}

func servedName(t *testing.T, c *servingCert) string {
	t.Helper()
	cert, err := c.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func writePair(t *testing.T, dir, name string) *x509.CertPool {
	t.Helper()
	pool, err := taskstest.WriteServingCert(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return pool
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
