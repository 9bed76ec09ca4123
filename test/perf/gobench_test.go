package perf

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// goBenchmarks are the in-process micro-benchmarks folded into RESULTS.md.
var goBenchmarks = []struct {
	pkg, name, goal string
}{
	{"./pkg/rollout", "BenchmarkDecide", "O(n), a few allocs"},
	{"./pkg/webhook", "BenchmarkMutate", "p99 ≤ 100 µs"},
	{"./pkg/controller", "BenchmarkNodeCache", "part of the ≤ 64 MiB heap"},
}

// fuzzTargets are run for FUZZTIME each (default 3m) to show no input crashes them.
var fuzzTargets = []struct{ pkg, name string }{
	{"./pkg/config", "FuzzParse"},
	{"./pkg/pullsecret", "FuzzFromSecret"},
	{"./pkg/jobs", "FuzzJobName"},
	{"./pkg/tasks", "FuzzDecodeTaskRequest"},
	{"./pkg/webhook", "FuzzDecodeReview"},
}

var heldLine = regexp.MustCompile(`([\d.]+) MiB-held`)

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+([\d.]+) ns/op(?:\s+([\d.]+) B/op\s+([\d.]+) allocs/op)?`)

func TestGoBenchmarks(t *testing.T) {
	if !enabled {
		t.Skip("make bench runs this")
	}
	for _, b := range goBenchmarks {
		cmd := exec.Command("go", "test", "-run", "^$", "-bench", "^"+b.name+"$", "-benchmem", "-count", "5", b.pkg)
		cmd.Dir = "../.."
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("%s: %v\n%s", b.name, err, out)
			continue
		}
		var ns, allocs, held []float64
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if m := heldLine.FindStringSubmatch(sc.Text()); m != nil {
				v, _ := strconv.ParseFloat(m[1], 64)
				held = append(held, v)
			}
			if m := benchLine.FindStringSubmatch(sc.Text()); m != nil {
				v, _ := strconv.ParseFloat(m[3], 64)
				ns = append(ns, v/1000)
				a, _ := strconv.ParseFloat(m[5], 64)
				allocs = append(allocs, a)
			}
		}
		if len(held) > 0 {
			results.Add(Figure{Name: b.name + ": heap held", Goal: b.goal, Unit: "MiB", Values: held, Note: "go test -bench, 5 runs"})
			continue
		}
		results.Add(Figure{Name: b.name + " (in-process, per op)", Goal: b.goal, Unit: "µs", Values: ns, Note: "allocs/op " + strconv.FormatFloat(median(allocs), 'f', 0, 64) + "; go test -bench, 5 runs"})
	}
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
