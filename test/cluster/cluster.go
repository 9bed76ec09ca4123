// Package cluster runs a real Kubernetes control plane on loopback for tests and the
// demo: etcd, kube-apiserver (RBAC, Pod Security admission, admission webhooks),
// kube-controller-manager (job, ttl-after-finished, garbage-collector, serviceaccount,
// node-lifecycle, …), kube-scheduler and kwok, which fakes nodes and plays the kubelet
// for their pods. Binaries are built from the Go module proxy by build.sh and cached
// outside the repository.
package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/image-prewarm/image-prewarm/certs"
)

// Options configure a cluster.
type Options struct {
	// Dir holds certificates, etcd data, logs, PID files and the kubeconfig. Required.
	Dir string
	// BinDir holds the control-plane binaries; empty: EnsureBinaries builds or finds them.
	BinDir string
	// Pulls configures how kwok plays pulls for pods on fake nodes.
	Pulls PullBehaviour
	// Detached processes survive the calling process (for `cluster up`).
	Detached bool
	// RealNodes is how many real nodes (kubelet + containerd) join beside kwok's fake
	// ones. With one or more, the cluster also runs a password-protected registry
	// (Registry) and a public one (PublicRegistry) with the project's own image (NoopImage).
	RealNodes int
}

// Cluster is a running control plane.
type Cluster struct {
	Dir        string
	BinDir     string
	Kubeconfig string
	Config     *rest.Config
	Client     kubernetes.Interface
	// APIServerURL is https://127.0.0.1:<port>.
	APIServerURL string
	// CAFile signs every certificate of the cluster; webhook tests reuse it.
	CAFile string

	// Registry is the cluster's password-protected OCI registry, PublicRegistry one
	// that anyone may pull from; both nil without real nodes.
	Registry, PublicRegistry *Registry
	// NoopImage is the project's image (make image) as pushed to PublicRegistry: the
	// controller's --noop-image on real nodes, so tests run what we ship.
	NoopImage string

	ca        *certs.KeyPair
	opts      Options
	procs     map[string]*process
	order     []string
	args      map[string][]string
	env       map[string][]string
	binaries  map[string]string // component → binary, where the names differ
	realNodes []*RealNode
	proxies   []string // extra registry hosts the nodes trust (throttling proxies)
}

