package perf

import (
	"bufio"
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// goBenchmark is one in-process benchmark folded into RESULTS.md.
type goBenchmark struct {
	pkg, name, goal string
	count           int      // runs; 5 when 0
	flags, env      []string // more `go test` flags, and the child's environment
	// figures turns the output into figures; nil: one per-op time (or live heap) figure.
	figures func(b goBenchmark, out []byte, runs int) []Figure
}

// goBenchmarks are the in-process benchmarks folded into RESULTS.md.
var goBenchmarks = []goBenchmark{
	{pkg: "./pkg/rollout", name: "BenchmarkDecide", goal: "O(n), a few allocs"},
	{pkg: "./pkg/webhook", name: "BenchmarkMutate", goal: "p99 ≤ 100 µs"},
	{pkg: "./pkg/controller", name: "BenchmarkNodeCache", goal: "part of the ≤ 64 MiB heap"},
	// One op is one whole run; 20000 nodes only with IMAGE_PREWARM_SCALE=full.
	{pkg: "./pkg/controller", name: "BenchmarkScale", count: 3, flags: []string{"-benchtime", "1x", "-timeout", "90m"},
		env: []string{"IMAGE_PREWARM_SCALE=full"}, figures: scaleFigures},
	{pkg: "./pkg/status", name: "BenchmarkStatusSize", count: 1, flags: []string{"-benchtime", "3x"}, figures: statusSizeFigures},
}

// fuzzTargets are run for FUZZTIME each (default 3m) to show no input crashes them.
var fuzzTargets = []struct{ pkg, name string }{
	{"./pkg/config", "FuzzParse"},
	{"./pkg/pullsecret", "FuzzFromSecret"},
	{"./pkg/jobs", "FuzzJobName"},
	{"./pkg/tasks", "FuzzDecodeTaskRequest"},
	{"./pkg/webhook", "FuzzDecodeReview"},
}

var liveLine = regexp.MustCompile(`([\d.]+) MiB-live`)

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

func TestGoBenchmarks(t *testing.T) {
	if !enabled {
		t.Skip("make bench runs this")
	}
	for _, b := range goBenchmarks {
		runs := cmp.Or(b.count, 5)
		args := append([]string{"test", "-run", "^$", "-bench", "^" + b.name + "$", "-benchmem", "-count", strconv.Itoa(runs)}, b.flags...)
		cmd := exec.Command("go", append(args, b.pkg)...)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), b.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", b.name, err, out)
			continue
		}
		figures := b.figures
		if figures == nil {
			figures = microFigures
		}
		for _, f := range figures(b, out, runs) {
			results.Add(f)
		}
	}
}

// microFigures: the per-op time, or the live heap when the benchmark reports one.
func microFigures(b goBenchmark, out []byte, runs int) []Figure {
	var ns, allocs, live []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if m := liveLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			live = append(live, v)
		}
		if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
			v, _ := strconv.ParseFloat(m[3], 64)
			ns = append(ns, v/1000)
			a, _ := strconv.ParseFloat(m[5], 64)
			allocs = append(allocs, a)
		}
	}
	note := fmt.Sprintf("go test -bench, %d runs", runs)
	if len(live) > 0 {
		return []Figure{{Name: b.name + ": live heap", Goal: b.goal, Unit: "MiB", Values: live, Note: "what a GC finds live with the store over without it; " + note}}
	}
	return []Figure{{Name: b.name + " (in-process, per op)", Goal: b.goal, Unit: "µs", Values: ns, Note: "allocs/op " + strconv.FormatFloat(median(allocs), 'f', 0, 64) + "; " + note}}
}

// scaleLine is one size of BenchmarkScale: the node count, then "value unit" pairs;
// saturatedLine the same for its stress run with Jobs of 1–5 ms.
var (
	scaleLine     = regexp.MustCompile(`^BenchmarkScale/nodes=(\d+)(?:-\d+)?\s+\d+\s+(.*)$`)
	saturatedLine = regexp.MustCompile(`^BenchmarkScale/saturated/nodes=(\d+)(?:-\d+)?\s+\d+\s+(.*)$`)
)

