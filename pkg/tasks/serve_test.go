package tasks

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

func TestCertReloader(t *testing.T) {
	dir := t.TempDir()
	if _, err := taskstest.WriteServingCert(dir, "first"); err != nil {
		t.Fatal(err)
	}
	r, err := newCertReloader(dir, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Now()
	r.now = func() time.Time { return clock }
	cfg := r.tlsConfig()
	steps := []struct {
		name   string
		change func()
		want   string
	}{
		{"unchanged", func() {}, "first"},
		{"rotated", func() { rotate(t, dir, "second") }, "second"},
		{"broken key keeps the last good pair", func() { write(t, filepath.Join(dir, "tls.key"), "not a key") }, "second"},
		{"repaired", func() { rotate(t, dir, "third") }, "third"},
		{"files gone keep the last good pair", func() { _ = os.Remove(filepath.Join(dir, "tls.crt")) }, "third"},
	}
	for _, s := range steps {
		s.change()
		clock = clock.Add(2 * checkEvery)
		if got := servedName(t, cfg); got != s.want {
			t.Fatalf("%s: serving %q, want %q", s.name, got, s.want)
		}
	}
}

func TestTLSConfigNeedsAPair(t *testing.T) {
	if _, err := TLSConfig(t.TempDir(), logr.Discard()); err == nil {
		t.Fatal("TLSConfig without tls.crt/tls.key: no error")
	}
}

func rotate(t *testing.T, dir, name string) {
	t.Helper()
	// Files written within the same clock tick keep their mtime on some file systems;
	// the size or the time must differ for the reloader to notice, as in a real swap.
	time.Sleep(10 * time.Millisecond)
	if _, err := taskstest.WriteServingCert(dir, name); err != nil {
		t.Fatal(err)
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func servedName(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	c, err := cfg.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestServeTLSAndShutdown(t *testing.T) {
	dir := t.TempDir()
	pool, err := taskstest.WriteServingCert(dir, "task-api")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := TLSConfig(dir, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	a := newTestAPI(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, a.h, cfg, logr.Discard()) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, "https://"+l.Addr().String()+BasePath, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("GET over TLS: %d %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	client.CloseIdleConnections()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after the context ended")
	}
}
