//go:build unix

package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	runtimemetrics "runtime/metrics"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	apiruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// BenchmarkScale runs the real controller (informers, handlers, reconcile) on a fake
// clientset with N Ready nodes, each listing 50 images (none of the spec's), a spec of
// three images with a window of 50, and a stand-in Job controller that completes each
// Job 50–250 ms after it appears. One op is one run, until the status says Succeeded.
// N = 250, 1000 and 5000; 20000 too with IMAGE_PREWARM_SCALE=full.
//
// Jobs of 50–250 ms finish about 330 a second in the window of 50, ten times as often
// as pulls of seconds would; the process is busy but not saturated. With Jobs of 1–5 ms
// (saturated/nodes=5000) about 4000 finish a second, and the fake API server and the
// stand-in Job controller keep both cores busy: every goroutine then waits in the run
// queue, and the refill latency measures that wait more than the controller's work.
// It is kept as a stress figure. Metrics:
//
//	cpu-ms/job        process user+sys CPU over the run ÷ N. The fake API server, its
//	                  watches and the stand-in Job controller run in this process too:
//	                  an upper bound on the controller's share.
//	refill-p50-ms,    the controller's refill latency (finish handled → create sent),
//	refill-p99-ms     from the exported histogram: bucket bounds a factor 2 apart,
//	                  interpolated as histogram_quantile does (metrics.Quantile).
//	refills           how many refills it observed (N − 50 at most: the first fill is
//	                  none).
//	heap-MiB          peak HeapInuse, sampled every 50 ms once the informers have
//	                  synced (and a GC collected their first list), over a baseline
//	                  taken after the fake is populated and a GC: the fake's own copies
//	                  of the full nodes are not counted, nor the Jobs it stores (without
//	                  their pod template, which nothing reads back). It holds garbage
//	                  too, as much as the GC lets grow, and that grows with the whole
//	                  heap, the fake's nodes included: more than a controller alone.
//	heap-live-MiB     the peak of the heap each GC found live (/gc/heap/live:bytes),
//	                  over the same baseline: the controller's live heap, and what the
//	                  fake holds for the run (its Jobs, the status, watch buffers).
//	heap-ctl-MiB      the controller's own share of that peak: the heap profile's
//	                  in-use bytes whose allocation passed through neither the fake
//	                  nor this harness, over the same at the baseline (ctlHeap).
//	heap-sync-MiB     peak HeapInuse while the informers sync: it holds the fake's
//	                  one-shot deep copy of every full node for the first list, which a
//	                  client-go watch-list client against an API server streams instead.
func BenchmarkScale(b *testing.B) {
	// The fake's watchers panic once 100 events wait unread; a 20000-node run on two
	// busy cores lags further than that now and then.
	defer func(size int32) { watch.DefaultChanSize = size }(watch.DefaultChanSize)
	watch.DefaultChanSize = 4096
	for _, n := range scaleSizes() {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchScale(b, n, pacedJobs) })
	}
	b.Run("saturated/nodes=5000", func(b *testing.B) { benchScale(b, 5000, saturatingJobs) })
}

// jobTimes is how long the stand-in Job controller lets a Job run: from, plus up to span.
type jobTimes struct{ from, span time.Duration }

var (
	pacedJobs      = jobTimes{50 * time.Millisecond, 200 * time.Millisecond}
	saturatingJobs = jobTimes{time.Millisecond, 4 * time.Millisecond}
)

func benchScale(b *testing.B, n int, times jobTimes) {
	var total scaleResult
	for i := range b.N {
		b.StopTimer()
		env := newScaleEnv(b, n)
		env.jobTimes = times
		b.StartTimer()
		r := env.run(b, uint64(i))
		b.StopTimer()
		total.add(r)
	}
	total.report(b, b.N)
}

func scaleSizes() []int {
	if os.Getenv("IMAGE_PREWARM_SCALE") == "full" {
		return []int{250, 1000, 5000, 20000}
	}
	return []int{250, 1000, 5000}
}

