// Package fault proves the controller survives crashes, failover, an API server outage
// and nodes vanishing mid-pull. The controller runs as a real process (the binary built
// from cmd/image-prewarm) so that "killed" means SIGKILL, not a polite cancel.
//
// `make test` runs the short form; `make fault` (IMAGE_PREWARM_FAULT=full) the full one:
// 200 nodes and 5 kills.
package fault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

var (
	kube   *cluster.Cluster
	binary string
	full   = os.Getenv("IMAGE_PREWARM_FAULT") == "full"
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "image-prewarm-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "image-prewarm")
	build := exec.Command("go", "build", "-o", binary, "github.com/image-prewarm/image-prewarm/cmd/image-prewarm")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build controller: %v\n%s", err, out)
		os.Exit(1)
	}
	pulls := cluster.PullBehaviour{Delay: time.Second, Jitter: 2 * time.Second}
	code := cluster.RunTests(m, cluster.Options{Pulls: pulls}, func(c *cluster.Cluster) { kube = c })
	if os.Getenv("IMAGE_PREWARM_KEEP_LOGS") == "" {
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// controllerProc is one image-prewarm process.
type controllerProc struct {
	identity string
	cmd      *exec.Cmd
	done     chan struct{}
}

func startController(t *testing.T, ns, identity string) *controllerProc {
	t.Helper()
	log, err := os.Create(filepath.Join(filepath.Dir(binary), ns+"-"+identity+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, "--kubeconfig="+kube.Kubeconfig, "--namespace="+ns, "--noop-image=example.com/noop:1",
		"--identity="+identity, "--lease-duration=4s", "--webhook=false", "--task-api=false", "--metrics-addr=", "--log-format=json")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &controllerProc{identity: identity, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); log.Close(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func (p *controllerProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// setup creates a restricted namespace, n nodes labeled for it, credentials, and a spec.
func setup(t *testing.T, n, window int) (ns string, nodes []string) {
	t.Helper()
	ns = strings.ToLower(t.Name())
	if err := kube.Namespace(t.Context(), ns, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil {
		t.Fatal(err)
	}
	specs := cluster.FakeNodes(ns, n)
	for i := range specs { // they join with the spec's startup taint
		specs[i].Labels = map[string]string{"fault": ns}
		specs[i].Taints = []corev1.Taint{{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule}}
	}
	if err := kube.CreateNodes(t.Context(), specs...); err != nil {
		t.Fatal(err)
	}
	nodes = cluster.Names(specs)
	t.Cleanup(func() {
		for _, name := range nodes {
			_ = kube.DeleteNode(context.Background(), name)
		}
	})
	if err := kube.WaitNodesReady(t.Context(), nodes...); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "robot", Namespace: ns}, Type: corev1.SecretTypeBasicAuth,
		StringData: map[string]string{"username": "robot", "password": "fault-test"}}
	if _, err := kube.Client.CoreV1().Secrets(ns).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns, nodes
}

func applySpec(t *testing.T, ns string, window int) {
	t.Helper()
	spec := fmt.Sprintf("registries: [{server: harbor.example.com, credentialsSecret: robot}]\nimages: [harbor.example.com/ml/a:1, nginx:1.27]\nnodeSelector: {fault: %s}\nrollout: {maxConcurrentNodes: %d, startupTaint: %s, nodeLabel: true}\n", ns, window, startupTaint)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "spec", Namespace: ns, Labels: map[string]string{config.ConfigLabel: "true"}},
		Data: map[string]string{config.SpecKey: spec}}
	if _, err := kube.Client.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// jobLedger counts the distinct Jobs created per node, from two sources: an informer
// while the run goes on, and at the end the Job controller's Events. The controller
// deletes Jobs once recorded, so the Jobs left say nothing about duplicates, and an
// informer that is still reconnecting after an API server outage can miss a Job that
// was created and deleted meanwhile; the Events (kept for an hour) still name it.
type jobLedger struct {
	ns     string
	mu     sync.Mutex
	byName map[string]map[types.UID]bool // Job name → UIDs
	runs   map[string]bool
}

func watchJobs(t *testing.T, ns string) *jobLedger {
	t.Helper()
	factory := informers.NewSharedInformerFactoryWithOptions(kube.Client, 0, informers.WithNamespace(ns))
	l := &jobLedger{ns: ns, byName: map[string]map[types.UID]bool{}, runs: map[string]bool{}}
	record := func(obj any) {
		if job, ok := obj.(*batchv1.Job); ok {
			l.add(job.Name, job.UID, job.Labels[jobs.LabelRun])
		}
	}
	_, _ = factory.Batch().V1().Jobs().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: record, UpdateFunc: func(_, cur any) { record(cur) },
	})
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	factory.Start(stop)
	factory.WaitForCacheSync(stop)
	return l
}

func (l *jobLedger) add(name string, uid types.UID, run string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byName[name] == nil {
		l.byName[name] = map[types.UID]bool{}
	}
	l.byName[name][uid] = true
	if run != "" {
		l.runs[run] = true
	}
}

func (l *jobLedger) nodesWithJobs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byName)
}

