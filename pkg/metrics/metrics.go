// Package metrics owns every Prometheus series image-prewarm exports. All share the
// prefix image_prewarm_ and bounded labels: spec (a prewarm ConfigMap name), registry
// (a listed registry host), state, result, reason (a small fixed class) — never a node
// name, an image list or an error string.
//
// Series:
//
//	image_prewarm_build_info{version,go_version}                   gauge, always 1
//	image_prewarm_nodes{spec,state}                                 gauge, nodes of the current run by state
//	image_prewarm_rollout_progress_ratio{spec}                      gauge, reported / total nodes of the run
//	image_prewarm_rollout_duration_seconds{spec}                    gauge, time since the run started (frozen when done)
//	image_prewarm_run_phase{spec,phase}                             gauge, 1 for the run's current phase
//	image_prewarm_jobs_created_total{spec}                          counter
//	image_prewarm_jobs_finished_total{spec,result}                  counter, result=succeeded|failed|cancelled
//	image_prewarm_node_failures_total{spec,reason}                  counter, reason class (see ReasonClass)
//	image_prewarm_image_pull_duration_seconds{registry}             histogram, from init-container timestamps
//	image_prewarm_secrets_created_total / _deleted_total            counters
//	image_prewarm_secret_operation_failures_total{operation}         counter, operation=create|delete|read
//	image_prewarm_secrets_active                                    gauge
//	image_prewarm_config_valid{spec}                                gauge, 1 valid, 0 rejected
//	image_prewarm_reconcile_total{result}                           counter, result=success|error|conflict
//	image_prewarm_is_leader                                         gauge
package metrics

import (
	"runtime"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

const namespace = "image_prewarm"

// Version is set at build time with -ldflags "-X .../pkg/metrics.Version=…".
var Version = "dev"

// Registry holds every series of this package; /metrics serves it.
var Registry = prometheus.NewRegistry()

var (
	BuildInfo = gauge("build_info", "Build information; always 1.", "version", "go_version")
	Nodes     = gauge("nodes", "Nodes of the current run of a spec by state.", "spec", "state")
	Progress  = gauge("rollout_progress_ratio", "Reported nodes / all nodes of the current run.", "spec")
	Duration  = gauge("rollout_duration_seconds", "Seconds since the current run started; frozen when it ends.", "spec")
	RunPhase  = gauge("run_phase", "1 for the current phase of a spec's run.", "spec", "phase")

	JobsCreated  = counter("jobs_created_total", "Prewarm Jobs created.", "spec")
	JobsFinished = counter("jobs_finished_total", "Prewarm Jobs finished by result.", "spec", "result")
	NodeFailures = counter("node_failures_total", "Nodes that failed to prewarm by reason class.", "spec", "reason")

	PullDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "image_pull_duration_seconds",
		Help:    "Time to pull one image on one node, from init-container timestamps.",
		Buckets: []float64{1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200},
	}, []string{"registry"})

	SecretsCreated = counter("secrets_created_total", "Ephemeral pull Secrets created.")
	SecretsDeleted = counter("secrets_deleted_total", "Ephemeral pull Secrets deleted.")
	SecretFailures = counter("secret_operation_failures_total", "Failed Secret operations.", "operation")
	SecretsActive  = gauge("secrets_active", "Ephemeral pull Secrets that exist now.")
	ConfigValid    = gauge("config_valid", "1 when a spec's ConfigMap is valid, 0 when rejected.", "spec")
	Reconciles     = counter("reconcile_total", "Spec reconciles by result.", "result")
	IsLeader       = gauge("is_leader", "1 when this replica runs the controller.")
)

func init() {
	Registry.MustRegister(prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	Registry.MustRegister(PullDuration)
	BuildInfo.WithLabelValues(Version, runtime.Version()).Set(1)
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
	case strings.Contains(text, "unauthorized") || strings.Contains(text, "401") || strings.Contains(text, "403") || strings.Contains(text, "denied"):
		return ReasonUnauthorized
	case strings.Contains(text, "not found") || strings.Contains(text, "manifest unknown") || strings.Contains(text, "404"):
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

// ForgetSpec removes a deleted spec's series so dashboards don't show ghosts.
func ForgetSpec(spec string) {
	for _, v := range []*prometheus.GaugeVec{Nodes, Progress, Duration, RunPhase, ConfigValid} {
		v.DeletePartialMatch(prometheus.Labels{"spec": spec})
	}
}