// scaleFigures folds BenchmarkScale's runs (pkg/controller/scale_test.go says what each
// metric holds) into figures per node count, and the CPU ratio of the largest to the
// smallest.
func scaleFigures(_ goBenchmark, out []byte, runs int) []Figure {
	bySize := parseScale(out, scaleLine) // nodes → unit → one value per run
	sizes := slices.Sorted(maps.Keys(bySize))
	where := fmt.Sprintf("real controller on a fake clientset, Jobs done 50–250 ms after creation, window 50; %d runs", runs)
	var figs []Figure
	for _, n := range sizes {
		v := bySize[n]
		name := fmt.Sprintf("in-process scale, %d nodes: ", n)
		figs = append(figs,
			Figure{Name: name + "CPU per finished Job", Unit: "µs", Values: scaled(v["cpu-ms/job"], 1000),
				Note: "process user+sys ÷ N; the fake API server and the stand-in Job controller run in the process too, so an upper bound on the controller's share; " + where},
			Figure{Name: name + "refill p99 (controller side)", Goal: goalAt(n, 5000, "≤ 10 ms"), Unit: "ms", Values: v["refill-p99-ms"],
				Note: fmt.Sprintf("image_prewarm_refill_latency_seconds, buckets ×2 apart; median p50 %.1f ms over %.0f refills; %s", median(v["refill-p50-ms"]), median(v["refills"]), where)},
			Figure{Name: name + "peak heap in use", Unit: "MiB", Values: v["heap-MiB"],
				Note: fmt.Sprintf("no goal: HeapInuse over a baseline after the fake held every node, from the informers' sync on; it holds the garbage the GC lets grow with the whole heap, and the fake's full nodes (about 400 MiB at 20 000) make that heap, so it says more about the fake than the controller, whose goal is on the live heap below; during the sync %.1f MiB (the fake's one-shot copy of every node); %s", median(v["heap-sync-MiB"]), where)},
			Figure{Name: name + "peak live heap", Goal: goalAt(n, 20000, "≤ 64 MiB"), Unit: "MiB", Values: v["heap-live-MiB"],
				Note: "the heap each GC found live, over the same baseline: the controller, plus the fake's Jobs, status and watch buffers; " + where},
			Figure{Name: name + "controller's share of the peak live heap", Goal: goalAt(n, 20000, "≤ 64 MiB"), Unit: "MiB", Values: v["heap-ctl-MiB"],
				Note: "heap profile in use at the live peak, allocations through neither the fake nor the harness, over the baseline; an estimate, a little low (pkg/controller ctlHeap); " + where},
		)
	}
	for n, v := range parseScale(out, saturatedLine) {
		figs = append(figs, Figure{Name: fmt.Sprintf("in-process scale, %d nodes, saturated: refill p99 (controller side)", n), Unit: "ms", Values: v["refill-p99-ms"],
			Note: fmt.Sprintf("stress, no goal: Jobs done 1–5 ms after creation, about 4000 a second, and the fake and stand-in Job controller keep both cores busy, so this is mostly time in the run queue; median p50 %.1f ms, CPU per Job %.0f µs; %d runs",
				median(v["refill-p50-ms"]), 1000*median(v["cpu-ms/job"]), runs)})
	}
	if len(sizes) > 1 {
		lo, hi := sizes[0], sizes[len(sizes)-1]
		ratio := median(bySize[hi]["cpu-ms/job"]) / median(bySize[lo]["cpu-ms/job"])
		figs = append(figs, Figure{Name: fmt.Sprintf("in-process scale: CPU per finished Job, %d ÷ %d nodes", hi, lo), Goal: "≤ 2", Unit: "ratio",
			Values: []float64{ratio}, Note: "ratio of the medians above"})
	}
	return figs
}

func parseScale(out []byte, line *regexp.Regexp) map[int]map[string][]float64 {
	bySize := map[int]map[string][]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := line.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if bySize[n] == nil {
			bySize[n] = map[string][]float64{}
		}
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			if v, err := strconv.ParseFloat(fields[i], 64); err == nil {
				bySize[n][fields[i+1]] = append(bySize[n][fields[i+1]], v)
			}
		}
	}
	return bySize
}

// statusSizeLine is one case of BenchmarkStatusSize: its name, then "value unit" pairs.
var statusSizeLine = regexp.MustCompile(`^BenchmarkStatusSize/(\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// statusSizeFigures: the stored status of 20 000 nodes, per case, against the API
// server's 1 MiB per object.
func statusSizeFigures(_ goBenchmark, out []byte, _ int) []Figure {
	var figs []Figure
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := statusSizeLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		v := map[string]float64{}
		fields := strings.Fields(m[2])
		for i := 0; i+1 < len(fields); i += 2 {
			v[fields[i+1]], _ = strconv.ParseFloat(fields[i], 64)
		}
		figs = append(figs, Figure{Name: "status of 20 000 nodes, " + m[1] + ": largest object", Goal: "< 1 MiB", Unit: "KiB",
			Values: []float64{v["largest-B"] / 1024},
			Note:   fmt.Sprintf("%.0f objects, %.0f KiB in all, summary %.1f KiB; failures share one 300-character reason", v["objects"], v["total-B"]/1024, v["summary-B"]/1024)})
	}
	return figs
}

func scaled(v []float64, by float64) []float64 {
	out := make([]float64, len(v))
	for i := range v {
		out[i] = v[i] * by
	}
	return out
}

// goalAt is goal for the node count it is set at, else nothing.
func goalAt(n, at int, goal string) string {
	if n == at {
		return goal
	}
	return ""
}

func TestFuzzTargetsRunClean(t *testing.T) {
	if !enabled {
		t.Skip("make bench runs this")
	}
	fuzztime := os.Getenv("FUZZTIME")
	if fuzztime == "" {
		fuzztime = "3m"
	}
	execs := regexp.MustCompile(`execs: (\d+)`)
	for _, f := range fuzzTargets {
		cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+f.name+"$", "-fuzztime", fuzztime, f.pkg)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s crashed (new inputs in testdata/fuzz become regression cases):\n%s", f.name, out)
			continue
		}
		all := execs.FindAllSubmatch(out, -1)
		n := 0.0
		if len(all) > 0 {
			n, _ = strconv.ParseFloat(string(all[len(all)-1][1]), 64)
		}
		results.Add(Figure{Name: "fuzz " + f.name + " for " + fuzztime, Goal: "no crash", Unit: "execs", Values: []float64{n}, Note: "passed"})
	}
}

func median(v []float64) float64 {
	f := Figure{Values: v}
	m, _, _ := f.stats()
	return m
}
