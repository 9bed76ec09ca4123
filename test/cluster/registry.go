package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// RegistryUser may push and pull every repository of the test registry. The password
// is made fresh for each registry, so that a test can use it as a sentinel.
const RegistryUser = "prewarm-test"

// Registry is a real OCI registry (distribution v3) on loopback with TLS signed by the
// cluster's CA: the private one with an htpasswd user, the public one open to anyone
// (where the project's own image lives, as on a public registry). Every request is
// written to its log as JSON, which Requests reads back: tests assert on who fetched
// what, with which outcome.
type Registry struct {
	// Host is 127.0.0.1:<port>: image references name it, and nothing resolves a name.
	Host string
	// CAFile signs the registry's certificate.
	CAFile string
	// Password is RegistryUser's; empty for the public registry.
	Password  string
	component string
	dir       string
	cluster   *Cluster
}

// RegistryRequest is one request the registry answered.
type RegistryRequest struct {
	Method string
	// Path is the request URI, e.g. /v2/private/app/manifests/v1.
	Path string
	// User is the authenticated user; empty for an anonymous or rejected request.
	User   string
	Status int
	Time   time.Time
}

// Registry components: the password-protected one and the public one.
const (
	privateRegistry = "registry"
	publicRegistry  = "registry-public"
)

// startRegistry configures and starts a registry as the cluster component of that name;
// the private one gets RegistryUser with a fresh password.
func (c *Cluster) startRegistry(ctx context.Context, component string) (*Registry, error) {
	dir := filepath.Join(c.Dir, component)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	r := &Registry{Host: "127.0.0.1:" + strconv.Itoa(ports[0]), CAFile: c.CAFile, component: component, dir: dir, cluster: c}
	if component == privateRegistry {
		if r.Password, err = randomToken(); err != nil {
			return nil, err
		}
	}
	configFile, err := r.writeConfig(c)
	if err != nil {
		return nil, err
	}
	c.args[component] = []string{"serve", configFile}
	c.binaries[component] = "registry"
	// distribution exports traces over OTLP by default; nothing here collects them.
	c.env[component] = []string{"OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"}
	c.order = append(c.order, component)
	return r, r.Start(ctx)
}

func (r *Registry) writeConfig(c *Cluster) (string, error) {
	serving, err := c.ca.IssueServing([]string{"127.0.0.1"}, certValidity)
	if err != nil {
		return "", err
	}
	certFile, keyFile, err := writePair(r.dir, "tls", serving)
	if err != nil {
		return "", err
	}
	auth, err := r.writeHtpasswd()
	if err != nil {
		return "", err
	}
	config := fmt.Sprintf(`version: 0.1
log:
  level: info
  formatter: json
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %q}
  delete: {enabled: true}
http:
  addr: %q
  tls: {certificate: %q, key: %q}
%s`, filepath.Join(r.dir, "data"), r.Host, certFile, keyFile, auth)
	file := filepath.Join(r.dir, "config.yml")
	return file, os.WriteFile(file, []byte(config), 0o644)
}

// writeHtpasswd writes the private registry's user file and returns the config's auth
// section; the public registry has none.
func (r *Registry) writeHtpasswd() (string, error) {
	if r.Password == "" {
		return "", nil
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		return "", err
	}
	htpasswd := filepath.Join(r.dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(RegistryUser+":"+string(hash)+"\n"), 0o600); err != nil {
		return "", err
	}
	return fmt.Sprintf("auth:\n  htpasswd: {realm: image-prewarm-test, path: %q}\n", htpasswd), nil
}

// answers reports whether the registry serves /v2/ (401 without credentials when private).
func (r *Registry) answers() bool {
	resp, err := r.HTTPClient().Get("https://" + r.Host + "/v2/")
	if err != nil {
		return false
	}
	resp.Body.Close()
	if r.Password != "" {
		return resp.StatusCode == http.StatusUnauthorized
	}
	return resp.StatusCode == http.StatusOK
}

// HTTPClient trusts the registry's CA, for pushes and probes from the test process.
func (r *Registry) HTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: r.Transport()}
}

// Transport is an HTTP transport that trusts the registry's CA.
func (r *Registry) Transport() *http.Transport {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(r.cluster.ca.CertPEM)
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
}

// Stop stops the registry; Start starts it again with the same data (transient-outage tests).
func (r *Registry) Stop() { r.cluster.StopComponent(r.component) }

// Start (re)starts the registry and waits until it serves.
func (r *Registry) Start(ctx context.Context) error {
	if err := r.cluster.StartComponent(r.component); err != nil {
		return err
	}
	return r.cluster.poll(ctx, r.component+" serving", 30*time.Second, func(context.Context) (bool, error) {
		return r.answers(), nil
	})
}

// registryLogLine holds the fields distribution logs for each request it completed.
type registryLogLine struct {
	Msg    string    `json:"msg"`
	Time   time.Time `json:"time"`
	Method string    `json:"http.request.method"`
	URI    string    `json:"http.request.uri"`
	User   string    `json:"auth.user.name"`
	Status int       `json:"http.response.status"`
}

// Requests returns every request the registry has answered so far, oldest first.
func (r *Registry) Requests() ([]RegistryRequest, error) {
	f, err := os.Open(filepath.Join(r.cluster.Dir, "logs", r.component+".log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []RegistryRequest
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l registryLogLine
		if json.Unmarshal(sc.Bytes(), &l) != nil || l.Msg != "response completed" && l.Status == 0 {
			continue
		}
		out = append(out, RegistryRequest{Method: l.Method, Path: l.URI, User: l.User, Status: l.Status, Time: l.Time})
	}
	return out, sc.Err()
}

// RequestsSince filters Requests to those at or after t whose path contains part.
func (r *Registry) RequestsSince(t time.Time, part string) ([]RegistryRequest, error) {
	all, err := r.Requests()
	var out []RegistryRequest
	for _, req := range all {
		if !req.Time.Before(t) && strings.Contains(req.Path, part) {
			out = append(out, req)
		}
	}
	return out, err
}
