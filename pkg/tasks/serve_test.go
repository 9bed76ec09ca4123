package tasks

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"

	"github.com/image-prewarm/image-prewarm/pkg/tasks/taskstest"
)

// TestServeTLSRotation: the task API served through controller-runtime's certwatcher
// (as pkg/app wires it) presents a rotated pair on the next handshake, keeps the last good
// pair while the files are broken or gone, and takes a repaired pair again.
func TestServeTLSRotation(t *testing.T) {
	dir := t.TempDir()
	rotate(t, dir, "first")
	w, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	w = w.WithWatchInterval(50 * time.Millisecond)
	go func() { _ = w.Start(t.Context()) }()
	addr := serveTLS(t, TLSConfig(w.GetCertificate))
	steps := []struct {
		name   string
		change func()
		want   string
		// fresh: a new pair, which must show within seconds; otherwise the served
		// pair must survive several re-reads (50 ms apart).
		fresh bool
	}{
		{"unchanged", func() {}, "first", false},
		{"rotated", func() { rotate(t, dir, "second") }, "second", true},
		{"broken key keeps the last good pair", func() { write(t, filepath.Join(dir, "tls.key"), "not a key") }, "second", false},
		{"repaired", func() { rotate(t, dir, "third") }, "third", true},
		{"files gone keep the last good pair", func() { _ = os.Remove(filepath.Join(dir, "tls.crt")) }, "third", false},
	}
	for _, s := range steps {
		s.change()
		deadline := time.Now().Add(5 * time.Second)
		if !s.fresh {
			time.Sleep(300 * time.Millisecond)
			deadline = time.Now()
		}
		for got := servedName(t, addr); got != s.want; got = servedName(t, addr) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: serving %q, want %q", s.name, got, s.want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// serveTLS serves an empty handler with cfg on a loopback port until the test ends.
func serveTLS(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, l, http.NotFoundHandler(), cfg, logr.Discard()) }()
	t.Cleanup(func() { cancel(); <-done })
	return l.Addr().String()
}

func rotate(t *testing.T, dir, name string) {
	t.Helper()
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

// servedName is the common name of the certificate a new TLS connection to addr gets.
func servedName(t *testing.T, addr string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the presented name is read
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
}

func TestServeTLSAndShutdown(t *testing.T) {
	dir := t.TempDir()
	pool, err := taskstest.WriteServingCert(dir, "task-api")
	if err != nil {
		t.Fatal(err)
	}
	w, err := certwatcher.New(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := TLSConfig(w.GetCertificate)
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
