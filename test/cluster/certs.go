package cluster

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"time"

	"github.com/image-prewarm/image-prewarm/certs"
)

// certValidity outlives any test run or demo; every cluster gets fresh certificates.
const certValidity = 30 * 24 * time.Hour

// writePair stores a pair as <dir>/<name>.crt and <dir>/<name>.key (key owner-only).
func writePair(dir, name string, kp *certs.KeyPair) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, kp.CertPEM, 0o644); err != nil {
		return "", "", err
	}
	return certFile, keyFile, os.WriteFile(keyFile, kp.KeyPEM, 0o600)
}

// writePublicKey stores the pair's public key (PKIX PEM), which kube-apiserver needs to
// verify service account tokens: it does not read PKCS#8 private keys for that.
func writePublicKey(dir, name string, kp *certs.KeyPair) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(&kp.Key.PublicKey)
	if err != nil {
		return "", err
	}
	file := filepath.Join(dir, name+".pub")
	return file, os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o644)
}