// addJobEvents adds every Job that an Event of the Job controller names.
func (l *jobLedger) addJobEvents(t *testing.T) {
	t.Helper()
	events, err := kube.Client.CoreV1().Events(l.ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.kind=Job"})
	if err != nil {
		t.Fatalf("list Job Events: %v", err)
	}
	before := l.jobs()
	for _, ev := range events.Items {
		l.add(ev.InvolvedObject.Name, ev.InvolvedObject.UID, "")
	}
	t.Logf("%d Job Events; %d Jobs named only by them", len(events.Items), l.jobs()-before)
}

func (l *jobLedger) jobs() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, uids := range l.byName {
		n += len(uids)
	}
	return n
}

// assertOneJobPerNode: no duplicate Job for any node, and no node lost. Job names are
// fixed per run and node, so a duplicate is a second UID under one name.
func (l *jobLedger) assertOneJobPerNode(t *testing.T, nodes []string) {
	t.Helper()
	l.addJobEvents(t)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range nodes {
		got := 0
		for run := range l.runs {
			got += len(l.byName[jobs.JobName(run, n)])
		}
		if got != 1 {
			t.Errorf("node %s had %d Jobs, want exactly 1", n, got)
		}
	}
}

func waitSucceeded(t *testing.T, ns string, total int, timeout time.Duration) *status.Status {
	t.Helper()
	var st *status.Status
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		var err error
		st, err = prewarmtest.Status(ctx, kube.Client, ns, "spec")
		return err == nil && st.Phase == status.PhaseSucceeded && st.Total == total, nil
	})
	if err != nil {
		t.Fatalf("rollout did not succeed: %v (last status %+v)", err, st)
	}
	return st
}

const startupTaint = "image-prewarm.io/prewarming"

// assertNodesUngated: once the run succeeded, no node keeps the startup taint and
// every node carries the spec's label, whatever happened to the controller meanwhile.
func assertNodesUngated(t *testing.T, nodes []string) {
	t.Helper()
	var wrong []string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		wrong = wrong[:0]
		for _, name := range nodes {
			node, err := kube.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || node.Labels[jobs.NodeLabelKey("spec")] != jobs.NodeLabelReady || slices.ContainsFunc(node.Spec.Taints, func(t corev1.Taint) bool { return t.Key == startupTaint }) {
				wrong = append(wrong, name)
			}
		}
		return len(wrong) == 0, nil
	})
	if err != nil {
		t.Fatalf("nodes still tainted or unlabelled: %v", wrong)
	}
}

func assertNoPullSecretLeft(t *testing.T, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := kube.Client.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		t.Fatalf("orphan pull Secret left: %v", err)
	}
}

