// Command demo is `make demo`: a local control plane with 30 fake GPU nodes (pulls take
// 2–6 s, one image fails with 401 on three nodes) and one real node (kubelet +
// containerd) beside them, the controller, the sample spec with a private registry for
// the fake nodes, and a second spec that really pulls a private 100 MiB image from the
// cluster's password-protected registry onto the real node; it shows progress live
// until both rollouts end, then a summary.
package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/image-prewarm/image-prewarm/pkg/cli"
	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/logging"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

//go:embed prewarm.yaml
var sampleSpec string

const namespace = "image-prewarm"

func main() {
	nodes := flag.Int("nodes", 30, "fake nodes")
	realNodes := flag.Int("real-nodes", 1, "real nodes (kubelet + containerd) pulling from the private registry; 0: fake nodes only")
	keep := flag.Bool("keep", false, "leave the cluster running after the rollout (stop it with make cluster-down)")
	flag.Parse()
	if err := run(*nodes, *realNodes, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(nodes, realNodes int, keep bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir := filepath.Join(filepath.Dir(cluster.DefaultStateDir()), "demo")
	_ = cluster.StopRecorded(dir)
	_ = os.RemoveAll(dir)
	fmt.Println("▶ starting the local control plane (first run builds it: several minutes) …")
	kube, err := cluster.Start(ctx, cluster.Options{Dir: dir, Detached: keep, RealNodes: realNodes, Pulls: cluster.PullBehaviour{
		Delay: 2 * time.Second, Jitter: 4 * time.Second,
		FailImagePattern: `^harbor\.example\.com/ml/cuda-runtime`, FailNodePattern: `gpu-(007|013|021)$`,
	}})
	if err != nil {
		return err
	}
	if !keep {
		defer kube.Stop()
	}
	if err := setup(ctx, kube, nodes); err != nil {
		return err
	}
	noopImage := "ghcr.io/image-prewarm/image-prewarm:demo" // kwok never pulls it
	if realNodes > 0 {
		if err := setupRealNode(ctx, kube); err != nil {
			return err
		}
		noopImage = kube.NoopImage // the real node pulls our image as we ship it
	}
	logFile, err := os.Create(filepath.Join(dir, "logs", "image-prewarm.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	logger, _ := logging.New(logging.FormatJSON, 1, logFile)
	ctrlCtx, stopCtrl := context.WithCancel(logging.IntoContext(ctx, logger))
	ctrlDone := make(chan struct{})
	defer func() { stopCtrl(); <-ctrlDone }() // before the log file closes
	go func() {
		defer close(ctrlDone)
		c := controller.New(kube.Client, controller.Options{Namespace: namespace, NoopImage: noopImage})
		_ = c.Run(ctrlCtx, 4)
	}()
	fmt.Printf("▶ controller running (log: %s); applying the sample spec\n\n", logFile.Name())
	if err := applySpec(ctx, kube, "ml-images", sampleSpec); err != nil {
		return err
	}
	if realNodes > 0 {
		if err := applySpec(ctx, kube, "real-node", realNodeSpec(kube)); err != nil {
			return err
		}
	}
	terminal := cli.IsTerminal(os.Stdout)
	if err := cli.Watch(ctx, kube.Client, namespace, os.Stdout, terminal, true, time.Second); err != nil {
		return err
	}
	time.Sleep(1500 * time.Millisecond) // let the Secret deletion and final Events land
	return summary(ctx, kube, keep)
}

func setup(ctx context.Context, kube *cluster.Cluster, n int) error {
	specs := cluster.FakeNodes("gpu", n)
	for i := range specs {
		specs[i].Labels = map[string]string{"node.kubernetes.io/instance-type": "g5.xlarge"}
	}
	if err := kube.CreateNodes(ctx, specs...); err != nil {
		return err
	}
	if err := kube.WaitNodesReady(ctx, cluster.Names(specs)...); err != nil {
		return err
	}
	fmt.Printf("▶ %d fake g5.xlarge nodes Ready\n", n)
	if err := kube.Namespace(ctx, namespace, map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}); err != nil {
		return err
	}
	return prewarmtest.BasicAuth(ctx, kube.Client, namespace, "harbor-robot", "robot$prewarm", rand.Text())
}

func applySpec(ctx context.Context, kube *cluster.Cluster, name, spec string) error {
	return prewarmtest.ApplySpec(ctx, kube.Client, namespace, name, spec)
}

func summary(ctx context.Context, kube *cluster.Cluster, keep bool) error {
	secrets, err := kube.Client.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: jobs.LabelApp + "=" + jobs.AppName})
	if err != nil {
		return err
	}
	for _, spec := range []string{"ml-images", "real-node"} {
		if err := printEvents(ctx, kube, spec); err != nil {
			return err
		}
	}
	fmt.Printf("\n▶ ephemeral pull Secrets left: %d (reaped once every node reported)\n", len(secrets.Items))
	if keep {
		fmt.Printf("▶ cluster kept: kubectl --kubeconfig %s get jobs,cm -n %s; stop with make cluster-down\n", kube.Kubeconfig, namespace)
	}
	return nil
}

// printEvents prints the Events of one spec's ConfigMap, oldest first (none: nothing).
func printEvents(ctx context.Context, kube *cluster.Cluster, spec string) error {
	events, err := kube.Client.CoreV1().Events(namespace).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + spec})
	if err != nil || len(events.Items) == 0 {
		return err
	}
	sort.Slice(events.Items, func(i, j int) bool { return events.Items[i].LastTimestamp.Before(&events.Items[j].LastTimestamp) })
	fmt.Printf("\n▶ Events on ConfigMap %s:\n", spec)
	for _, ev := range events.Items {
		fmt.Printf("  %-8s %-28s %s\n", ev.Type, ev.Reason, ev.Message)
	}
	return nil
}
