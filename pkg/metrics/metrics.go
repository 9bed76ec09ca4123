// Package metrics owns every Prometheus series image-prewarm exports. All share the
// prefix image_prewarm_ and bounded labels: spec (a prewarm ConfigMap name), registry
// (a listed registry host), state and phase (fixed sets), result, reason and operation
// (small fixed classes), name (a workqueue's fixed name), webhook (one of two names),
// code (an HTTP status code) — never a node name, an image list or an error string.
// Series of a deleted spec are removed with ForgetSpec.
//
// Series (one per line: name{labels} type, meaning; the contract test reads this list):
//
//	image_prewarm_build_info{version,go_version}                       gauge, always 1
//	image_prewarm_is_leader                                             gauge, 1 when this replica runs the controller, else 0
//	image_prewarm_nodes{spec,state}                                     gauge, nodes of the current run by state (Pending|Running|Succeeded|Failed|Skipped|Gone|Paused)
//	image_prewarm_rollout_progress_ratio{spec}                          gauge, reported / all nodes of the current run
//	image_prewarm_rollout_duration_seconds{spec}                        gauge, time since the run started (frozen when done)
//	image_prewarm_run_phase{spec,phase}                                 gauge, 1 for the run's current phase, 0 for the others
//	image_prewarm_jobs_created_total{spec}                              counter, prewarm Jobs created
//	image_prewarm_jobs_finished_total{spec,result}                      counter, result=succeeded|failed|cancelled
//	image_prewarm_node_failures_total{spec,reason}                      counter, reason class (see ReasonClass)
//	image_prewarm_node_rewarms_total{spec}                               counter, nodes prewarmed again after an image left them (keep warm)
//	image_prewarm_pulls_held{spec,reason}                              gauge, images the run holds back: reason=CredentialsRejected (a registry's) | ImageNotFound
//	image_prewarm_startup_taints_removed_total{reason}                  counter, startup taints removed: prewarmed, failed, timeout, unselected
//	image_prewarm_refill_latency_seconds{spec}                          histogram, a Job's finish handled (a window slot freed) → the create of the Job that takes the slot sent
//	image_prewarm_image_pull_duration_seconds{registry}                 histogram, one image on one node, from kubelet's Pulled Event (init-container timestamps where there is none)
//	image_prewarm_image_pulled_bytes_total{registry}                    counter, bytes of the images pulled, from kubelet's Pulled Events
//	image_prewarm_secrets_created_total                                 counter, ephemeral pull Secrets created
//	image_prewarm_secrets_deleted_total                                 counter, ephemeral pull Secrets deleted
//	image_prewarm_secrets_active                                        gauge, ephemeral pull Secrets created and not yet deleted by this process
//	image_prewarm_secret_operation_failures_total{operation}            counter, operation=create|delete|read
//	image_prewarm_config_valid{spec}                                    gauge, 1 valid, 0 rejected
//	image_prewarm_config_rejections_total{spec}                         counter, rejected revisions of a spec (see RejectConfig)
//	image_prewarm_reconcile_total{result}                               counter, result=success|error|conflict
//	image_prewarm_workqueue_depth{name}                                 gauge, keys waiting in the queue
//	image_prewarm_workqueue_adds_total{name}                            counter, keys added
//	image_prewarm_workqueue_queue_duration_seconds{name}                histogram, time a key waits before a worker takes it
//	image_prewarm_workqueue_work_duration_seconds{name}                 histogram, time a worker spends on a key
//	image_prewarm_workqueue_retries_total{name}                         counter, rate-limited and delayed re-adds
//	image_prewarm_workqueue_unfinished_work_seconds{name}               gauge, work in progress not yet observed by work_duration
//	image_prewarm_workqueue_longest_running_processor_seconds{name}     gauge, age of the oldest key being worked on
//	image_prewarm_webhook_requests_total{webhook,result}                counter, result=allowed|denied|patched|error (webhook.go)
//	image_prewarm_webhook_request_duration_seconds{webhook}             histogram, time in the admission handler (webhook.go)
//	image_prewarm_task_api_requests_total{code}                         counter, task API responses by HTTP status code (tasks.go)
//
// Registry also carries the Go runtime (go_*) and process (process_*) collectors.
package metrics