func TestControllerKilledRepeatedly(t *testing.T) {
	n, kills := 60, 3
	if full {
		n, kills = 200, 5
	}
	ns, nodes := setup(t, n, 20)
	ledger := watchJobs(t, ns)
	p := startController(t, ns, "solo")
	applySpec(t, ns, 20)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for i := range kills {
		target := (i + 1) * n / (kills + 1)
		_ = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
			return ledger.nodesWithJobs() >= target, nil
		})
		time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond) // a random moment
		p.kill()
		t.Logf("kill %d at %d/%d nodes with Jobs", i+1, ledger.nodesWithJobs(), n)
		p = startController(t, ns, fmt.Sprintf("solo-%d", i+1))
	}
	waitSucceeded(t, ns, n, 5*time.Minute)
	ledger.assertOneJobPerNode(t, nodes)
	assertNoPullSecretLeft(t, ns)
	assertNodesUngated(t, nodes)
}

func TestLeaderKilledOtherReplicaFinishes(t *testing.T) {
	ns, nodes := setup(t, 30, 5)
	ledger := watchJobs(t, ns)
	replicas := map[string]*controllerProc{"a": startController(t, ns, "a"), "b": startController(t, ns, "b")}
	applySpec(t, ns, 5)
	_ = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return ledger.nodesWithJobs() >= 8, nil
	})
	lease, err := kube.Client.CoordinationV1().Leases(ns).Get(t.Context(), "image-prewarm-controller", metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		t.Fatalf("no leader lease: %v", err)
	}
	leader := *lease.Spec.HolderIdentity
	killed := time.Now()
	replicas[leader].kill()
	atKill := ledger.nodesWithJobs()
	t.Logf("killed leader %s at %d/%d nodes", leader, atKill, len(nodes))
	_ = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return ledger.nodesWithJobs() > atKill, nil
	})
	takeover := time.Since(killed)
	// The survivor must take over within the lease (4s) plus a few seconds; the slack
	// is generous because this machine is shared and noisy.
	if limit := 4*time.Second + 10*time.Second; takeover > limit {
		t.Errorf("the other replica started its first Job %v after the kill, want ≤ %v", takeover, limit)
	}
	waitSucceeded(t, ns, len(nodes), 3*time.Minute)
	t.Logf("takeover (kill → first Job by the new leader): %v; rollout finished %v after the kill", takeover.Round(10*time.Millisecond), time.Since(killed).Round(100*time.Millisecond))
	ledger.assertOneJobPerNode(t, nodes)
	assertNoPullSecretLeft(t, ns)
	assertNodesUngated(t, nodes)
}

func TestAPIServerOutage(t *testing.T) {
	ns, nodes := setup(t, 30, 5)
	ledger := watchJobs(t, ns)
	startController(t, ns, "outage")
	applySpec(t, ns, 5)
	_ = wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		return ledger.nodesWithJobs() >= 8, nil
	})
	kube.StopComponent("kube-apiserver")
	time.Sleep(10 * time.Second)
	if err := kube.StartComponent("kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	waitSucceeded(t, ns, len(nodes), 4*time.Minute)
	assertNoPullSecretLeft(t, ns)
	assertNodesUngated(t, nodes)
	ledger.assertOneJobPerNode(t, nodes) // with the Events, it sees Jobs its informer missed while reconnecting
}

func TestNodeDeletedWhileItsJobRuns(t *testing.T) {
	ns, nodes := setup(t, 12, 3)
	startController(t, ns, "gone")
	w, err := kube.Client.BatchV1().Jobs(ns).Watch(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	applySpec(t, ns, 3)
	var victim string
	for ev := range w.ResultChan() {
		if job, ok := ev.Object.(*batchv1.Job); ok && ev.Type == watch.Added {
			victim = jobs.NodeOf(job)
			break
		}
	}
	if err := kube.DeleteNode(t.Context(), victim); err != nil {
		t.Fatal(err)
	}
	var st *status.Status
	err = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		var err error
		st, err = prewarmtest.Status(ctx, kube.Client, ns, "spec")
		return err == nil && st.Done(), nil
	})
	if err != nil {
		t.Fatalf("run did not end: %v (%+v)", err, st)
	}
	if st.Results[victim].Phase != "Gone" || st.Counts["Succeeded"] != len(nodes)-1 {
		t.Fatalf("victim %s: %+v; counts %v", victim, st.Results[victim], st.Counts)
	}
	assertNoPullSecretLeft(t, ns)
}
