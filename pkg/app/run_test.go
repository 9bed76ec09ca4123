package app

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
)

// TestRunNotReadyWithoutCertificate runs the webhook and the TLS task API with an empty
// certificate directory and no API server: the replica stays up, /healthz answers ok,
// /readyz fails naming the certificate, the webhook and the task API, and both ports
// stay closed. Once a pair is written, every check passes without a restart.
func TestRunNotReadyWithoutCertificate(t *testing.T) {
	dir := t.TempDir()
	ports := freePorts(t, 3)
	cfg, err := Parse([]string{
		"--controller=false", "--cert-dir=" + dir, "--metrics-secure=false",
		"--webhook-port=" + strconv.Itoa(ports[0]), "--task-api-addr=127.0.0.1:" + strconv.Itoa(ports[1]),
		"--metrics-addr=127.0.0.1:" + strconv.Itoa(ports[2]),
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	// No API server: nothing on the probe path needs one (the janitor's sweeps fail, logged).
	done := runApp(t, cfg, &rest.Config{Host: "https://127.0.0.1:1"})
	base := "http://127.0.0.1:" + strconv.Itoa(ports[2])
	waitFor(t, func() bool { code, _ := get(base + LivePath); return code == http.StatusOK }, "/healthz answers")

	code, body := get(base + ReadyPath + "?verbose")
	if code == http.StatusOK {
		t.Fatalf("/readyz without a certificate: %d %s", code, body)
	}
	for _, check := range []string{CheckCertificate, CheckWebhook, CheckTaskAPI} {
		if !strings.Contains(body, "[-]"+check) {
			t.Errorf("/readyz does not fail %s:\n%s", check, body)
		}
	}
	if _, reason := get(base + ReadyPath + "/" + CheckCertificate); !strings.Contains(reason, "tls.crt") {
		t.Errorf("/readyz/certificate gives no reason: %s", reason)
	}
	for _, port := range ports[:2] {
		if conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
			conn.Close()
			t.Errorf("port %d open before the certificate loaded", port)
		}
	}

	writePair(t, dir, "replica")
	waitFor(t, func() bool { code, _ := get(base + ReadyPath); return code == http.StatusOK }, "/readyz after the pair was written")
	for _, port := range ports[:2] {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the name is read, not trusted
		if err != nil {
			t.Fatalf("port %d after the certificate loaded: %v", port, err)
		}
		if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "replica" {
			t.Errorf("port %d serves %q", port, cn)
		}
		conn.Close()
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	default:
	}
}

// runApp runs Run until the test ends.
func runApp(t *testing.T, cfg *Config, restCfg *rest.Config) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, restCfg, logr.Discard()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return done
}

func get(url string) (int, string) {
	resp, err := http.Get(url) //nolint:gosec,noctx // a test's loopback URL
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}
