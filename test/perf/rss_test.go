package perf

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

// TestControllerPeakRSS: the controller binary's peak RSS (VmHWM) over one run of N kwok
// nodes, N = 200, 500 and 1000, window 50, pulls of 2–4 s. Finished Jobs leave once
// recorded and the Job and pod informers keep only what decisions read, so the memory
// should follow the window (50 Jobs) more than the cluster; what grows with N is the
// node cache and the status record.
func TestControllerPeakRSS(t *testing.T) {
	kube := needCluster(t)
	binary := buildController(t)
	peaks := map[int]float64{}
	for _, n := range []int{200, 500, 1000} {
		t.Run(strconv.Itoa(n), func(t *testing.T) { peaks[n] = peakRSS(t, kube, binary, n) })
	}
	note := "VmHWM of the image-prewarm binary (controller only) over one run, window 50; nodes deleted between sizes"
	for _, n := range []int{200, 500, 1000} {
		if peaks[n] > 0 {
			results.Add(Figure{Name: fmt.Sprintf("controller peak RSS, %d kwok nodes", n), Unit: "MiB", Values: []float64{peaks[n]}, Note: note})
		}
	}
	for _, n := range []int{500, 1000} {
		if peaks[n] > 0 && peaks[200] > 0 {
			results.Add(Figure{Name: fmt.Sprintf("controller peak RSS, %d ÷ 200 kwok nodes", n), Goal: "≤ 1.3", Unit: "ratio",
				Values: []float64{peaks[n] / peaks[200]}, Note: "same runs"})
		}
	}
}

// peakRSS creates n nodes, runs the controller binary on a spec for them until the run
// is done and its Jobs are gone, and returns the process's peak RSS in MiB.
func peakRSS(t *testing.T, kube *cluster.Cluster, binary string, n int) float64 {
	label := fmt.Sprintf("rss%d", n)
	createNodes(t, kube, label, n, label)
	p := startBinary(t, kube, binary, label, "")
	defer p.stop(t)
	start := applySpec(t, kube, label, "spec", label, 50, "harbor.example.com/ml/model:rss")
	end := waitDone(t, kube, label, "spec", "")
	waitJobsGone(t, kube, label)
	peak, err := vmHWM(p.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d nodes: run %v, 0 Jobs %v after it; peak RSS %.1f MiB", n, end.Sub(start).Round(time.Second), time.Since(end).Round(time.Second), peak)
	return peak
}

// controllerProcess is the image-prewarm binary running the controller alone on one
// namespace.
type controllerProcess struct {
	cmd     *exec.Cmd
	logFile string
	log     *os.File
}

// startBinary starts the binary on namespace ns (created if need be); metricsAddr
// serves /metrics and /readyz over plain HTTP, "" none.
func startBinary(t *testing.T, kube *cluster.Cluster, binary, ns, metricsAddr string) *controllerProcess {
	t.Helper()
	if err := kube.Namespace(t.Context(), ns, nil); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--kubeconfig="+kube.Kubeconfig, "--namespace="+ns, "--noop-image=example.com/noop:1",
		"--leader-elect=false", "--webhook=false", "--task-api=false", "--metrics-addr="+metricsAddr, "--metrics-secure=false")
	p := &controllerProcess{cmd: cmd, logFile: filepath.Join(t.TempDir(), "controller.log")}
	var err error
	if p.log, err = os.Create(p.logFile); err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return p
}

// stop interrupts the process and waits for it; a failed test shows the log's end.
func (p *controllerProcess) stop(t *testing.T) {
	_ = p.cmd.Process.Signal(os.Interrupt)
	_ = p.cmd.Wait()
	p.log.Close()
	if t.Failed() {
		raw, _ := os.ReadFile(p.logFile)
		t.Logf("controller log:\n%s", raw[max(0, len(raw)-4000):])
	}
}

// waitJobsGone waits until the namespace holds no prewarm Job: a run's work ends with
// the deletion of its recorded Jobs.
func waitJobsGone(t *testing.T, kube *cluster.Cluster, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := kube.Client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("Jobs left after the run: %v", err)
	}
}

// buildController builds cmd/image-prewarm into the test's temporary directory.
func buildController(t *testing.T) string {
	t.Helper()
	out, err := prewarmtest.BuildController(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// vmHWM reads a process's peak resident set size, in MiB, from /proc.
func vmHWM(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