// EnsureBinaries runs build.sh (beside this file) and returns the directory holding the
// binaries. The first run builds them (minutes); later runs find them in the cache.
func EnsureBinaries() (string, error) {
	_, self, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("cannot locate build.sh")
	}
	cmd := exec.Command("bash", filepath.Join(filepath.Dir(self), "build.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("build control plane: %w", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// Start brings the control plane up and waits until it serves and its controllers run.
func Start(ctx context.Context, opts Options) (_ *Cluster, err error) {
	if opts.BinDir == "" {
		if opts.BinDir, err = EnsureBinaries(); err != nil {
			return nil, err
		}
	}
	for _, sub := range []string{"pki", "logs", "pids", "etcd"} {
		if err := os.MkdirAll(filepath.Join(opts.Dir, sub), 0o755); err != nil {
			return nil, err
		}
	}
	c := &Cluster{Dir: opts.Dir, BinDir: opts.BinDir, opts: opts, procs: map[string]*process{},
		args: map[string][]string{}, env: map[string][]string{}, binaries: map[string]string{}}
	defer func() {
		if err != nil {
			c.Stop()
			err = fmt.Errorf("%w (logs in %s)", err, filepath.Join(opts.Dir, "logs"))
		}
	}()
	if err := c.configure(opts.Pulls); err != nil {
		return nil, err
	}
	for _, name := range c.order {
		if err := c.StartComponent(name); err != nil {
			return nil, err
		}
		if name == "kube-apiserver" {
			if err := c.waitAPIServer(ctx); err != nil {
				return nil, err
			}
		}
	}
	if err := c.waitControllers(ctx); err != nil {
		return nil, err
	}
	return c, c.startRealNodes(ctx)
}

// configure writes certificates, kubeconfig and kwok stages and prepares every
// component's command line.
func (c *Cluster) configure(pulls PullBehaviour) error {
	pki := filepath.Join(c.Dir, "pki")
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	if c.ca, err = certs.NewCA("image-prewarm-test-ca", certValidity); err != nil {
		return err
	}
	c.CAFile, _, err = writePair(pki, "ca", c.ca)
	if err != nil {
		return err
	}
	serving, err := c.ca.IssueServing([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "127.0.0.1", "::1"}, certValidity)
	if err != nil {
		return err
	}
	servingCert, servingKey, err := writePair(pki, "apiserver", serving)
	if err != nil {
		return err
	}
	serviceAccount, err := certs.NewCA("service-accounts", certValidity) // only its key is used, to sign tokens
	if err != nil {
		return err
	}
	_, saKey, err := writePair(pki, "service-account", serviceAccount)
	if err != nil {
		return err
	}
	saPub, err := writePublicKey(pki, "service-account", serviceAccount)
	if err != nil {
		return err
	}
	kubeletClient, err := c.ca.IssueClient("kube-apiserver-kubelet-client", []string{"system:masters"}, certValidity)
	if err != nil {
		return err
	}
	kubeletClientCert, kubeletClientKey, err := writePair(pki, "apiserver-kubelet-client", kubeletClient)
	if err != nil {
		return err
	}
	c.APIServerURL = "https://127.0.0.1:" + strconv.Itoa(apiPort)
	if err := c.writeAdminKubeconfig(); err != nil {
		return err
	}
	stages, err := renderStages(pulls)
	if err != nil {
		return err
	}
	stagesFile := filepath.Join(c.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(stagesFile, []byte(stages), 0o644); err != nil {
		return err
	}
	loop := "127.0.0.1:"
	etcdURL, peerURL := "http://"+loop+strconv.Itoa(etcdPort), "http://"+loop+strconv.Itoa(peerPort)
	c.order = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
	c.args["etcd"] = []string{
		"--name=default", "--data-dir=" + filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls=" + etcdURL, "--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL, "--unsafe-no-fsync", "--log-level=warn",
	}
	c.args["kube-apiserver"] = []string{
		"--etcd-servers=" + etcdURL, "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(apiPort), "--cert-dir=" + pki,
		"--tls-cert-file=" + servingCert, "--tls-private-key-file=" + servingKey,
		"--client-ca-file=" + c.CAFile, "--authorization-mode=Node,RBAC",
		// Real nodes: reach kubelets by IP, never by resolving a node's name.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-client-certificate=" + kubeletClientCert, "--kubelet-client-key=" + kubeletClientKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saPub, "--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
		"--enable-admission-plugins=NodeRestriction,PodSecurity,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
		"--allow-privileged=true", "--profiling=false",
		"--max-requests-inflight=1000", "--max-mutating-requests-inflight=500",
	}
	c.args["kube-controller-manager"] = []string{
		"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false", "--controllers=*",
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(kcmPort),
		"--service-account-private-key-file=" + saKey, "--root-ca-file=" + c.CAFile,
		"--use-service-account-credentials=false", "--kube-api-qps=200", "--kube-api-burst=400",
		"--concurrent-job-syncs=20", "--concurrent-ttl-after-finished-syncs=10", "--concurrent-gc-syncs=20",
		"--cert-dir=" + filepath.Join(pki, "kcm"),
		// Fake nodes renew their Lease every 30 s instead of a kubelet's 10 s (see kwok
		// below); the grace period before a node turns Unknown keeps a kubelet's margin.
		"--node-monitor-grace-period=150s",
	}
	c.args["kube-scheduler"] = []string{
		"--kubeconfig=" + c.Kubeconfig, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port=" + strconv.Itoa(schedPort),
		"--cert-dir=" + filepath.Join(pki, "scheduler"),
	}
	c.args["kwok"] = []string{
		"--kubeconfig=" + c.Kubeconfig, "--config=" + stagesFile,
		"--manage-all-nodes=false", "--manage-nodes-with-label-selector=" + KwokNodeLabel + "=" + KwokNodeLabelValue,
		// A Lease of 120 s is renewed every 30 s: 1000 fake nodes on a kubelet's 10 s would
		// send the API server 100 writes a second, a third of its load in a 1000-node
		// benchmark, on the same 2 cores as the rest of the control plane.
		"--node-lease-duration-seconds=120",
		"--cidr=10.64.0.1/12", "--node-ip=10.0.0.1", "--server-address=127.0.0.1:" + strconv.Itoa(kwokPort),
	}
	return nil
}

// StartComponent (re)starts one component with its prepared command line: fault tests
// stop and start kube-apiserver this way.
func (c *Cluster) StartComponent(name string) error {
	args, ok := c.args[name]
	if !ok {
		return fmt.Errorf("unknown component %q", name)
	}
	bin := name
	if b, ok := c.binaries[name]; ok {
		bin = b
	}
	p, err := startProcess(c.Dir, name, filepath.Join(c.BinDir, bin), args, c.env[name], c.opts.Detached)
	if err != nil {
		return err
	}
	c.procs[name] = p
	return nil
}

// StopComponent stops one component gracefully.
func (c *Cluster) StopComponent(name string) {
	if p := c.procs[name]; p != nil {
		p.stop()
		delete(c.procs, name)
		_ = os.Remove(filepath.Join(c.Dir, "pids", name+".pid"))
	}
}

// Stop stops every process the cluster started, in reverse order, and waits for each;
// real nodes first, with everything they mounted, created or left running.
func (c *Cluster) Stop() {
	c.stopRealNodes()
	for i := len(c.order) - 1; i >= 0; i-- {
		c.StopComponent(c.order[i])
	}
}

func (c *Cluster) writeAdminKubeconfig() error {
	admin, err := c.ca.IssueClient("admin", []string{"system:masters"}, certValidity)
	if err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Kubeconfig, c.APIServerURL, c.ca.CertPEM, admin); err != nil {
		return err
	}
	if c.Config, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig); err != nil {
		return err
	}
	c.Config.QPS, c.Config.Burst = 200, 400
	c.Client, err = kubernetes.NewForConfig(c.Config)
	return err
}

// writeKubeconfig writes a kubeconfig that authenticates with the client certificate.
func writeKubeconfig(file, server string, caPEM []byte, client *certs.KeyPair) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{ClientCertificateData: client.CertPEM, ClientKeyData: client.KeyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: "user"}
	cfg.CurrentContext = "local"
	return clientcmd.WriteToFile(*cfg, file)
}

