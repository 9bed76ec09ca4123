// Package certs issues the webhook's TLS material: a private CA and a serving
// certificate for the webhook Service's DNS names (or any host/IP, for tests).
// The chart's existingSecret TLS mode uses it through certs/gencert; the e2e tests use it
// to serve the in-process webhook on loopback.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names inside an output directory. tls.crt and tls.key are the keys of a
// kubernetes.io/tls Secret, which is what the webhook server reads from --cert-dir.
const (
	CAFile   = "ca.crt"
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// KeyPair is a certificate with its private key, both also PEM-encoded.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// ServiceDNSNames are the names the API server may use to reach a Service: it dials
// <svc>.<ns>.svc, but clients and proxies also use the shorter and longer forms.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service,
		service + "." + namespace,
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// NewCA makes a self-signed CA valid for validity.
func NewCA(commonName string, validity time.Duration) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: commonName},
		IsCA:                  true,
		BasicConstraintsValid: true,
		// MaxPathLenZero: this CA signs leaf certificates only, never another CA.
		MaxPathLen:     0,
		MaxPathLenZero: true,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	return issue(tmpl, nil, validity)
}

// IssueServing signs a server certificate for hosts; each host is a DNS name or an IP
// address and becomes a SAN of the matching kind. The first host is also the CN.
func (ca *KeyPair) IssueServing(hosts []string, validity time.Duration) (*KeyPair, error) {
	if len(hosts) == 0 {
		return nil, errors.New("a serving certificate needs at least one host")
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return issue(tmpl, ca, validity)
}

// IssueClient signs a client certificate; the Kubernetes API server maps the CN to the
// user name and each O to a group (the test control plane's admin uses system:masters).
func (ca *KeyPair) IssueClient(user string, groups []string, validity time.Duration) (*KeyPair, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: user, Organization: groups},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return issue(tmpl, ca, validity)
}

func issue(tmpl *x509.Certificate, ca *KeyPair, validity time.Duration) (*KeyPair, error) {
	if validity <= 0 {
		return nil, fmt.Errorf("validity %v: want a positive duration", validity)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	// 128 random bits: serials must be unique per CA, and a rotated certificate is
	// told apart from the one it replaces by its serial.
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // RFC 5280: positive
	// Backdated a little so a node whose clock runs behind accepts it at once.
	tmpl.NotBefore = time.Now().Add(-5 * time.Minute)
	tmpl.NotAfter = time.Now().Add(validity)
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca.Cert, ca.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("sign %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", tmpl.Subject.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// WriteServing writes the pair as dir/tls.crt and dir/tls.key (owner-only), the
// layout the webhook server reads. The key is written first: a watcher that reloads
// on the certificate's change then finds the matching key already in place.
func (kp *KeyPair) WriteServing(dir string) error {
	if err := WriteFileAtomic(filepath.Join(dir, KeyFile), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(dir, CertFile), kp.CertPEM, 0o644)
}

// WriteFileAtomic replaces path with data through a temporary file and a rename, so
// a reader never sees a half-written certificate or key. The temporary file has mode
// perm from the start: a key is never readable by others, not even briefly.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Bundle is what Generate produced: the CA (whose key is not kept) and the serving pair.
type Bundle struct {
	CA      *KeyPair
	Serving *KeyPair
}

// Generate makes a CA and a serving certificate for hosts and writes ca.crt, tls.crt
// and tls.key into dir (created owner-only if missing). The CA's key is never written:
// nothing else can then be signed by a CA the API server trusts for the webhook, and
// renewing means generating a new pair and CA bundle.
func Generate(dir string, hosts []string, validity time.Duration) (*Bundle, error) {
	ca, err := NewCA("image-prewarm-webhook-ca", validity)
	if err != nil {
		return nil, err
	}
	serving, err := ca.IssueServing(hosts, validity)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	if err := WriteFileAtomic(filepath.Join(dir, CAFile), ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := serving.WriteServing(dir); err != nil {
		return nil, err
	}
	return &Bundle{CA: ca, Serving: serving}, nil
}
