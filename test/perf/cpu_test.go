package perf

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/image-prewarm/image-prewarm/pkg/metrics"
	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// TestControllerCPUAndRefill: the controller binary, as its own process, on one run of
// N kwok nodes, N = 250, 500 and 1000, window 50, pulls of 2–4 s. Its CPU per 1000
// nodes prewarmed should not grow with N (a reconcile that walks every node on every
// finish makes it grow linearly), and its exported refill latency (finish handled →
// create sent) should stay low at 1000. Both come from the process's own /metrics:
// process_cpu_seconds_total from the spec's apply to the end of the run's work (run
// done, its Jobs deleted), so start-up and the first informer sync are not counted; and
// image_prewarm_refill_latency_seconds.
func TestControllerCPUAndRefill(t *testing.T) {
	kube := needCluster(t)
	binary := buildController(t)
	sizes := []int{250, 500, 1000}
	cpu := map[int]float64{}
	var refill *dto.Histogram
	for _, n := range sizes {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			var h *dto.Histogram
			cpu[n], h = prewarmOnce(t, kube, binary, n)
			if n == 1000 {
				refill = h
			}
		})
	}
	note := "process_cpu_seconds_total of the image-prewarm binary (controller only) from the spec's apply until its run is done and its Jobs are gone, ÷ N × 1000; window 50, pulls 2–4 s; one run"
	for _, n := range sizes {
		if cpu[n] > 0 {
			results.Add(Figure{Name: fmt.Sprintf("controller CPU per 1000 nodes prewarmed, %d kwok nodes", n), Unit: "s", Values: []float64{cpu[n]}, Note: note})
		}
	}
	if cpu[1000] > 0 && cpu[250] > 0 {
		results.Add(Figure{Name: "controller CPU per 1000 nodes prewarmed, 1000 ÷ 250 kwok nodes", Goal: "≤ 1.3", Unit: "ratio",
			Values: []float64{cpu[1000] / cpu[250]}, Note: "same runs"})
	}
	if refill != nil {
		results.Add(Figure{Name: "exported refill latency (controller side), p99, 1000 kwok nodes", Goal: "≤ 50 ms", Unit: "ms",
			Values: []float64{1000 * metrics.Quantile(0.99, refill)},
			Note: fmt.Sprintf("image_prewarm_refill_latency_seconds scraped from the binary, buckets ×2 apart; p50 %.1f ms over %d refills; same run",
				1000*metrics.Quantile(0.5, refill), refill.GetSampleCount())})
	}
}

// prewarmOnce creates n nodes and runs the controller binary on a spec for them until
// its run's work ends. It returns the CPU seconds the process spent on it per 1000
// nodes, and the run's refill histogram.
func prewarmOnce(t *testing.T, kube *cluster.Cluster, binary string, n int) (float64, *dto.Histogram) {
	label := fmt.Sprintf("cpu%d", n)
	createNodes(t, kube, label, n, label)
	ports, err := cluster.FreePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(ports[0])
	p := startBinary(t, kube, binary, label, addr)
	defer p.stop(t)
	waitReady(t, addr)
	before := scrape(t, addr)
	start := applySpec(t, kube, label, "spec", label, 50, "harbor.example.com/ml/model:cpu")
	waitDone(t, kube, label, "spec", "")
	waitJobsGone(t, kube, label)
	after := scrape(t, addr)
	seconds := cpuSeconds(after) - cpuSeconds(before)
	refill := refillHistogram(after, "spec")
	t.Logf("%d nodes: work %v, CPU %.2f s (%.2f s per 1000 nodes); refill p50 %.1f ms p99 %.1f ms over %d", n, time.Since(start).Round(time.Second),
		seconds, seconds/float64(n)*1000, 1000*metrics.Quantile(0.5, refill), 1000*metrics.Quantile(0.99, refill), refill.GetSampleCount())
	return seconds / float64(n) * 1000, refill
}

// waitReady waits for the process's /readyz: its informers have synced.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		t.Fatalf("controller not ready: %v", err)
	}
}

// scrape reads the process's /metrics.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return families
}

func cpuSeconds(families map[string]*dto.MetricFamily) float64 {
	for _, m := range families["process_cpu_seconds_total"].GetMetric() {
		return m.GetCounter().GetValue()
	}
	return 0
}

// refillHistogram is the spec's refill histogram, empty when it has none.
func refillHistogram(families map[string]*dto.MetricFamily, spec string) *dto.Histogram {
	for _, m := range families["image_prewarm_refill_latency_seconds"].GetMetric() {
		if hasLabel(m, "spec", spec) {
			return m.GetHistogram()
		}
	}
	return &dto.Histogram{}
}
