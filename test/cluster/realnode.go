package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"sigs.k8s.io/yaml"
)

// RealNodeLabel marks nodes run by a real kubelet and containerd (not kwok).
const RealNodeLabel = "image-prewarm.io/real-node"

// RealNode is one real kubelet with its own containerd, on an address of a bridge that
// the cluster created for it. Everything it writes lives under Dir.
type RealNode struct {
	Name string
	// IP is the node's InternalIP, on the node's bridge.
	IP  string
	Dir string
	// ContainerdSocket is the CRI endpoint, for ctr in tests.
	ContainerdSocket string
	net              *nodeNetwork
	cgroups          *cgroupRoot
	createdDirs      []string // fixed host paths its components create (see fixedDirs)
	cluster          *Cluster
}

// startRealNode brings up node i: its network, containerd (with our pause image
// imported), then kubelet, and waits until the node is Ready.
func (c *Cluster) startRealNode(ctx context.Context, i int) (_ *RealNode, err error) {
	name := fmt.Sprintf("real-%d", i)
	n := &RealNode{Name: name, Dir: filepath.Join(c.Dir, "nodes", name), cluster: c}
	c.realNodes = append(c.realNodes, n) // Stop cleans up whatever part started
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return nil, err
	}
	if n.net, err = createNodeNetwork(i); err != nil {
		return nil, err
	}
	n.IP = n.net.nodeIP
	n.createdDirs = absentDirs()
	if n.cgroups, err = createCgroupRoot("image-prewarm-" + filepath.Base(c.Dir) + "-" + name); err != nil {
		return nil, err
	}
	if err := n.recordHost(); err != nil {
		return nil, err
	}
	if err := n.startContainerd(ctx); err != nil {
		return nil, err
	}
	if err := n.startKubelet(); err != nil {
		return nil, err
	}
	return n, c.WaitNodesReady(ctx, name)
}

func (n *RealNode) component(part string) string { return part + "-" + n.Name }

func (n *RealNode) startKubelet() error {
	c := n.cluster
	ports, err := freePorts(2)
	if err != nil {
		return err
	}
	kubeconfig, err := c.writeNodeKubeconfig(n)
	if err != nil {
		return err
	}
	serving, err := c.ca.IssueServing([]string{n.IP}, certValidity)
	if err != nil {
		return err
	}
	certFile, keyFile, err := writePair(n.Dir, "kubelet-serving", serving)
	if err != nil {
		return err
	}
	config := n.kubeletConfig(ports[0], ports[1], certFile, keyFile)
	raw, err := yaml.Marshal(config)
	if err != nil {
		return err
	}
	configFile := filepath.Join(n.Dir, "kubelet.yaml")
	if err := os.WriteFile(configFile, raw, 0o644); err != nil {
		return err
	}
	name := n.component("kubelet")
	c.args[name] = []string{
		"--config=" + configFile, "--kubeconfig=" + kubeconfig,
		"--root-dir=" + filepath.Join(n.Dir, "kubelet"), "--cert-dir=" + filepath.Join(n.Dir, "kubelet-pki"),
		"--hostname-override=" + n.Name, "--node-ip=" + n.IP,
		"--node-labels=" + RealNodeLabel + "=true", "--v=2",
	}
	c.binaries[name] = "kubelet"
	c.order = append(c.order, name)
	return c.StartComponent(name)
}

// kubeletConfig is the typed KubeletConfiguration; the comments say which settings this
// machine requires (REAL-NODE.md) and which keep the node from touching anything outside Dir.
func (n *RealNode) kubeletConfig(port, healthzPort int, certFile, keyFile string) *kubeletv1beta1.KubeletConfiguration {
	noResolver := filepath.Join(n.Dir, "resolv.conf") // empty: pods never use the machine's resolver
	_ = os.WriteFile(noResolver, nil, 0o644)
	return &kubeletv1beta1.KubeletConfiguration{
		TypeMeta:                 metav1.TypeMeta{APIVersion: "kubelet.config.k8s.io/v1beta1", Kind: "KubeletConfiguration"},
		Address:                  n.IP,
		Port:                     int32(port),
		ReadOnlyPort:             0,
		HealthzBindAddress:       "127.0.0.1",
		HealthzPort:              new(int32(healthzPort)),
		TLSCertFile:              certFile,
		TLSPrivateKeyFile:        keyFile,
		ContainerRuntimeEndpoint: "unix://" + n.ContainerdSocket,
		Authentication: kubeletv1beta1.KubeletAuthentication{
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: n.cluster.CAFile},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: new(false)},
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: new(false)},
		},
		Authorization: kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeAlwaysAllow},
		// Kubelets ≥ 1.35 refuse cgroup v1 unless told; the hierarchies stay as they are.
		FailCgroupV1: new(false),
		CgroupDriver: "cgroupfs",
		CgroupRoot:   n.cgroups.name,
		// Root here cannot lower oom_score_adj (no CAP_SYS_RESOURCE).
		OOMScoreAdj:    new(int32(0)),
		FailSwapOn:     new(false),
		ResolverConfig: &noResolver,
		PodLogsDir:     filepath.Join(n.Dir, "pod-logs"),
		// The machine's disk is shared: only a truly full disk may evict or collect images
		// in a test, and images are never collected behind a test's back.
		EvictionHard:                map[string]string{"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
		ImageGCHighThresholdPercent: new(int32(100)),
		ImageGCLowThresholdPercent:  new(int32(99)),
		ImageMinimumGCAge:           metav1.Duration{Duration: 24 * time.Hour},
		RegisterNode:                new(true),
		SerializeImagePulls:         new(true),
		SyncFrequency:               metav1.Duration{Duration: 10 * time.Second},
		FileCheckFrequency:          metav1.Duration{Duration: 10 * time.Second},
		StaticPodPath:               "",
	}
}

