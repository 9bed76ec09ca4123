package perf

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/image-prewarm/image-prewarm/pkg/controller"
	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
	"github.com/image-prewarm/image-prewarm/test/images"
	"github.com/image-prewarm/image-prewarm/test/prewarmtest"
)

var (
	realKube     *cluster.Cluster
	realKubeOnce sync.Once
	realKubeErr  error
)

// needRealCluster starts, once, a second cluster with one real node and the registries.
func needRealCluster(t *testing.T) *cluster.Cluster {
	t.Helper()
	if !enabled {
		t.Skip("make bench runs this")
	}
	realKubeOnce.Do(func() {
		realKube, realKubeErr = cluster.Start(context.Background(), cluster.Options{Dir: filepath.Join(stateDir, "real-cluster"), RealNodes: 1})
	})
	if realKubeErr != nil {
		t.Fatal(realKubeErr)
	}
	return realKube
}

// benchLinkMiB is the throttled link between the node and the registry: a private
// registry reached over a slow link, the case where prewarming pays.
const (
	benchLinkMiB = 25
	benchRuns    = 3
)

// TestRealNodeColdVersusPrewarmed: a workload pod's time to Running on the real node
// for a ≥ 200 MiB private image, cold (pulled through the throttled link when the pod
// starts) versus prewarmed (pulled by image-prewarm first). The figure a user buys us for.
func TestRealNodeColdVersusPrewarmed(t *testing.T) {
	c := needRealCluster(t)
	ctx := t.Context()
	host, err := c.ThrottledRegistry(ctx, benchLinkMiB<<20)
	if err != nil {
		t.Fatal(err)
	}
	ns := "bench-real"
	if err := c.Namespace(ctx, ns, nil); err != nil {
		t.Fatal(err)
	}
	b := &realBench{c: c, ns: ns, host: host, node: c.RealNodes()[0]}
	b.credentials(t)
	stop := b.startController()
	defer stop()
	var cold, warm, prewarm, ratio []float64
	for run := range benchRuns {
		image := b.pushImage(t, run)
		coldRun := b.timeToRunning(t, fmt.Sprintf("cold-%d", run), image)
		b.forget(t, image)
		pulled := b.prewarm(t, fmt.Sprintf("warm-%d", run), image)
		warmRun := b.timeToRunning(t, fmt.Sprintf("warm-%d", run), image)
		b.forget(t, image)
		cold, warm, prewarm = append(cold, ms(coldRun)), append(warm, ms(warmRun)), append(prewarm, ms(pulled))
		ratio = append(ratio, coldRun.Seconds()/warmRun.Seconds())
	}
	note := fmt.Sprintf("%d MiB image (4 incompressible layers), registry behind a %d MiB/s link; %d runs", images.DefaultLargeMiB, benchLinkMiB, benchRuns)
	results.Add(Figure{Name: "real node: workload time to Running, cold ÷ prewarmed", Unit: "ratio", Values: ratio, Goal: "≫ 1", Note: note})
	results.Add(Figure{Name: "real node: workload time to Running, cold", Unit: "ms", Values: cold, Note: "pod created → Running, pull included"})
	results.Add(Figure{Name: "real node: workload time to Running, prewarmed", Unit: "ms", Values: warm, Note: "pod created → Running; kubelet: already present"})
	results.Add(Figure{Name: "real node: the prewarm's own pull", Unit: "ms", Values: prewarm, Note: "kubelet's Pulled Event of the prewarm pod (\"in …s\")"})
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

type realBench struct {
	c    *cluster.Cluster
	ns   string
	host string // the throttled proxy
	node *cluster.RealNode
}

// credentials: a dockerconfigjson Secret for the proxy's host (workloads) and a
// basic-auth one (the prewarm spec's credentialsSecret), with the same credentials.
func (b *realBench) credentials(t *testing.T) {
	user, pw := cluster.RegistryUser, b.c.Registry.Password
	cfg, _ := json.Marshal(map[string]any{"auths": map[string]any{b.host: map[string]string{
		"username": user, "password": pw, "auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pw))}}})
	workload := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "workload"}, Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{corev1.DockerConfigJsonKey: cfg}}
	if _, err := b.c.Client.CoreV1().Secrets(b.ns).Create(t.Context(), workload, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := prewarmtest.BasicAuth(t.Context(), b.c.Client, b.ns, "robot", user, pw); err != nil {
		t.Fatal(err)
	}
}

func (b *realBench) startController() func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	ctrl := controller.New(b.c.Client, controller.Options{Namespace: b.ns, NoopImage: b.c.NoopImage})
	go func() { defer close(done); _ = ctrl.Run(ctx, 2) }()
	return func() { cancel(); <-done }
}

// pushImage pushes a fresh runnable 200 MiB image (the pause program plus the large
// layers of a seed of this run), so no run reuses another's blobs.
func (b *realBench) pushImage(t *testing.T, run int) string {
	pause, err := images.Pause(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	large, err := images.Large(images.DefaultLargeMiB, uint64(1000+run))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := large.Layers()
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(pause, layers...)
	if err != nil {
		t.Fatal(err)
	}
	repo := fmt.Sprintf("bench/large:%d", run)
	if err := b.c.Registry.Push(t.Context(), b.c.Registry.Host+"/"+repo, img); err != nil {
		t.Fatal(err)
	}
	return b.host + "/" + repo
}

// timeToRunning creates a workload pod of the image on the node and returns how long it
// took to run; the pod is deleted again.
func (b *realBench) timeToRunning(t *testing.T, name, image string) time.Duration {
	pods := b.c.Client.CoreV1().Pods(b.ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName: b.node.Name, TerminationGracePeriodSeconds: new(int64(0)),
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "workload"}},
			Containers:       []corev1.Container{{Name: "app", Image: image, ImagePullPolicy: corev1.PullIfNotPresent}},
		},
	}
	start := time.Now()
	if _, err := pods.Create(t.Context(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := pods.Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, nil
	})
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("%s not Running: %v", name, err)
	}
	_ = pods.Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: new(int64(0))})
	return elapsed
}

