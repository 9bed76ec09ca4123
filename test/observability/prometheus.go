// Package observability checks the chart's Grafana dashboard and Prometheus alert rules
// against the series pkg/metrics registers and against a real Prometheus: Install gets
// Prometheus and promtool (install-prometheus.sh), Start runs a Prometheus that scrapes
// one target, LoadDashboard and LoadRules read the chart's files, MetricNames lists the
// metrics a PromQL expression reads. The e2e tests use it during a real rollout.
package observability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/image-prewarm/image-prewarm/pkg/logging/logtest"
)

// Dir is this package's source directory: the install script, the rule tests and the
// chart are found relative to it, wherever the test binary runs.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Install runs install-prometheus.sh and returns the directory holding prometheus and
// promtool. The first run downloads Debian's package into the cache; later runs reuse it.
func Install(ctx context.Context) (string, error) {
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(Dir(), "install-prometheus.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("install-prometheus.sh: %w\n%s", err, stderr.String())
	}
	bin := strings.TrimSpace(string(out))
	for _, tool := range []string{"prometheus", "promtool"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			return "", fmt.Errorf("install-prometheus.sh printed %q, which has no %s: %w", bin, tool, err)
		}
	}
	return bin, nil
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Options configure a Prometheus.
type Options struct {
	// BinDir holds the prometheus binary (from Install).
	BinDir string
	// Dir receives the configuration and the TSDB (a t.TempDir()).
	Dir string
	// Target is a host:port serving /metrics; empty: scrape nothing.
	Target string
	// TLS, when set, scrapes over HTTPS as a Prometheus in the cluster does: the
	// bearer token in TokenFile, the server verified against CAFile.
	TLS *ScrapeTLS
	// Interval is the scrape and rule evaluation interval; default 1s.
	Interval time.Duration
	// RuleFiles are loaded and evaluated.
	RuleFiles []string
}

// ScrapeTLS is how Prometheus authenticates to an HTTPS target and verifies it.
type ScrapeTLS struct {
	CAFile, TokenFile string
}

// Prometheus is a running Prometheus server on loopback.
type Prometheus struct {
	// URL is its base address, http://127.0.0.1:<port>.
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	log  *logtest.Buffer
}

// Start writes a configuration, starts Prometheus and waits until it is ready.
func Start(ctx context.Context, o Options) (*Prometheus, error) {
	if o.Interval == 0 {
		o.Interval = time.Second
	}
	config := filepath.Join(o.Dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(configYAML(o)), 0o600); err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	p := &Prometheus{URL: "http://127.0.0.1:" + strconv.Itoa(port), done: make(chan struct{}), log: &logtest.Buffer{}}
	p.cmd = exec.Command(filepath.Join(o.BinDir, "prometheus"),
		"--config.file="+config,
		"--storage.tsdb.path="+filepath.Join(o.Dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--log.level=warn")
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start prometheus: %w", err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	if err := p.waitReady(ctx); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func configYAML(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "global:\n  scrape_interval: %s\n  evaluation_interval: %s\n", o.Interval, o.Interval)
	if len(o.RuleFiles) > 0 {
		b.WriteString("rule_files:\n")
		for _, f := range o.RuleFiles {
			fmt.Fprintf(&b, "  - %q\n", f)
		}
	}
	if o.Target != "" {
		fmt.Fprintf(&b, "scrape_configs:\n  - job_name: image-prewarm\n")
		if o.TLS != nil {
			fmt.Fprintf(&b, "    scheme: https\n    authorization:\n      credentials_file: %q\n    tls_config:\n      ca_file: %q\n", o.TLS.TokenFile, o.TLS.CAFile)
		}
		fmt.Fprintf(&b, "    static_configs:\n      - targets: [%q]\n", o.Target)
	}
	return b.String()
}

func (p *Prometheus) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/-/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("prometheus exited before it was ready:\n%s", p.log.String())
		case <-ctx.Done():
			return fmt.Errorf("prometheus not ready: %w\n%s", ctx.Err(), p.log.String())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Stop ends Prometheus: SIGTERM, then SIGKILL after 10 seconds.
func (p *Prometheus) Stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// Log is what Prometheus wrote so far.
func (p *Prometheus) Log() string { return p.log.String() }

// Result is the answer of an instant query.
type Result struct {
	// Type is vector, matrix, scalar or string.
	Type string
	// Samples is the number of elements of a vector or matrix; 1 for a scalar or string.
	Samples int
	// Names are the __name__ labels of the result's series, when they have one.
	Names []string
}

// Query runs an instant query through the HTTP API. An error means the query did not
// parse or could not be evaluated; an empty result is not an error.
func (p *Prometheus) Query(ctx context.Context, expr string) (*Result, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query?query="+url.QueryEscape(expr), &data); err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	r := &Result{Type: data.ResultType, Samples: 1}
	if data.ResultType == "vector" || data.ResultType == "matrix" {
		var series []struct {
			Metric map[string]string `json:"metric"`
		}
		if err := json.Unmarshal(data.Result, &series); err != nil {
			return nil, fmt.Errorf("query %s: decode result: %w", expr, err)
		}
		r.Samples = len(series)
		for _, s := range series {
			if n := s.Metric["__name__"]; n != "" {
				r.Names = append(r.Names, n)
			}
		}
	}
	return r, nil
}

// RuleHealth is the state of one loaded rule after its last evaluation.
type RuleHealth struct {
	Name, Health, LastError string
}

// Rules lists the loaded rules with their evaluation health.
func (p *Prometheus) Rules(ctx context.Context) ([]RuleHealth, error) {
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := p.get(ctx, "/api/v1/rules", &data); err != nil {
		return nil, err
	}
	var out []RuleHealth
	for _, g := range data.Groups {
		for _, r := range g.Rules {
			out = append(out, RuleHealth{Name: r.Name, Health: r.Health, LastError: r.LastError})
		}
	}
	return out, nil
}

// get calls an API endpoint and decodes the data of a success envelope.
func (p *Prometheus) get(ctx context.Context, path string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status    string          `json:"status"`
		ErrorType string          `json:"errorType"`
		Error     string          `json:"error"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("HTTP %d: decode: %w", resp.StatusCode, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("HTTP %d: %s: %s", resp.StatusCode, env.ErrorType, env.Error)
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		return fmt.Errorf("decode data: %w", err)
	}
	return nil
}

// Promtool runs promtool from binDir with args in workDir and returns its combined
// output; err is set when it exits non-zero.
func Promtool(ctx context.Context, binDir, workDir string, stdin []byte, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "promtool"), args...)
	cmd.Dir = workDir
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("promtool %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}