import (
	"fmt"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "image_prewarm"

// Version is set at build time with -ldflags "-X .../pkg/metrics.Version=…".
var Version = "dev"

// Registry holds every series of this package; /metrics serves it.
var Registry = &registry{Registry: prometheus.NewRegistry()}

var (
	BuildInfo = gauge("build_info", "Build information; always 1.", "version", "go_version")
	IsLeader  = gauge("is_leader", "1 when this replica runs the controller, else 0.")
	Nodes     = gauge("nodes", "Nodes of the current run of a spec by state.", "spec", "state")
	Progress  = gauge("rollout_progress_ratio", "Reported nodes / all nodes of the current run.", "spec")
	Duration  = gauge("rollout_duration_seconds", "Seconds since the current run started; frozen when it ends.", "spec")
	RunPhase  = gauge("run_phase", "1 for the current phase of a spec's run.", "spec", "phase")

	JobsCreated  = counter("jobs_created_total", "Prewarm Jobs created.", "spec")
	JobsFinished = counter("jobs_finished_total", "Prewarm Jobs finished by result.", "spec", "result")
	NodeFailures = counter("node_failures_total", "Nodes that failed to prewarm by reason class.", "spec", "reason")
	// Rewarms: nodes of a spec's current run prewarmed again because an image they held
	// left them (kubelet's image GC, crictl rmi).
	Rewarms = counter("node_rewarms_total", "Nodes prewarmed again after one of their images left them.", "spec")
	// PullsHeld: images a spec's run holds back, by reason (CredentialsRejected: every
	// image of a registry that rejected the credentials; ImageNotFound: one image).
	PullsHeld = gauge("pulls_held", "Images whose pulls the current run of a spec holds back after a few nodes failed alike, by reason.", "spec", "reason")
	// TaintsRemoved: startup taints removed by why (prewarmed, failed, timeout, unselected).
	TaintsRemoved = counter("startup_taints_removed_total", "Startup taints removed from nodes, by reason.", "reason")
	// RefillLatency is the controller's own part of a refill: the API server's round trip
	// and the Job's way to the node come after it. Buckets from 0.5 ms to 4 s.
	RefillLatency = histogram("refill_latency_seconds", "Time from the controller handling a Job's finish (a freed window slot) to sending the create of the Job that takes the slot.",
		prometheus.ExponentialBuckets(0.0005, 2, 14), "spec")

	PullDuration = histogram("image_pull_duration_seconds", "Time to pull one image on one node, from kubelet's Pulled Event (init-container timestamps where there is none).",
		[]float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200}, "registry")
	PulledBytes = counter("image_pulled_bytes_total", "Bytes of the images pulled, as kubelet's Pulled Events report them.", "registry")

	SecretsCreated   = counter("secrets_created_total", "Ephemeral pull Secrets created.")
	SecretsDeleted   = counter("secrets_deleted_total", "Ephemeral pull Secrets deleted.")
	SecretsActive    = gauge("secrets_active", "Ephemeral pull Secrets created and not yet deleted by this process.")
	SecretFailures   = counter("secret_operation_failures_total", "Failed Secret operations.", "operation")
	ConfigValid      = gauge("config_valid", "1 when a spec's ConfigMap is valid, 0 when rejected.", "spec")
	ConfigRejections = counter("config_rejections_total", "Rejected revisions of a spec's ConfigMap.", "spec")
	Reconciles       = counter("reconcile_total", "Spec reconciles by result.", "result")
)

// Known values of fixed labels: their series exist at 0 from the start, so rates and
// alerts work before the first event.
var (
	secretOperations = []string{"create", "delete", "read"}
	reconcileResults = []string{"success", "error", "conflict"}
)

func init() {
	Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	BuildInfo.WithLabelValues(Version, runtime.Version()).Set(1)
	IsLeader.WithLabelValues().Set(0)
	SecretsActive.WithLabelValues().Set(0)
	SecretsCreated.WithLabelValues()
	SecretsDeleted.WithLabelValues()
	for _, op := range secretOperations {
		SecretFailures.WithLabelValues(op)
	}
	for _, r := range reconcileResults {
		Reconciles.WithLabelValues(r)
	}
	for _, r := range []string{"prewarmed", "failed", "timeout", "unselected"} {
		TaintsRemoved.WithLabelValues(r) // at 0 from the start, so increase() works from the first removal
	}
}

func gauge(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Name: name, Help: help}, labels)
	Registry.MustRegister(g)
	return g
}

func counter(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	Registry.MustRegister(c)
	return c
}

func histogram(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
	Registry.MustRegister(h)
	return h
}

// registry is a prometheus.Registry that also remembers its collectors, so it can
// describe every series — vectors without a child included — as a Collector does.
type registry struct {
	*prometheus.Registry
	mu         sync.Mutex
	collectors []prometheus.Collector
}

// Register registers c and remembers it.
func (r *registry) Register(c prometheus.Collector) error {
	if err := r.Registry.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, c)
	return nil
}

// MustRegister registers every collector and panics on the first error.
func (r *registry) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// Unregister unregisters c and forgets it.
func (r *registry) Unregister(c prometheus.Collector) bool {
	if !r.Registry.Unregister(c) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = slices.DeleteFunc(r.collectors, func(x prometheus.Collector) bool { return x == c })
	return true
}

// Describe sends the descriptors of every registered collector.
func (r *registry) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range r.snapshot() {
		c.Describe(ch)
	}
}

// Collect sends the metrics of every registered collector.
func (r *registry) Collect(ch chan<- prometheus.Metric) {
	for _, c := range r.snapshot() {
		c.Collect(ch)
	}
}

func (r *registry) snapshot() []prometheus.Collector {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]prometheus.Collector(nil), r.collectors...)
}

// Series is one registered metric family: its name and variable label names.
type Series struct {
	Name   string
	Labels []string
}

// descPattern reads a Desc's String(), the only public view of its name and labels.
var descPattern = regexp.MustCompile(`^Desc\{fqName: "([^"]+)", .*variableLabels: \{([^}]*)\}\}$`)

