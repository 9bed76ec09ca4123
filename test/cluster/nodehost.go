package cluster

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The host-side pieces a real node needs, each created by the cluster and removed by it:
// a bridge with the node's address, a cgroup root for its pods, and the mounts its
// kubelet and containerd make. Nothing outside them is touched.

// nodeNetwork is a bridge without ports holding the node's IP (kubelet refuses a loopback
// node IP and this kernel has no dummy module); the CNI bridge plugin attaches pods to it.
type nodeNetwork struct {
	bridge string
	// subnet is a.b.c.0/24: the node is a.b.c.1, pods get a.b.c.10-250.
	prefix string
	nodeIP string
}

func createNodeNetwork(i int) (*nodeNetwork, error) {
	suffix, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	used, err := exec.Command("ip", "-4", "-o", "addr").Output()
	if err != nil {
		return nil, fmt.Errorf("ip addr: %w", err)
	}
	// 10.234.0.0/16 belongs to test nodes; a random /24 in it avoids another run's bridge.
	start := make([]byte, 1)
	if _, err := rand.Read(start); err != nil {
		return nil, err
	}
	for try := 0; try < 250; try++ {
		prefix := fmt.Sprintf("10.234.%d", (int(start[0])+i+try)%250+1)
		if strings.Contains(string(used), " "+prefix+".") {
			continue
		}
		n := &nodeNetwork{bridge: "ipw" + suffix, prefix: prefix, nodeIP: prefix + ".1"}
		return n, n.create()
	}
	return nil, errors.New("no free /24 in 10.234.0.0/16 for a node bridge")
}

func (n *nodeNetwork) create() error {
	for _, args := range [][]string{
		{"link", "add", "name", n.bridge, "type", "bridge"},
		{"addr", "add", n.nodeIP + "/24", "dev", n.bridge},
		{"link", "set", n.bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			_ = n.remove()
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// remove deletes the bridge (the pods' veths went with their network namespaces) and
// the CNI result cache entries of the node's network, which libcni keeps in
// /var/lib/cni/results/<network>-<container>-<interface> for pods never torn down.
func (n *nodeNetwork) remove() error {
	cached, _ := filepath.Glob(filepath.Join(cniResultsDir, n.bridge+"-*"))
	for _, f := range cached {
		_ = os.Remove(f)
	}
	out, err := exec.Command("ip", "link", "del", n.bridge).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "Cannot find device") {
		return fmt.Errorf("ip link del %s: %w: %s", n.bridge, err, out)
	}
	return nil
}

const cniResultsDir = "/var/lib/cni/results"

// cniConfig attaches pods to the node's bridge with host-local addresses. No gateway, no
// masquerade: nothing needs sysctls or iptables, and pods reach nothing off the node.
func (n *nodeNetwork) cniConfig(ipamDir string) string {
	return fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [{
  "type": "bridge", "bridge": %q, "isGateway": false, "ipMasq": false, "hairpinMode": false,
  "ipam": {"type": "host-local", "dataDir": %q,
           "ranges": [[{"subnet": "%s.0/24", "rangeStart": "%s.10", "rangeEnd": "%s.250"}]]}}]}
`, n.bridge, n.bridge, ipamDir, n.prefix, n.prefix, n.prefix)
}

// cgroupRoot is the node's own cgroup in every v1 hierarchy (kubelet's cgroupRoot), so
// its kubepods tree never mixes with the machine's and is removed whole.
type cgroupRoot struct {
	name  string   // /<name>, as kubelet is told
	paths []string // one per hierarchy
}

const cgroupMount = "/sys/fs/cgroup"

func createCgroupRoot(name string) (*cgroupRoot, error) {
	hierarchies, err := os.ReadDir(cgroupMount)
	if err != nil {
		return nil, err
	}
	cg := &cgroupRoot{name: "/" + name}
	for _, h := range hierarchies {
		if !h.IsDir() {
			continue
		}
		p := filepath.Join(cgroupMount, h.Name(), name)
		if err := os.Mkdir(p, 0o755); err != nil {
			_ = cg.remove()
			return nil, fmt.Errorf("create cgroup %s: %w", p, err)
		}
		cg.paths = append(cg.paths, p)
		if h.Name() == "cpuset" { // a new cpuset has no CPUs or memory nodes until given its parent's
			if err := inheritCpuset(p); err != nil {
				_ = cg.remove()
				return nil, err
			}
		}
	}
	return cg, nil
}

func inheritCpuset(p string) error {
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		v, err := os.ReadFile(filepath.Join(filepath.Dir(p), f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(p, f), v, 0o644); err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(p, f), err)
		}
	}
	return nil
}

// remove deletes the node's cgroups, deepest first. A cgroup whose last process has just
// been killed can stay busy for a moment, so each rmdir is retried briefly.
func (cg *cgroupRoot) remove() error {
	var errs []error
	for _, root := range cg.paths {
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
		for _, d := range dirs {
			errs = append(errs, rmdirRetry(d))
		}
	}
	return errors.Join(errs...)
}

func rmdirRetry(dir string) error {
	var err error
	for i := 0; i < 50; i++ {
		if err = syscall.Rmdir(dir); err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("rmdir %s: %w", dir, err)
}

// unmountUnder unmounts every mount point below dir (kubelet's tmpfs volumes, containerd's
// overlay root filesystems, shm and network namespaces), deepest first.
func unmountUnder(dir string) error {
	points, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range points {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// mountsUnder lists the mount points below dir from /proc/self/mountinfo, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(unescapeMount(fields[4]), dir+"/") {
			points = append(points, unescapeMount(fields[4]))
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	return points, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes of space, tab, newline and backslash.
func unescapeMount(s string) string {
	r := strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`)
	return r.Replace(s)
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// randomToken is a password for test users: fresh per cluster, so it works as a sentinel.
func randomToken() (string, error) {
	h, err := randomHex(12)
	return "Pw-" + h, err
}

// hostRecord is what a real node made on the host, written beside its state so that
// `cluster down`, run by another process, can remove it too.
type hostRecord struct {
	Bridge  string   `json:"bridge"`
	Cgroups []string `json:"cgroups"`
	// Dirs are fixed paths that kubelet, the shims or libcni create whatever they are
	// told, and that did not exist before the node started.
	Dirs []string `json:"dirs"`
}

// fixedDirs are created at fixed paths by the node's components: kubelet's device
// plugin socket directory, the shims' socket directory, libcni's result cache.
var fixedDirs = []string{"/var/lib/kubelet", "/var/lib/kubelet/device-plugins", "/run/containerd", "/run/containerd/s", "/var/lib/cni", "/var/lib/cni/results"}

// absentDirs returns the fixedDirs that do not exist yet.
func absentDirs() []string {
	var absent []string
	for _, d := range fixedDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			absent = append(absent, d)
		}
	}
	return absent
}

