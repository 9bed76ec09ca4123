// Command gencert generates the webhook's TLS material for the chart's existingSecret
// mode: a CA and a serving certificate for the webhook Service, then prints the
// kubectl command that stores it as a Secret and the CA bundle for the webhook
// configurations.
//
//	go run ./certs/gencert [-days 365] [-secret NAME] SERVICE NAMESPACE OUTDIR
package main

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/image-prewarm/image-prewarm/certs"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gencert:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gencert", flag.ContinueOnError)
	fs.SetOutput(stderr)
	days := fs.Int("days", 365, "validity of the CA and the serving certificate, in days")
	secret := fs.String("secret", "", "name of the kubernetes.io/tls Secret in the printed command (default SERVICE-tls)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: gencert [-days N] [-secret NAME] SERVICE NAMESPACE OUTDIR")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 3 {
		fs.Usage()
		return fmt.Errorf("want 3 arguments (SERVICE NAMESPACE OUTDIR), got %d", fs.NArg())
	}
	service, namespace, dir := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	if *secret == "" {
		*secret = service + "-tls"
	}
	if err := validate(service, namespace, *secret, *days); err != nil {
		return err
	}
	b, err := certs.Generate(dir, certs.ServiceDNSNames(service, namespace), time.Duration(*days)*24*time.Hour)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Wrote %s, %s and %s (key mode 0600) in %s, valid until %s.\n\n",
		certs.CAFile, certs.CertFile, certs.KeyFile, dir, b.Serving.Cert.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(stdout, "Create the Secret for the chart's existingSecret TLS mode:\n\n  kubectl create secret tls %s -n %s --cert=%s --key=%s\n\n",
		*secret, namespace, filepath.Join(dir, certs.CertFile), filepath.Join(dir, certs.KeyFile))
	fmt.Fprintf(stdout, "CA bundle (caBundle of the webhook configurations):\n\n%s\n",
		base64.StdEncoding.EncodeToString(b.CA.CertPEM))
	return nil
}

// validate rejects names Kubernetes would reject later, when the Secret is created or
// the API server dials the Service, so a typo fails here with the argument's name.
func validate(service, namespace, secret string, days int) error {
	var errs []error
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("SERVICE %q: %s", service, msgs[0]))
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("NAMESPACE %q: %s", namespace, msgs[0]))
	}
	if msgs := validation.IsDNS1123Subdomain(secret); len(msgs) > 0 {
		errs = append(errs, fmt.Errorf("-secret %q: %s", secret, msgs[0]))
	}
	if days < 1 || days > 3650 {
		errs = append(errs, fmt.Errorf("-days %d: want 1..3650", days))
	}
	return errors.Join(errs...)
}
