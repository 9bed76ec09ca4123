package taskstest

import (
	"crypto/x509"
	"time"

	"github.com/image-prewarm/image-prewarm/certs"
)

// WriteServingCert writes a fresh certificate for commonName, localhost, 127.0.0.1 and
// ::1 as tls.crt and tls.key in dir (through the certs package, as the webhook's are), and
// returns a pool trusting its CA. Each call makes a new CA and key pair, so tests can
// rotate the files and see the server pick them up.
func WriteServingCert(dir, commonName string) (*x509.CertPool, error) {
	bundle, err := certs.Generate(dir, []string{commonName, "localhost", "127.0.0.1", "::1"}, time.Hour)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(bundle.CA.Cert)
	return pool, nil
}
