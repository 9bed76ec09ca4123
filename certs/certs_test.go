package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestIssueServing(t *testing.T) {
	tests := map[string]struct {
		hosts    []string
		wantDNS  []string
		wantIPs  []string
		verifyAs []string
	}{
		"service names": {
			hosts:    ServiceDNSNames("image-prewarm-webhook", "ops"),
			wantDNS:  []string{"image-prewarm-webhook", "image-prewarm-webhook.ops", "image-prewarm-webhook.ops.svc", "image-prewarm-webhook.ops.svc.cluster.local"},
			verifyAs: []string{"image-prewarm-webhook.ops.svc", "image-prewarm-webhook.ops.svc.cluster.local"},
		},
		"loopback IP and name": {
			hosts:    []string{"127.0.0.1", "localhost", "::1"},
			wantDNS:  []string{"localhost"},
			wantIPs:  []string{"127.0.0.1", "::1"},
			verifyAs: []string{"127.0.0.1", "localhost", "::1"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ca, err := NewCA("test-ca", time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			kp, err := ca.IssueServing(tc.hosts, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(kp.Cert.DNSNames, tc.wantDNS) {
				t.Errorf("DNS SANs %q, want %q", kp.Cert.DNSNames, tc.wantDNS)
			}
			var ips []string
			for _, ip := range kp.Cert.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tc.wantIPs) {
				t.Errorf("IP SANs %q, want %q", ips, tc.wantIPs)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca.Cert)
			for _, host := range tc.verifyAs {
				opts := x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
				if _, err := kp.Cert.Verify(opts); err != nil {
					t.Errorf("verify as %s: %v", host, err)
				}
			}
			if _, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM); err != nil {
				t.Errorf("PEM pair unusable by crypto/tls: %v", err)
			}
		})
	}
}

func TestIssueServingRejects(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		hosts    []string
		validity time.Duration
	}{
		"no hosts":      {hosts: nil, validity: time.Hour},
		"zero validity": {hosts: []string{"a"}, validity: 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := ca.IssueServing(tc.hosts, tc.validity); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestSerialsDiffer(t *testing.T) {
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := ca.IssueServing([]string{"a"}, time.Hour)
	b, _ := ca.IssueServing([]string{"a"}, time.Hour)
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 || a.Cert.SerialNumber.Sign() <= 0 {
		t.Fatalf("serials %v and %v: want distinct positive serials", a.Cert.SerialNumber, b.Cert.SerialNumber)
	}
}

func TestGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	b, err := Generate(dir, ServiceDNSNames("svc", "ns"), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]os.FileMode{CAFile: 0o644, CertFile: 0o644, KeyFile: 0o600}
	for file, want := range modes {
		fi, err := os.Stat(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", file, got, want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != len(modes) {
		t.Errorf("dir holds %d entries, want exactly %d (no CA key, no temporary files)", len(entries), len(modes))
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.crt holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "svc.ns.svc"}); err != nil {
		t.Fatalf("the written CA does not sign the written certificate: %v", err)
	}
	if !b.Serving.Cert.Equal(leaf) {
		t.Error("Bundle.Serving differs from tls.crt")
	}
	if b.CA.Cert.NotAfter.Before(time.Now().Add(23 * time.Hour)) {
		t.Errorf("CA expires at %v, want about 24h from now", b.CA.Cert.NotAfter)
	}
}

func TestWriteServingReplaces(t *testing.T) {
	dir := t.TempDir()
	ca, _ := NewCA("test-ca", time.Hour)
	for range 2 {
		kp, err := ca.IssueServing([]string{"127.0.0.1"}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if err := kp.WriteServing(dir); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, CertFile))
		if err != nil || string(got) != string(kp.CertPEM) {
			t.Fatalf("tls.crt not replaced: %v", err)
		}
	}
}