const (
	scaleSpec = "scale"
	scaleText = "registries: [{server: harbor.example.com}]\n" +
		"images: [harbor.example.com/ml/model:1, harbor.example.com/ml/tokenizer:1, nginx:1.27]\n" +
		"rollout: {maxConcurrentNodes: 50}\n"
)

// scaleNode is a Ready node listing 50 images under two names each, as kubelet reports
// tag and digest (as in BenchmarkNodeCache), none of them the spec's.
func scaleNode(i int) *corev1.Node {
	n := node(fmt.Sprintf("node-%05d", i), ready, labeled("pool", "gpu"))
	for j := range 50 {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{
			fmt.Sprintf("registry.example.com/team-%02d/image-%02d:1.%d.%d", j%7, j, i%10, j),
			fmt.Sprintf("registry.example.com/team-%02d/image-%02d@sha256:%064x", j%7, j, i*50+j),
		}})
	}
	return n
}

// storeSlimJobs makes the fake store created Jobs with a UID, as an API server does,
// and without their pod template: nothing reads it back (the controller's informer
// drops it), and thousands of copies of it are the fake's memory, not the controller's.
func storeSlimJobs(client *fake.Clientset) {
	var n atomic.Int64
	client.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, apiruntime.Object, error) {
		job := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job).DeepCopy()
		job.UID = types.UID(fmt.Sprintf("job-uid-%d", n.Add(1)))
		job.Spec.Template = corev1.PodTemplateSpec{}
		return true, job, client.Tracker().Create(batchv1.SchemeGroupVersion.WithResource("jobs"), job, a.GetNamespace())
	})
}

// honourJobSweeps makes the fake list and delete Jobs by label and field selector
// (status.successful), as an API server does for the sweep's DeleteCollection
// (sweep.go). The fake's own DeleteCollection deletes nothing, and its List ignores
// field selectors: the run's Jobs would pile up, thousands of them, in the fake and
// in the controller's informer, which an API server would have deleted.
func honourJobSweeps(client *fake.Clientset) {
	gvr := batchv1.SchemeGroupVersion.WithResource("jobs")
	selected := func(ns string, opts metav1.ListOptions) ([]*batchv1.Job, error) {
		obj, err := client.Tracker().List(gvr, batchv1.SchemeGroupVersion.WithKind("Job"), ns)
		if err != nil {
			return nil, err
		}
		sel, err := labels.Parse(opts.LabelSelector)
		if err != nil {
			return nil, err
		}
		var out []*batchv1.Job
		for i := range obj.(*batchv1.JobList).Items {
			job := &obj.(*batchv1.JobList).Items[i]
			if sel.Matches(labels.Set(job.Labels)) && (opts.FieldSelector != "status.successful=1" || job.Status.Succeeded == 1) {
				out = append(out, job)
			}
		}
		return out, nil
	}
	client.PrependReactor("list", "jobs", func(a k8stesting.Action) (bool, apiruntime.Object, error) {
		la := a.(k8stesting.ListActionImpl)
		found, err := selected(la.GetNamespace(), la.ListOptions)
		list := &batchv1.JobList{}
		for _, job := range found {
			list.Items = append(list.Items, *job)
		}
		return true, list, err
	})
	client.PrependReactor("delete-collection", "jobs", func(a k8stesting.Action) (bool, apiruntime.Object, error) {
		da := a.(k8stesting.DeleteCollectionActionImpl)
		found, err := selected(da.GetNamespace(), da.ListOptions)
		for _, job := range found {
			err = errors.Join(err, client.Tracker().Delete(gvr, job.Namespace, job.Name))
		}
		return true, nil, err
	})
}