// Registered lists every family registered in Registry, with or without samples.
func Registered() []Series {
	ch := make(chan *prometheus.Desc)
	go func() {
		Registry.Describe(ch)
		close(ch)
	}()
	var out []Series
	for d := range ch {
		m := descPattern.FindStringSubmatch(d.String())
		if m == nil {
			continue
		}
		s := Series{Name: m[1]}
		if m[2] != "" {
			s.Labels = strings.Split(m[2], ",")
		}
		out = append(out, s)
	}
	return out
}

// Documented is one line of the series list in this package's doc comment.
type Documented struct {
	Name   string
	Labels []string
	Type   string // gauge, counter or histogram
}

var docLine = regexp.MustCompile(`^\s+(image_prewarm_[a-z0-9_]+)(?:\{([a-z0-9_,]*)\})?\s+(gauge|counter|histogram),`)

// DocumentedSeries parses the series list of this package's doc comment (the text of
// metrics.go's package comment): every line "image_prewarm_<name>{labels} type, …".
// The contract tests compare it with Registered and with what Prometheus scrapes.
func DocumentedSeries(doc string) ([]Documented, error) {
	var out []Documented
	seen := map[string]bool{}
	for line := range strings.SplitSeq(doc, "\n") {
		m := docLine.FindStringSubmatch(line)
		if m == nil {
			if strings.HasPrefix(strings.TrimSpace(line), namespace+"_") {
				return nil, fmt.Errorf("series line not in the form name{labels} type, meaning: %q", line)
			}
			continue
		}
		if seen[m[1]] {
			return nil, fmt.Errorf("%s is listed twice", m[1])
		}
		seen[m[1]] = true
		d := Documented{Name: m[1], Type: m[3]}
		if m[2] != "" {
			d.Labels = strings.Split(m[2], ",")
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no series list found")
	}
	return out, nil
}

// Reason classes keep the reason label bounded.
const (
	ReasonUnauthorized = "unauthorized"
	ReasonNotFound     = "not_found"
	ReasonPullError    = "pull_error"
	ReasonTimeout      = "timeout"
	ReasonNodeGone     = "node_gone"
	ReasonOther        = "other"
)

// ReasonClass maps a kubelet or Job failure reason and message to a bounded class.
func ReasonClass(reason, message string) string {
	text := strings.ToLower(reason + " " + message)
	switch {
	case strings.Contains(text, "unauthorized") || strings.Contains(text, "forbidden") || strings.Contains(text, "denied") || httpStatus(text, "401", "403"):
		return ReasonUnauthorized
	case strings.Contains(text, "not found") || strings.Contains(text, "manifest unknown") || httpStatus(text, "404"):
		return ReasonNotFound
	case strings.Contains(text, "deadline"):
		return ReasonTimeout
	case strings.Contains(text, "gone"):
		return ReasonNodeGone
	case strings.Contains(text, "imagepull") || strings.Contains(text, "errimage") || strings.Contains(text, "pull"):
		return ReasonPullError
	}
	return ReasonOther
}

// statusCode finds a three-digit number standing alone: "401 Unauthorized", "status:
// 403", but not the port in "127.0.0.1:40177", which once made an unreachable
// registry look like rejected credentials.
var statusCode = regexp.MustCompile(`(^|[^0-9.:])([1-5][0-9][0-9])([^0-9]|$)`)

// httpStatus reports whether text carries one of the HTTP status codes.
func httpStatus(text string, codes ...string) bool {
	for _, m := range statusCode.FindAllStringSubmatch(text, -1) {
		if slices.Contains(codes, m[2]) {
			return true
		}
	}
	return false
}

// rejected remembers, per spec, the last revision counted by RejectConfig.
var rejected = struct {
	sync.Mutex
	revision map[string]string
}{revision: map[string]string{}}

// RejectConfig marks a spec's config invalid and counts the rejection once per
// revision (the ConfigMap's resourceVersion): a rejected spec is reconciled again and
// again, but it was rejected once. first says this call is that once.
func RejectConfig(spec, revision string) (first bool) {
	ConfigValid.WithLabelValues(spec).Set(0)
	rejected.Lock()
	defer rejected.Unlock()
	if rejected.revision[spec] == revision {
		return false
	}
	rejected.revision[spec] = revision
	ConfigRejections.WithLabelValues(spec).Inc()
	return true
}

// ForgetSpec removes a deleted spec's series, so dashboards show no ghosts and the
// spec label stays bounded by the specs that exist (tasks come and go).
func ForgetSpec(spec string) {
	for _, v := range []*prometheus.MetricVec{Nodes.MetricVec, Progress.MetricVec, Duration.MetricVec, RunPhase.MetricVec, ConfigValid.MetricVec,
		JobsCreated.MetricVec, JobsFinished.MetricVec, NodeFailures.MetricVec, Rewarms.MetricVec, PullsHeld.MetricVec, ConfigRejections.MetricVec, RefillLatency.MetricVec} {
		v.DeletePartialMatch(prometheus.Labels{"spec": spec})
	}
	rejected.Lock()
	delete(rejected.revision, spec)
	rejected.Unlock()
}