// prewarm runs a spec of the image on the real node and returns kubelet's own pull time.
func (b *realBench) prewarm(t *testing.T, name, image string) time.Duration {
	spec := fmt.Sprintf("registries: [{server: %q, credentialsSecret: robot}]\nimages: [%q]\nnodeSelector: {%s: \"true\"}\nrollout: {pullTimeout: 10m}\n",
		b.host, image, cluster.RealNodeLabel)
	if err := prewarmtest.ApplySpec(t.Context(), b.c.Client, b.ns, name, spec); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 10*time.Minute, true, func(ctx context.Context) (bool, error) {
		st, err := prewarmtest.Status(ctx, b.c.Client, b.ns, name)
		return err == nil && st.Phase == status.PhaseSucceeded, nil
	})
	if err != nil {
		t.Fatalf("prewarm %s: %v", name, err)
	}
	_ = b.c.Client.CoreV1().ConfigMaps(b.ns).Delete(context.Background(), name, metav1.DeleteOptions{})
	return b.pulledIn(t, image)
}

// pulledIn reads kubelet's "Successfully pulled image "<image>" in 1.234s (…)" Event.
func (b *realBench) pulledIn(t *testing.T, image string) time.Duration {
	evs, err := b.c.Client.CoreV1().Events(b.ns).List(t.Context(), metav1.ListOptions{FieldSelector: "reason=Pulled"})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		prefix := "Successfully pulled image \"" + image + "\" in "
		if rest, ok := strings.CutPrefix(ev.Message, prefix); ok {
			if d, err := time.ParseDuration(strings.Fields(rest)[0]); err == nil {
				return d
			}
		}
	}
	t.Fatalf("no Pulled Event for %s", image)
	return 0
}

// forget removes the image from the node's containerd, content included, so the next
// pull is cold again.
func (b *realBench) forget(t *testing.T, image string) {
	if out, err := b.node.Ctr(t.Context(), "images", "rm", "--sync", image); err != nil {
		t.Fatalf("remove %s: %v: %s", image, err, out)
	}
}