// removeEmptyDirs removes the directories, deepest first, once empty. Sockets in them
// go first: a stopped kubelet leaves its device-plugin socket (kubelet.sock) behind, and
// the directories were the node's own (they did not exist before it started).
func removeEmptyDirs(dirs []string) {
	sorted := append([]string(nil), dirs...)
	sort.Slice(sorted, func(i, j int) bool { return len(sorted[i]) > len(sorted[j]) })
	for _, d := range sorted {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if e.Type()&os.ModeSocket != 0 {
				_ = os.Remove(filepath.Join(d, e.Name()))
			}
		}
		_ = syscall.Rmdir(d)
	}
}

const hostRecordFile = "host.json"

func (n *RealNode) recordHost() error {
	rec := hostRecord{Bridge: n.net.bridge, Cgroups: n.cgroups.paths, Dirs: n.createdDirs}
	raw, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(n.Dir, hostRecordFile), raw, 0o644)
}

// cleanRecordedNodes removes what the real nodes of a detached cluster left after their
// processes were stopped: shim processes, mounts, cgroups, bridges.
func cleanRecordedNodes(dir string) error {
	records, _ := filepath.Glob(filepath.Join(dir, "nodes", "*", hostRecordFile))
	var errs []error
	for _, file := range records {
		raw, err := os.ReadFile(file)
		var rec hostRecord
		if err == nil {
			err = json.Unmarshal(raw, &rec)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		nodeDir := filepath.Dir(file)
		killShims(filepath.Join(nodeDir, "containerd", "state"))
		errs = append(errs, unmountUnder(nodeDir), (&cgroupRoot{paths: rec.Cgroups}).remove(), (&nodeNetwork{bridge: rec.Bridge}).remove())
		removeEmptyDirs(rec.Dirs)
	}
	return errors.Join(errs...)
}