func (c *Cluster) waitAPIServer(ctx context.Context) error {
	return c.poll(ctx, "kube-apiserver ready", 60*time.Second, func(ctx context.Context) (bool, error) {
		body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}

// waitControllers waits for proof that the controller manager runs (the default
// ServiceAccount exists) and that the scheduler serves.
func (c *Cluster) waitControllers(ctx context.Context) error {
	err := c.poll(ctx, "kube-controller-manager (default ServiceAccount)", 90*time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return err
	}
	schedPort := strings.TrimPrefix(c.args["kube-scheduler"][3], "--secure-port=")
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback health probe of our own process
	return c.poll(ctx, "kube-scheduler healthz", 60*time.Second, func(context.Context) (bool, error) {
		resp, err := insecure.Get("https://127.0.0.1:" + schedPort + "/healthz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// poll waits for cond, failing early when any component has exited.
func (c *Cluster) poll(ctx context.Context, what string, timeout time.Duration, cond wait.ConditionWithContextFunc) error {
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		for name, p := range c.procs {
			if p.exited() {
				return false, fmt.Errorf("%s exited", name)
			}
		}
		return cond(ctx)
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w", what, err)
	}
	return nil
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) { return freePorts(n) }

func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Namespace creates a namespace (labels optional) and waits for its default
// ServiceAccount, without which pods cannot be created.
func (c *Cluster) Namespace(ctx context.Context, name string, labels map[string]string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	return c.poll(ctx, "ServiceAccount default in "+name, 30*time.Second, func(ctx context.Context) (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts(name).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

// DefaultStateDir is where `make cluster-up` keeps its cluster: outside the repository,
// beside the binary cache.
func DefaultStateDir() string {
	if dir := os.Getenv("IMAGE_PREWARM_CACHE"); dir != "" {
		return filepath.Join(dir, "cluster")
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "image-prewarm", "cluster")
}

// RunTests is a TestMain body: it starts a cluster in a fresh directory, hands it to
// use (which stores it for the tests), runs the tests and stops every process again.
// It returns the exit code for os.Exit.
func RunTests(m interface{ Run() int }, opts Options, use func(*Cluster)) int {
	dir, err := os.MkdirTemp("", "image-prewarm-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if os.Getenv("IMAGE_PREWARM_KEEP_LOGS") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Fprintln(os.Stderr, "keeping cluster state and logs in", dir)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	if opts.Dir == "" {
		opts.Dir = filepath.Join(dir, "cluster")
	}
	started := time.Now()
	c, err := Start(ctx, opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Stop()
	fmt.Fprintf(os.Stderr, "cluster: started in %v (%d real nodes)\n", time.Since(started).Round(100*time.Millisecond), opts.RealNodes)
	use(c)
	return m.Run()
}
