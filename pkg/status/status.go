// Package status is the durable, human-readable record of a spec's current run: the
// sibling ConfigMap "<spec>-status". It holds what people read (phase, counts, failed
// nodes with reasons, times) and what a restarted controller needs to resume (which
// nodes already reported, since finished Jobs are garbage-collected after their TTL).
package status

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Phases of a run.
const (
	PhasePending         = "Pending"
	PhaseRunning         = "Running"
	PhaseSucceeded       = "Succeeded" // every node succeeded or was skipped
	PhaseCompletedFailed = "CompletedWithFailures"
	PhaseFailed          = "Failed"  // the run could not proceed (e.g. its pull Secret)
	PhaseInvalid         = "Invalid" // the spec was rejected
	PhaseCancelled       = "Cancelled"
)

// Keys of the status ConfigMap.
const (
	KeyPhase    = "phase"
	KeyRunID    = "runID"
	KeyMessage  = "message"
	KeyCounts   = "counts"
	KeyTotal    = "total"
	KeyStarted  = "startTime"
	KeyFinished = "finishTime"
	KeyFailed   = "failedNodes"
	KeyResults  = "results"
	// KeySizes holds each pulled reference's size in bytes, as kubelet reported it.
	KeySizes = "imageSizes"
	// LabelStatusOf names the spec a status ConfigMap belongs to.
	LabelStatusOf = "image-prewarm.io/status-of"
)

// Result is one node's final outcome in a run.
type Result struct {
	Phase  string `json:"phase"`
	Reason string `json:"reason,omitempty"`
}

// Status of one spec's current run.
type Status struct {
	Spec     string
	RunID    string
	Phase    string
	Message  string
	Counts   map[string]int
	Total    int
	Started  time.Time
	Finished time.Time
	// Results holds every node that reported, by name.
	Results map[string]Result
	// Sizes are the images' and artifacts' sizes in bytes, by reference, from
	// kubelet's Pulled Events; a reference no node has pulled yet is absent.
	Sizes map[string]int64 `json:",omitempty"`
}

// Name returns the status ConfigMap name for a spec.
func Name(spec string) string {
	name := spec + "-status"
	if len(name) > 253 {
		name = name[len(name)-253:]
	}
	return name
}

// Done reports whether the run has ended.
func (s *Status) Done() bool {
	switch s.Phase {
	case PhaseSucceeded, PhaseCompletedFailed, PhaseCancelled:
		return true
	}
	return false
}

// ConfigMap renders the status as the ConfigMap to store.
func (s *Status) ConfigMap(namespace string, labels map[string]string) (*corev1.ConfigMap, error) {
	results, err := json.Marshal(s.Results)
	if err != nil {
		return nil, fmt.Errorf("encode results: %w", err)
	}
	l := map[string]string{LabelStatusOf: labelSafe(s.Spec)}
	for k, v := range labels {
		l[k] = v
	}
	data := map[string]string{
		KeyPhase:   s.Phase,
		KeyRunID:   s.RunID,
		KeyMessage: s.Message,
		KeyCounts:  formatCounts(s.Counts),
		KeyTotal:   strconv.Itoa(s.Total),
		KeyFailed:  s.failedNodes(),
		KeyResults: string(results),
	}
	if len(s.Sizes) > 0 {
		sizes, err := json.Marshal(s.Sizes)
		if err != nil {
			return nil, fmt.Errorf("encode sizes: %w", err)
		}
		data[KeySizes] = string(sizes)
	}
	if !s.Started.IsZero() {
		data[KeyStarted] = s.Started.UTC().Format(time.RFC3339)
	}
	if !s.Finished.IsZero() {
		data[KeyFinished] = s.Finished.UTC().Format(time.RFC3339)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: Name(s.Spec), Namespace: namespace, Labels: l},
		Data:       data,
	}, nil
}

// FromConfigMap reads a status written by ConfigMap; unknown or broken fields are
// reported as errors so a caller can start afresh rather than trust them.
func FromConfigMap(spec string, cm *corev1.ConfigMap) (*Status, error) {
	s := &Status{Spec: spec, RunID: cm.Data[KeyRunID], Phase: cm.Data[KeyPhase], Message: cm.Data[KeyMessage], Results: map[string]Result{}}
	if raw := cm.Data[KeyResults]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &s.Results); err != nil {
			return nil, fmt.Errorf("status %s: results: %w", cm.Name, err)
		}
	}
	if raw := cm.Data[KeySizes]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &s.Sizes); err != nil {
			return nil, fmt.Errorf("status %s: %s: %w", cm.Name, KeySizes, err)
		}
	}
	s.Total, _ = strconv.Atoi(cm.Data[KeyTotal])
	s.Started, _ = time.Parse(time.RFC3339, cm.Data[KeyStarted])
	s.Finished, _ = time.Parse(time.RFC3339, cm.Data[KeyFinished])
	s.Counts = parseCounts(cm.Data[KeyCounts])
	return s, nil
}

// failedNodes lists failed nodes with reasons, one per line, sorted, for people.
func (s *Status) failedNodes() string {
	var lines []string
	for node, r := range s.Results {
		if r.Reason != "" {
			lines = append(lines, node+": "+r.Phase+": "+r.Reason)
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func formatCounts(counts map[string]int) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.Itoa(counts[k])
	}
	return strings.Join(parts, " ")
}

func parseCounts(s string) map[string]int {
	counts := map[string]int{}
	for _, part := range strings.Fields(s) {
		k, v, ok := strings.Cut(part, "=")
		if n, err := strconv.Atoi(v); ok && err == nil {
			counts[k] = n
		}
	}
	return counts
}

func labelSafe(s string) string {
	if len(s) > 63 {
		return strings.Trim(s[:63], "-.")
	}
	return s
}
