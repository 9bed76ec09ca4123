// Package cli implements `image-prewarm status`: each spec's and task's run read from
// its status ConfigMap, shown with a progress bar, counts, ETA and failing nodes.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/image-prewarm/image-prewarm/pkg/status"
)

// maxFailuresShown bounds the failure groups listed per spec, maxNodesShown the nodes
// named per group; the rest are counted.
const (
	maxFailuresShown = 5
	maxNodesShown    = 3
)

// maxReasonShown keeps a failure on one line of an ordinary terminal; the status
// ConfigMap and -o json hold the whole reason.
const maxReasonShown = 90

func shorten(s string, n int) string {
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

// Load reads every status in the namespace, summaries with their segments, sorted by
// spec name. A status read in part (a broken field) is shown with what was read: the
// controller rewrites it shortly.
func Load(ctx context.Context, client kubernetes.Interface, namespace string) ([]*status.Status, error) {
	list, err := client.CoreV1().ConfigMaps(namespace).List(ctx, metav1.ListOptions{LabelSelector: status.LabelStatusOf})
	if err != nil {
		return nil, fmt.Errorf("list status ConfigMaps in %s: %w", namespace, err)
	}
	all := status.FromList(list.Items)
	out := make([]*status.Status, 0, len(all))
	for _, s := range all {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Spec < out[j].Spec })
	return out, nil
}

// Render writes one block per status: a progress bar line, then failing nodes.
func Render(w io.Writer, statuses []*status.Status, now time.Time, width int) {
	if len(statuses) == 0 {
		fmt.Fprintln(w, "no prewarm runs yet")
		return
	}
	for _, s := range statuses {
		reported := s.Counts["Succeeded"] + s.Counts["Failed"] + s.Counts["Skipped"] + s.Counts["Gone"]
		fmt.Fprintf(w, "%-16s %-21s %s %3.0f%% %d/%d  %s\n", s.Spec, s.Phase, bar(reported, s.Total, width),
			percent(reported, s.Total), reported, s.Total, timing(s, reported, now))
		fmt.Fprintf(w, "    ok %d · skipped %d · failed %d · running %d · pending %d", s.Counts["Succeeded"], s.Counts["Skipped"],
			s.Counts["Failed"]+s.Counts["Gone"], s.Counts["Running"], s.Counts["Pending"])
		if paused := s.Counts["Paused"]; paused > 0 {
			fmt.Fprintf(w, " · paused %d", paused)
		}
		fmt.Fprintln(w)
		if s.Message != "" && s.Phase != status.PhaseSucceeded && s.Phase != status.PhaseRunning {
			fmt.Fprintf(w, "    %s\n", s.Message)
		}
		renderFailures(w, s)
	}
}

// renderFailures shows the largest failure groups: one line per reason with its
// count and first nodes, so 20 000 nodes failing alike read as one line.
func renderFailures(w io.Writer, s *status.Status) {
	groups := status.GroupFailures(s.Results)
	for i, g := range groups {
		if i == maxFailuresShown {
			fmt.Fprintf(w, "    … and %d more failed nodes, for other reasons\n", status.FailedCount(groups[i:]))
			break
		}
		nodes := strings.Join(g.Nodes[:min(len(g.Nodes), maxNodesShown)], ", ")
		if more := g.Count - min(len(g.Nodes), maxNodesShown); more > 0 {
			nodes += fmt.Sprintf(" and %d more", more)
		}
		fmt.Fprintf(w, "    ✗ %d × %s\n        %s\n", g.Count, shorten(g.Reason, maxReasonShown), nodes)
	}
}

func bar(done, total, width int) string {
	if width < 1 {
		width = 1
	}
	filled := width
	if total > 0 {
		filled = done * width / total
	}
	return "[" + strings.Repeat("█", filled) + strings.Repeat("░", width-filled) + "]"
}

func percent(done, total int) float64 {
	if total == 0 {
		return 100
	}
	return 100 * float64(done) / float64(total)
}

// timing shows elapsed time and, while running, an ETA from the pace so far.
func timing(s *status.Status, reported int, now time.Time) string {
	if s.Started.IsZero() {
		return ""
	}
	if !s.Finished.IsZero() {
		return "took " + s.Finished.Sub(s.Started).Round(time.Second).String()
	}
	elapsed := now.Sub(s.Started)
	if reported == 0 || reported >= s.Total {
		return "elapsed " + elapsed.Round(time.Second).String()
	}
	eta := time.Duration(float64(elapsed) / float64(reported) * float64(s.Total-reported))
	return fmt.Sprintf("elapsed %s  ETA %s", elapsed.Round(time.Second), eta.Round(time.Second))
}

// jsonStatus is the -o json shape: stable field names, no internal types.
type jsonStatus struct {
	Spec     string                   `json:"spec"`
	RunID    string                   `json:"runID"`
	Phase    string                   `json:"phase"`
	Message  string                   `json:"message,omitempty"`
	Total    int                      `json:"total"`
	Counts   map[string]int           `json:"counts"`
	Started  *time.Time               `json:"startTime,omitempty"`
	Finished *time.Time               `json:"finishTime,omitempty"`
	Failed   map[string]status.Result `json:"failedNodes,omitempty"`
	// Failures groups failedNodes by reason, largest first (a sample of nodes each).
	Failures []status.Group `json:"failures,omitempty"`
}

// RenderJSON writes the statuses as a JSON array.
func RenderJSON(w io.Writer, statuses []*status.Status) error {
	out := make([]jsonStatus, len(statuses))
	for i, s := range statuses {
		js := jsonStatus{Spec: s.Spec, RunID: s.RunID, Phase: s.Phase, Message: s.Message, Total: s.Total, Counts: s.Counts}
		if !s.Started.IsZero() {
			js.Started = &s.Started
		}
		if !s.Finished.IsZero() {
			js.Finished = &s.Finished
		}
		js.Failures = status.GroupFailures(s.Results)
		for node, r := range s.Results {
			if r.Reason != "" {
				if js.Failed == nil {
					js.Failed = map[string]status.Result{}
				}
				js.Failed[node] = r
			}
		}
		out[i] = js
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// Watch redraws the statuses every interval until ctx ends or, when untilDone, every
// run has ended. On a terminal it redraws in place; otherwise it appends plain blocks.
func Watch(ctx context.Context, client kubernetes.Interface, namespace string, w io.Writer, terminal, untilDone bool, interval time.Duration) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		statuses, err := Load(ctx, client, namespace)
		if terminal {
			fmt.Fprint(w, "\033[H\033[2J")
		}
		fmt.Fprintf(w, "image-prewarm status — namespace %s — %s\n", namespace, time.Now().Format("15:04:05"))
		if err != nil { // a watcher outlives API server hiccups: say so and try again
			fmt.Fprintf(w, "cannot read status (retrying): %v\n", err)
		} else {
			Render(w, statuses, time.Now(), 30)
		}
		if !terminal {
			fmt.Fprintln(w)
		}
		if untilDone && err == nil && allDone(statuses) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func allDone(statuses []*status.Status) bool {
	if len(statuses) == 0 {
		return false
	}
	for _, s := range statuses {
		if !s.Done() {
			return false
		}
	}
	return true
}

// IsTerminal reports whether w is a character device, i.e. a person is watching.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
