// Package perf measures image-prewarm for `make bench` and writes RESULTS.md: every
// figure is the median of several runs with min and max, beside its goal. Nothing
// here asserts a time: the machines are noisy, so figures are recorded, not tested.
package perf

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// Figure is one measured quantity over several runs.
type Figure struct {
	Name   string
	Goal   string
	Unit   string
	Values []float64
	Note   string
}

func (f Figure) stats() (median, lo, hi float64) {
	v := append([]float64(nil), f.Values...)
	sort.Float64s(v)
	if len(v) == 0 {
		return 0, 0, 0
	}
	median = v[len(v)/2]
	if len(v)%2 == 0 {
		median = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return median, v[0], v[len(v)-1]
}

// Recorder collects figures from the benchmarks of one `make bench` run.
type Recorder struct {
	mu      sync.Mutex
	figures []Figure
}

// Add records a figure.
func (r *Recorder) Add(f Figure) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.figures = append(r.figures, f)
}

// Write renders RESULTS.md.
func (r *Recorder) Write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\nWritten by `make bench` — do not edit by hand.\n\n")
	fmt.Fprintf(&b, "- date: %s\n- commit: %s\n- machine: %s, %d cores, %s\n- go: %s\n\n",
		time.Now().UTC().Format(time.RFC3339), gitCommit(), runtime.GOOS+"/"+runtime.GOARCH, runtime.NumCPU(), memTotal(), runtime.Version())
	b.WriteString("Each figure is the median of the runs, with min and max. The machine is shared and noisy: read ratios and medians, not single numbers.\n\n")
	b.WriteString("| figure | median | min | max | runs | goal | notes |\n|---|---|---|---|---|---|---|\n")
	measured := map[string]bool{}
	for _, f := range r.figures {
		med, lo, hi := f.stats()
		measured[f.Name] = true
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s |\n", f.Name, format(med, f.Unit), format(lo, f.Unit), format(hi, f.Unit), len(f.Values), f.Goal, f.Note)
	}
	for _, row := range earlierRows(path, measured) {
		b.WriteString(row + "\n")
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// earlierRows keeps the figures of a previous RESULTS.md that this run did not measure
// (a run limited with -run), each marked with the commit it was measured at.
func earlierRows(path string, measured map[string]bool) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	commit := "an earlier commit"
	var rows []string
	for _, line := range strings.Split(string(raw), "\n") {
		if c, ok := strings.CutPrefix(line, "- commit: "); ok {
			commit = c
		}
		cells := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| ") || len(cells) < 7 || strings.HasPrefix(line, "| figure") {
			continue
		}
		if name := strings.TrimPrefix(cells[0], "| "); !measured[name] {
			if !strings.Contains(line, "(measured at ") {
				line = strings.TrimSuffix(line, " |") + " (measured at " + commit + ") |"
			}
			rows = append(rows, line)
		}
	}
	return rows
}

func format(v float64, unit string) string {
	switch unit {
	case "ratio":
		return fmt.Sprintf("%.3f", v)
	case "ms":
		return fmt.Sprintf("%.1f ms", v)
	case "µs":
		return fmt.Sprintf("%.1f µs", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	}
	return fmt.Sprintf("%.2f %s", v, unit)
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func memTotal() string {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "memory unknown"
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	return strings.Join(strings.Fields(line)[1:], " ") + " RAM"
}
