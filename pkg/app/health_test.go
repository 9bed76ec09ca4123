package app

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
)

type fakeController struct{ synced atomic.Bool }

func (f *fakeController) HasSynced() bool { return f.synced.Load() }

func TestLeaderReadiness(t *testing.T) {
	var s leaderState
	c := &fakeController{}
	steps := []struct {
		name  string
		do    func()
		ready bool
	}{
		{"standby waiting for the Lease", func() {}, true},
		{"leading, caches not synced", func() { s.lead(c) }, false},
		{"leading, synced", func() { c.synced.Store(true) }, true},
		{"lost the Lease", func() { s.standby() }, true},
		{"leading again, new controller not synced", func() { s.lead(&fakeController{}) }, false},
		{"a controller that does not report", func() { s.lead(struct{}{}) }, true},
	}
	for _, st := range steps {
		st.do()
		if err := s.check(nil); (err == nil) != st.ready {
			t.Fatalf("%s: check %v, want ready=%v", st.name, err, st.ready)
		}
	}
}

// TestMetricsServerHTTPS: the probes answer over HTTPS without a token, with a
// self-signed pair until the serving pair is available and with that pair after;
// /metrics goes through Auth.
func TestMetricsServerHTTPS(t *testing.T) {
	var pair atomic.Pointer[tls.Certificate]
	dir := t.TempDir()
	writePair(t, dir, "serving")
	loaded, err := tls.LoadX509KeyPair(dir+"/tls.crt", dir+"/tls.key")
	if err != nil {
		t.Fatal(err)
	}
	denyAll := func(http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusUnauthorized) })
	}
	srv, err := ServeMetrics(MetricsOptions{
		Addr: "127.0.0.1:0", Secure: true, Auth: denyAll, Logger: logr.Discard(),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			if c := pair.Load(); c != nil {
				return c, nil
			}
			return nil, errors.New("not loaded")
		},
		Ready: map[string]healthz.Checker{"always": healthz.Ping},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // names are read, not trusted
	fetch := func(path string) (int, string) {
		resp, err := client.Get("https://" + srv.Addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	for path, want := range map[string]int{LivePath: 200, ReadyPath: 200, ReadyPath + "/always": 200, MetricsPath: 401} {
		if code, cn := fetch(path); code != want || !strings.HasPrefix(cn, "image-prewarm-metrics") {
			t.Errorf("%s before the pair: %d served by %q, want %d by the self-signed pair", path, code, cn, want)
		}
	}
	pair.Store(&loaded)
	client.CloseIdleConnections()
	if code, cn := fetch(LivePath); code != 200 || cn != "serving" {
		t.Errorf("after the pair: %d served by %q", code, cn)
	}
}