// writeNodeKubeconfig gives the kubelet a client certificate of system:node:<name>, so
// the Node authorizer and NodeRestriction treat it as that node.
func (c *Cluster) writeNodeKubeconfig(n *RealNode) (string, error) {
	cert, err := c.ca.IssueClient("system:node:"+n.Name, []string{"system:nodes"}, certValidity)
	if err != nil {
		return "", err
	}
	file := filepath.Join(n.Dir, "kubelet.kubeconfig")
	return file, writeKubeconfig(file, c.APIServerURL, c.ca.CertPEM, cert)
}

// stop ends the node: kubelet, every container process left by containerd's shims (by
// the PIDs they recorded), containerd; then unmounts what they mounted and removes the
// node's cgroups and network. It is safe on a node that only partly started.
func (n *RealNode) stop() error {
	c := n.cluster
	c.StopComponent(n.component("kubelet"))
	killShims(filepath.Join(n.Dir, "containerd", "state"))
	c.StopComponent(n.component("containerd"))
	var errs []error
	errs = append(errs, unmountUnder(n.Dir))
	if n.cgroups != nil {
		errs = append(errs, n.cgroups.remove())
	}
	if n.net != nil {
		errs = append(errs, n.net.remove())
	}
	removeEmptyDirs(n.createdDirs)
	return errors.Join(errs...)
}

// RealNodes returns the cluster's real nodes.
func (c *Cluster) RealNodes() []*RealNode { return c.realNodes }

// startRealNodes starts the registry, puts the pause image and the project's image in
// place, then each real node.
func (c *Cluster) startRealNodes(ctx context.Context) error {
	if c.opts.RealNodes == 0 {
		return nil
	}
	var err error
	if c.Registry, err = c.startRegistry(ctx, privateRegistry); err != nil {
		return err
	}
	if c.PublicRegistry, err = c.startRegistry(ctx, publicRegistry); err != nil {
		return err
	}
	if err := c.prepareImages(ctx); err != nil {
		return err
	}
	for i := range c.opts.RealNodes {
		if _, err := c.startRealNode(ctx, i); err != nil {
			return err
		}
	}
	return nil
}

// stopRealNodes drains and stops every real node, newest first. Cleanup errors are
// printed: they mean something was left on the machine, which a person must know.
func (c *Cluster) stopRealNodes() {
	for i := len(c.realNodes) - 1; i >= 0; i-- {
		n := c.realNodes[i]
		n.drain()
		if err := n.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: cleaning up real node %s: %v\n", n.Name, err)
		}
	}
	c.realNodes = nil
}

// drain deletes the pods bound to the node and gives kubelet a moment to tear their
// sandboxes down through CNI, so their network namespaces and veths go the regular way.
func (n *RealNode) drain() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pods := n.cluster.Client.CoreV1().Pods(metav1.NamespaceAll)
	list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + n.Name})
	if err != nil || len(list.Items) == 0 {
		return
	}
	for _, p := range list.Items {
		_ = n.cluster.Client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	}
	_ = n.cluster.poll(ctx, "sandboxes of "+n.Name+" stopped", 20*time.Second, func(ctx context.Context) (bool, error) {
		out, err := n.Ctr(ctx, "tasks", "ls", "-q")
		return err != nil || strings.TrimSpace(out) == "", nil
	})
}

// Footprint is what a real node holds on the host at one moment: tests take it while
// the node runs and check after Stop that none of it is left.
type Footprint struct {
	PIDs    []int // kubelet, containerd, every shim and container init
	Mounts  []string
	Cgroups []string
	Bridge  string
	Dirs    []string // fixed host directories the node created
}

// Footprint reads the node's processes (by recorded PID), mounts, cgroups and bridge.
func (n *RealNode) Footprint() (Footprint, error) {
	f := Footprint{Cgroups: n.cgroups.paths, Bridge: n.net.bridge, Dirs: n.createdDirs}
	for _, part := range []string{"kubelet", "containerd"} {
		if p := n.cluster.procs[n.component(part)]; p != nil {
			f.PIDs = append(f.PIDs, p.cmd.Process.Pid)
		}
	}
	bundles, _ := filepath.Glob(filepath.Join(n.Dir, "containerd", "state", "io.containerd.runtime.v2.task", "*", "*"))
	for _, b := range bundles {
		for _, file := range []string{"init.pid", "shim.pid"} {
			if pid := readPID(filepath.Join(b, file)); pid > 1 {
				f.PIDs = append(f.PIDs, pid)
			}
		}
	}
	var err error
	f.Mounts, err = mountsUnder(n.Dir)
	return f, err
}

// Leftovers lists what of a footprint is still on the host.
func (f Footprint) Leftovers() []string {
	var left []string
	for _, pid := range f.PIDs {
		if alive(pid) {
			left = append(left, fmt.Sprintf("process %d", pid))
		}
	}
	for _, m := range f.Mounts {
		if still, _ := isMounted(m); still {
			left = append(left, "mount "+m)
		}
	}
	for _, cg := range f.Cgroups {
		if _, err := os.Stat(cg); err == nil {
			left = append(left, "cgroup "+cg)
		}
	}
	for _, d := range f.Dirs {
		if _, err := os.Stat(d); err == nil {
			left = append(left, "directory "+d)
		}
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", f.Bridge)); err == nil {
		left = append(left, "bridge "+f.Bridge)
	}
	return left
}

func isMounted(point string) (bool, error) {
	points, err := mountsUnder(filepath.Dir(point))
	for _, p := range points {
		if p == point {
			return true, err
		}
	}
	return false, err
}