// filterWatches makes the fake's watches honour label selectors, as an API server's
// do. The fake's own ignore them: the spec informer would take every status ConfigMap
// for a spec, and each invalid "spec" writes a status of its own, without end.
func filterWatches(client *fake.Clientset) {
	client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		wa := a.(k8stesting.WatchActionImpl)
		w, err := client.Tracker().Watch(wa.GetResource(), wa.GetNamespace(), wa.ListOptions)
		selector := wa.GetWatchRestrictions().Labels
		if err != nil || selector == nil || selector.Empty() {
			return true, w, err
		}
		return true, watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
			m, err := meta.Accessor(ev.Object)
			return ev, err == nil && selector.Matches(labels.Set(m.GetLabels()))
		}), nil
	})
}

type scaleEnv struct {
	client   *fake.Clientset
	nodes    int
	jobTimes jobTimes
	baseline heapSample // once the fake holds every object, after a GC
}

func newScaleEnv(b *testing.B, n int) *scaleEnv {
	b.Helper()
	// The plain tracker: NewClientset's field management costs several times what the
	// controller does per write (it builds a REST mapper on each), and the controller
	// sends no apply patches.
	client := fake.NewSimpleClientset() //nolint:staticcheck // see above
	storeSlimJobs(client)
	honourJobSweeps(client)
	filterWatches(client)
	for i := range n {
		if err := client.Tracker().Add(scaleNode(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := client.Tracker().Add(specConfigMap(scaleSpec, scaleText)); err != nil {
		b.Fatal(err)
	}
	metrics.ForgetSpec(scaleSpec) // the histogram counts this run only
	runtime.GC()
	scaleCtl.baseline()
	return &scaleEnv{client: client, nodes: n, baseline: readHeap()}
}

// scaleResult holds one run's figures, or their sums over several runs.
type scaleResult struct {
	cpuPerJob, p50, p99           float64 // ms
	heapInuse, heapLive, heapSync float64 // MiB
	heapCtl                       float64 // MiB
	refills                       float64
}

func (r *scaleResult) add(o scaleResult) {
	r.cpuPerJob += o.cpuPerJob
	r.p50 += o.p50
	r.p99 += o.p99
	r.heapInuse += o.heapInuse
	r.heapLive += o.heapLive
	r.heapSync += o.heapSync
	r.heapCtl += o.heapCtl
	r.refills += o.refills
}

func (r scaleResult) report(b *testing.B, runs int) {
	n := float64(runs)
	b.ReportMetric(r.cpuPerJob/n, "cpu-ms/job")
	b.ReportMetric(r.p50/n, "refill-p50-ms")
	b.ReportMetric(r.p99/n, "refill-p99-ms")
	b.ReportMetric(r.refills/n, "refills")
	b.ReportMetric(r.heapInuse/n, "heap-MiB")
	b.ReportMetric(r.heapLive/n, "heap-live-MiB")
	b.ReportMetric(r.heapCtl/n, "heap-ctl-MiB")
	b.ReportMetric(r.heapSync/n, "heap-sync-MiB")
}

// run starts the stand-in Job controller and the controller, and waits for the run to
// succeed.
func (e *scaleEnv) run(b *testing.B, seed uint64) scaleResult {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := New(e.client, Options{Namespace: ns, NoopImage: "noop:1"})
	heap := sampleHeap(ctx, e.client, c.HasSynced)
	cpu0 := cpuTime()
	go simulateJobs(ctx, b, e.client, e.jobTimes, seed)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, 2) }()
	if err := waitSucceeded(ctx, e.client, 30*time.Minute); err != nil {
		b.Fatal(err)
	}
	cpu := cpuTime() - cpu0
	syncing, synced := heap.peaks()
	r := scaleResult{
		cpuPerJob: float64(cpu.Microseconds()) / 1000 / float64(e.nodes),
		heapInuse: mib(synced.inuse - e.baseline.inuse),
		heapLive:  mib(synced.live - e.baseline.live),
		heapSync:  mib(syncing.inuse - e.baseline.inuse),
		heapCtl:   scaleCtl.end(),
	}
	r.p50, r.p99, r.refills = refillQuantiles(b)
	cancel()
	<-done
	return r
}

func mib(bytes uint64) float64 { return float64(int64(bytes)) / (1 << 20) }

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		panic(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// heapSample is HeapInuse and the heap the last GC found live, in bytes.
type heapSample struct{ inuse, live uint64 }

func readHeap() heapSample {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	live := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(live)
	return heapSample{inuse: m.HeapInuse, live: live[0].Value.Uint64()}
}

func (h *heapSample) raise(o heapSample) {
	h.inuse, h.live = max(h.inuse, o.inuse), max(h.live, o.live)
}

// heapPeaks are the highest samples sampleHeap saw while the informers synced and
// after.
type heapPeaks struct {
	mu              sync.Mutex
	syncing, synced heapSample
}

func (p *heapPeaks) peaks() (syncing, synced heapSample) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.syncing, p.synced
}

// sampleHeap samples the heap every 50 ms until ctx ends. The first time synced says
// true it collects garbage, so the informers' first list does not linger in the later
// peak. Each time it also drops the fake's record of requests, which holds a deep copy
// of every object written and is no part of the controller.
func sampleHeap(ctx context.Context, client *fake.Clientset, synced func() bool) *heapPeaks {
	p := &heapPeaks{}
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		after := false
		for {
			client.ClearActions()
			if !after && synced() {
				runtime.GC()
				after = true
			}
			h := readHeap()
			p.mu.Lock()
			if after {
				if h.live > p.synced.live {
					scaleCtl.atPeak()
				}
				p.synced.raise(h)
			} else {
				p.syncing.raise(h)
			}
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// simulateJobs stands in for the Job controller: every Job created completes after a
// time drawn from times (seeded). A Job the controller deleted meanwhile is no error.
func simulateJobs(ctx context.Context, b *testing.B, client *fake.Clientset, times jobTimes, seed uint64) {
	w, err := client.BatchV1().Jobs(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		b.Error(err)
		return
	}
	defer w.Stop()
	delays := rand.New(rand.NewPCG(seed, 1))
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.ResultChan():
			job, ok := ev.Object.(*batchv1.Job)
			if ev.Type != watch.Added || !ok {
				continue
			}
			delay := times.from + time.Duration(delays.Int64N(int64(times.span)))
			job = job.DeepCopy() // a watch may hand out the stored object itself
			time.AfterFunc(delay, func() { completeJob(ctx, b, client, job) })
		}
	}
}

func completeJob(ctx context.Context, b *testing.B, client *fake.Clientset, job *batchv1.Job) {
	now := metav1.Now()
	job.Status = batchv1.JobStatus{
		StartTime: &job.CreationTimestamp, CompletionTime: &now, Succeeded: 1,
		Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: now}},
	}
	if _, err := client.BatchV1().Jobs(ns).UpdateStatus(ctx, job, metav1.UpdateOptions{}); ignoreNotFound(err) != nil && ctx.Err() == nil {
		b.Error(err)
	}
}

// waitSucceeded waits for the spec's status to say Succeeded: every node's result
// recorded, and the record stored.
func waitSucceeded(ctx context.Context, client *fake.Clientset, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	w, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("the run did not succeed: %w", ctx.Err())
		case ev := <-w.ResultChan():
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if ok && cm.Name == status.Name(scaleSpec) && cm.Data[status.KeyPhase] == status.PhaseSucceeded {
				return nil
			}
		}
	}
}

// refillQuantiles reads the median and p99 of the run's refill latencies, in ms, and how
// many there were, from the exported histogram.
func refillQuantiles(b *testing.B) (p50, p99, count float64) {
	var m dto.Metric
	if err := metrics.RefillLatency.WithLabelValues(scaleSpec).(prometheus.Metric).Write(&m); err != nil {
		b.Fatal(err)
	}
	h := m.GetHistogram()
	return 1000 * metrics.Quantile(0.5, h), 1000 * metrics.Quantile(0.99, h), float64(h.GetSampleCount())
}
