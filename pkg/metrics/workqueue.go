package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/util/workqueue"
)

// Workqueue series, filled by client-go for every queue created with a name (the
// controller's queue is "prewarm"); unnamed queues are not measured.
var (
	// workBuckets span 10 µs to 1000 s: a reconcile takes milliseconds, a key delayed
	// by the rate limiter or AddAfter waits up to minutes.
	workBuckets = prometheus.ExponentialBuckets(1e-5, 10, 9)

	QueueDepth       = gauge("workqueue_depth", "Keys waiting in the workqueue.", "name")
	QueueAdds        = counter("workqueue_adds_total", "Keys added to the workqueue.", "name")
	QueueLatency     = histogram("workqueue_queue_duration_seconds", "Seconds a key waits in the workqueue before a worker takes it.", workBuckets, "name")
	QueueWork        = histogram("workqueue_work_duration_seconds", "Seconds a worker spends on a key.", workBuckets, "name")
	QueueRetries     = counter("workqueue_retries_total", "Keys re-added to the workqueue with a delay (rate-limited retries, AddAfter).", "name")
	QueueUnfinished  = gauge("workqueue_unfinished_work_seconds", "Seconds of work in progress that work_duration has not observed yet; growth means stuck workers.", "name")
	QueueLongestWork = gauge("workqueue_longest_running_processor_seconds", "Seconds the longest-running worker has spent on its key.", "name")
)

func init() {
	workqueue.SetProvider(queueMetrics{})
}

// queueMetrics hands client-go the series above for a named queue.
type queueMetrics struct{}

var _ workqueue.MetricsProvider = queueMetrics{}

func (queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return QueueDepth.WithLabelValues(name)
}

func (queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return QueueAdds.WithLabelValues(name)
}

func (queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return QueueLatency.WithLabelValues(name)
}

func (queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return QueueWork.WithLabelValues(name)
}

func (queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return QueueUnfinished.WithLabelValues(name)
}

func (queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return QueueLongestWork.WithLabelValues(name)
}

func (queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return QueueRetries.WithLabelValues(name)
}
