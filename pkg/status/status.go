// Package status is the durable, human-readable record of a spec's current run: the
// sibling ConfigMap "<spec>-status" (the summary) and, past a thousand nodes, sealed
// segment ConfigMaps "<spec>-status-<k>". The summary holds what people read (phase,
// counts, failures grouped by reason with a sample of nodes, times) and is bounded
// whatever the cluster's size. Every node's result, which a restarted controller needs
// to resume (finished Jobs are deleted once recorded), lives in segments of at most
// segmentNodes nodes: the summary carries the open one, so below a thousand nodes a
// status is one object, and a write touches the summary plus at most one sealed
// segment that changed. See segments.go.
package status

import (
	"encoding/json"
	"errors"
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
	// PhasePaused: pulls of a registry (rejected credentials) or an image (not found)
	// are held back after a few nodes failed alike; see Holds and Message.
	PhasePaused = "Paused"
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
	// KeyFailed is for people: the failure groups, one line each with sample nodes.
	KeyFailed = "failedNodes"
	// KeyFailures is the failure groups as JSON ([]Group), bounded (maxGroups).
	KeyFailures = "failures"
	// KeyNodes is one segment's node results as JSON: phase → reason → node names.
	KeyNodes = "nodes"
	// KeyHolds is the pulls held back, as JSON ([]Hold).
	KeyHolds = "holds"
	// KeySegments is how many sealed segment ConfigMaps the run has beside the summary.
	KeySegments = "segments"
	// KeyResults is every node's result in one JSON object, as versions before segments
	// wrote it: read on upgrade, never written.
	KeyResults = "results"
	// KeySizes holds each pulled reference's size in bytes, as kubelet reported it.
	KeySizes = "imageSizes"
	// LabelStatusOf names the spec a status ConfigMap belongs to.
	LabelStatusOf = "image-prewarm.io/status-of"
	// LabelSegment marks a sealed segment and gives its number (1, 2, …).
	LabelSegment = "image-prewarm.io/status-segment"
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
	// Results holds every node that reported, by name. Read it freely; change it only
	// through SetResult and DropResult, which keep the segments' record of what to write.
	Results map[string]Result
	// Failures groups the failed and gone nodes by identical reason, largest first, as
	// the summary stored them (ConfigMaps derives them afresh from Results).
	Failures []Group `json:",omitempty"`
	// Sizes are the images' and artifacts' sizes in bytes, by reference, from
	// kubelet's Pulled Events; a reference no node has pulled yet is absent.
	Sizes map[string]int64 `json:",omitempty"`
	// Holds are the pulls the run holds back.
	Holds []Hold `json:",omitempty"`
	// Segments is how many sealed segments the stored status has.
	Segments int `json:",omitempty"`

	layout *layout // which segment holds which node; nil until first needed
}

// Hold is pulls a run holds back after a few nodes failed alike: every image of a
// registry that rejected the credentials, or one image that was not found.
type Hold struct {
	Kind     string    `json:"kind"` // HoldCredentials or HoldNotFound
	Registry string    `json:"registry,omitempty"`
	Image    string    `json:"image,omitempty"`
	Reason   string    `json:"reason"` // the first failure's
	Nodes    []string  `json:"nodes"`  // the nodes that failed so
	Since    time.Time `json:"since"`
}

// Kinds of Hold.
const (
	HoldCredentials = "CredentialsRejected"
	HoldNotFound    = "ImageNotFound"
)

// Name returns the status ConfigMap name for a spec.
func Name(spec string) string {
	return cutName(spec + "-status")
}

func cutName(name string) string {
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

// ConfigMap renders the summary alone, with the open segment's nodes: the whole status
// while it has no sealed segment, and a bounded record of a bigger one (a task's
// tombstone). The controller writes ConfigMaps.
func (s *Status) ConfigMap(namespace string, labels map[string]string) (*corev1.ConfigMap, error) {
	objs, err := s.ConfigMaps(namespace, labels)
	if err != nil {
		return nil, err
	}
	return objs[len(objs)-1], nil
}

// summary renders the summary ConfigMap around the open segment's encoded nodes.
func (s *Status) summary(namespace string, labels map[string]string, nodes string, segments int) (*corev1.ConfigMap, error) {
	groups := GroupFailures(s.Results)
	failures, err := json.Marshal(groups)
	if err != nil {
		return nil, fmt.Errorf("encode failures: %w", err)
	}
	data := map[string]string{
		KeyPhase:    s.Phase,
		KeyRunID:    s.RunID,
		KeyMessage:  s.Message,
		KeyCounts:   formatCounts(s.Counts),
		KeyTotal:    strconv.Itoa(s.Total),
		KeyFailed:   describeGroups(groups),
		KeyFailures: string(failures),
		KeyNodes:    nodes,
		KeySegments: strconv.Itoa(segments),
	}
	if len(s.Holds) > 0 {
		holds, err := json.Marshal(s.Holds)
		if err != nil {
			return nil, fmt.Errorf("encode holds: %w", err)
		}
		data[KeyHolds] = string(holds)
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
		ObjectMeta: metav1.ObjectMeta{Name: Name(s.Spec), Namespace: namespace, Labels: statusLabels(s.Spec, labels)},
		Data:       data,
	}, nil
}

func statusLabels(spec string, extra map[string]string) map[string]string {
	l := map[string]string{LabelStatusOf: labelSafe(spec)}
	for k, v := range extra {
		l[k] = v
	}
	return l
}

// FromConfigMap reads a summary. It reads what it can: a field that is broken or cut
// short (an older version's, or one edited by hand) is skipped, a truncated results
// object keeps its complete entries, and the error says what was lost, so a caller
// resumes with the rest rather than start the run afresh. The nodes of sealed
// segments are added by Assemble.
func FromConfigMap(spec string, cm *corev1.ConfigMap) (*Status, error) {
	s := &Status{Spec: spec, RunID: cm.Data[KeyRunID], Phase: cm.Data[KeyPhase], Message: cm.Data[KeyMessage], Results: map[string]Result{}}
	var errs []error
	if raw := cm.Data[KeyResults]; raw != "" { // written before segments
		errs = append(errs, decodeResultsPrefix(raw, s.Results))
	}
	errs = append(errs, decodeNodes(cm.Data[KeyNodes], s.Results))
	if raw := cm.Data[KeyFailures]; raw != "" {
		errs = append(errs, keyError(KeyFailures, json.Unmarshal([]byte(raw), &s.Failures)))
	}
	if raw := cm.Data[KeyHolds]; raw != "" {
		errs = append(errs, keyError(KeyHolds, json.Unmarshal([]byte(raw), &s.Holds)))
	}
	if raw := cm.Data[KeySizes]; raw != "" {
		errs = append(errs, keyError(KeySizes, json.Unmarshal([]byte(raw), &s.Sizes)))
	}
	s.Segments, _ = strconv.Atoi(cm.Data[KeySegments])
	s.Total, _ = strconv.Atoi(cm.Data[KeyTotal])
	s.Started, _ = time.Parse(time.RFC3339, cm.Data[KeyStarted])
	s.Finished, _ = time.Parse(time.RFC3339, cm.Data[KeyFinished])
	s.Counts = parseCounts(cm.Data[KeyCounts])
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("status %s: %w", cm.Name, err)
	}
	return s, nil
}

func keyError(key string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", key, err)
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
