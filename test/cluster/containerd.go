package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cniBinDir is where Debian's containernetworking-plugins puts the plugins.
const cniBinDir = "/usr/lib/cni"

// SandboxImage is the pause image every real node runs its pod sandboxes from. No image
// can be downloaded here, so the cluster builds it (a static program that waits for a
// signal) and imports it into each node's containerd before kubelet starts.
const SandboxImage = "image-prewarm.local/pause:1"

// containerdConfig keeps every path under the node's directory and sets what this
// machine needs (REAL-NODE.md): restrict_oom_score_adj because root cannot lower
// oom_score_adj here, our pause image, our registry's CA through certs.d, no NRI socket.
const containerdConfig = `version = 3
root = %[1]q
state = %[2]q
temp = %[3]q
[grpc]
  address = %[4]q
[ttrpc]
  address = "%[4]s.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = %[5]q
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = %[6]q
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = %[7]q
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = [%[8]q]
    conf_dir = %[9]q
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[10]q
        Root = %[11]q
        SystemdCgroup = false
`

func (n *RealNode) startContainerd(ctx context.Context) error {
	c := n.cluster
	dir := filepath.Join(n.Dir, "containerd")
	n.ContainerdSocket = filepath.Join(dir, "containerd.sock")
	cniConf := filepath.Join(dir, "cni")
	for _, d := range []string{"root", "state", "tmp", "opt", "certs.d", "cni"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(cniConf, "10-bridge.conflist"), []byte(n.net.cniConfig(filepath.Join(dir, "ipam"))), 0o644); err != nil {
		return err
	}
	if err := n.trustRegistry(filepath.Join(dir, "certs.d")); err != nil {
		return err
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		return fmt.Errorf("runc: %w (test/cluster/node-packages.sh installs it)", err)
	}
	config := fmt.Sprintf(containerdConfig, filepath.Join(dir, "root"), filepath.Join(dir, "state"),
		filepath.Join(dir, "tmp"), n.ContainerdSocket, filepath.Join(dir, "opt"), SandboxImage,
		filepath.Join(dir, "certs.d"), cniBinDir, cniConf, runc, filepath.Join(dir, "runc"))
	configFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configFile, []byte(config), 0o644); err != nil {
		return err
	}
	name := n.component("containerd")
	c.args[name] = []string{"--config=" + configFile, "--log-level=info"}
	c.binaries[name] = "containerd"
	// containerd finds its shim on PATH; the shim finds nothing else there.
	c.env[name] = []string{"PATH=" + c.BinDir + ":" + os.Getenv("PATH")}
	c.order = append(c.order, name)
	if err := c.StartComponent(name); err != nil {
		return err
	}
	if err := c.poll(ctx, "containerd of "+n.Name, 30*time.Second, func(ctx context.Context) (bool, error) {
		return n.ctr(ctx, "version") == nil, nil
	}); err != nil {
		return err
	}
	return n.importSandboxImage(ctx)
}

// trustRegistry writes certs.d/<host>/hosts.toml with the cluster CA for the registry
// and for every extra host (such as a throttling proxy in front of it).
func (n *RealNode) trustRegistry(certsDir string) error {
	hosts := append([]string{}, n.cluster.registryHosts()...)
	for _, host := range hosts {
		d := filepath.Join(certsDir, host)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		toml := fmt.Sprintf("server = %q\n[host.%q]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = %q\n",
			"https://"+host, "https://"+host, n.cluster.CAFile)
		if err := os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(toml), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// importSandboxImage loads the pause image archive that the cluster built.
func (n *RealNode) importSandboxImage(ctx context.Context) error {
	archive := filepath.Join(n.cluster.Dir, "images", "pause.tar")
	return n.ctr(ctx, "-n", "k8s.io", "images", "import", "--platform", "linux/"+runtime.GOARCH, archive)
}

// ctr runs containerd's own client against this node's containerd, for at most a minute.
func (n *RealNode) ctr(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	_, err := n.ctrOutput(ctx, args...)
	return err
}

// Ctr runs ctr in the CRI namespace (k8s.io) of the node's containerd and returns its
// output: tests inspect and remove images with it.
func (n *RealNode) Ctr(ctx context.Context, args ...string) (string, error) {
	return n.ctrOutput(ctx, append([]string{"-n", "k8s.io"}, args...)...)
}

func (n *RealNode) ctrOutput(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(n.cluster.BinDir, "ctr"), append([]string{"--address", n.ContainerdSocket}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// killShims ends what containerd's runc shims left running once kubelet is gone: the
// shims run in their own sessions, so stopping containerd would not end them. Each
// task's bundle records the container's PID (init.pid) and the shim's (shim.pid); both
// are killed by PID, and the shim's socket (named in the bundle's address file) removed.
func killShims(stateDir string) {
	bundles, _ := filepath.Glob(filepath.Join(stateDir, "io.containerd.runtime.v2.task", "*", "*"))
	for _, b := range bundles {
		for _, f := range []string{"init.pid", "shim.pid"} {
			if pid := readPID(filepath.Join(b, f)); pid > 1 {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				waitGone(pid, 5*time.Second)
			}
		}
		if addr, err := os.ReadFile(filepath.Join(b, "address")); err == nil {
			sock := strings.TrimPrefix(strings.TrimSpace(string(addr)), "unix://")
			if strings.HasPrefix(sock, "/") {
				_ = os.Remove(sock)
			}
		}
	}
}

func readPID(file string) int {
	raw, err := os.ReadFile(file)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	return pid
}

func waitGone(pid int, timeout time.Duration) {
	for deadline := time.Now().Add(timeout); alive(pid) && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
}
