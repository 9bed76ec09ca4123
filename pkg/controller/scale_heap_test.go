//go:build unix

package controller

import (
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// ctlHeap estimates BenchmarkScale's heap-ctl-MiB: the controller's own share of the
// live heap at its peak. heap-live-MiB counts the whole process, and the fake clientset
// keeps a lot at run time (a deep copy of every request, its Jobs, its watch buffers).
// Here the heap profile's in-use bytes are summed over the allocation stacks that pass
// through neither the fake nor the benchmark's own harness (fakeFrame), at the live
// peak, over the same sum at the baseline.
//
// It is an estimate, and a low one: the profile samples one allocation per
// ctlProfileRate bytes on average (scaled up as pprof does), is published a GC cycle or
// so behind /gc/heap/live:bytes, and keeps 32 frames a stack; and what the fake
// allocated and the controller kept is the fake's here (the spec ConfigMap, the Jobs'
// label maps and resourceVersion strings), where from an API server it would be the
// controller's decoded objects.
type ctlHeap struct {
	mu         sync.Mutex
	base, peak float64
	rate       int              // runtime.MemProfileRate before baseline
	fake       map[uintptr]bool // by PC: whether its frames are the fake's or the harness's
}

// ctlProfileRate replaces the default 512 KiB from baseline to end, so that a few tens
// of MiB are a few hundred samples or more: the sum is then within a few per cent.
const ctlProfileRate = 64 << 10

var scaleCtl = ctlHeap{fake: map[uintptr]bool{}}

// baseline starts a measurement; call it after a GC, once the fake holds its objects.
// The rate is set here, before the controller allocates: samples taken at another rate
// would be scaled wrongly (those before it, the fake's nodes, are not the controller's).
func (h *ctlHeap) baseline() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.rate, runtime.MemProfileRate = runtime.MemProfileRate, ctlProfileRate
	runtime.GC() // publishes the profile as of now
	h.base = h.inUse()
	h.peak = h.base
}

// atPeak records the controller's share when the live heap reached a new peak.
func (h *ctlHeap) atPeak() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peak = h.inUse()
}

// end ends the measurement and returns the controller's share at the peak, in MiB.
func (h *ctlHeap) end() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	runtime.MemProfileRate = h.rate
	return (h.peak - h.base) / (1 << 20)
}

// inUse sums the unsampled in-use bytes of the stacks that are not the fake's.
func (h *ctlHeap) inUse() float64 {
	var sum float64
	for _, r := range memProfile() {
		if r.InUseBytes() > 0 && !h.fakeStack(r.Stack()) {
			sum += unsampled(r)
		}
	}
	return sum
}

func memProfile() []runtime.MemProfileRecord {
	n, _ := runtime.MemProfile(nil, false)
	for {
		records := make([]runtime.MemProfileRecord, n+n/10+64)
		var ok bool
		if n, ok = runtime.MemProfile(records, false); ok {
			return records[:n]
		}
	}
}

// unsampled scales a record's in-use bytes as runtime/pprof does: an allocation of
// size s was sampled with probability 1 - exp(-s/rate).
func unsampled(r runtime.MemProfileRecord) float64 {
	bytes, objects := float64(r.InUseBytes()), float64(r.InUseObjects())
	size := bytes / objects
	return bytes / (1 - math.Exp(-size/float64(runtime.MemProfileRate)))
}

func (h *ctlHeap) fakeStack(stack []uintptr) bool {
	for _, pc := range stack {
		fake, ok := h.fake[pc]
		if !ok {
			fake = fakePC(pc)
			h.fake[pc] = fake
		}
		if fake {
			return true
		}
	}
	return false
}

// fakePC: one of the functions at pc (inlined ones included) is the fake's.
func fakePC(pc uintptr) bool {
	frames := runtime.CallersFrames([]uintptr{pc})
	for {
		f, more := frames.Next()
		if fakeFrame(f.Function) {
			return true
		}
		if !more {
			return false
		}
	}
}

// harness are the benchmark's functions that build the fake's objects, stand in for
// the Job controller, watch the status and measure: none is the controller.
var harness = []string{"scaleNode", "newScaleEnv", "storeSlimJobs", "honourJobSweeps", "filterWatches", "simulateJobs", "completeJob", "waitSucceeded", "sampleHeap"}

// fakeFrame: the fake clientset (its tracker, reactors and typed fake clients) or the
// harness.
func fakeFrame(function string) bool {
	switch {
	case strings.HasPrefix(function, "k8s.io/client-go/testing."),
		strings.HasPrefix(function, "k8s.io/client-go/kubernetes/") && strings.Contains(function, "/fake."),
		strings.HasPrefix(function, "k8s.io/client-go/gentype.") && strings.Contains(function, "Fake"):
		return true
	}
	rest, ok := strings.CutPrefix(function, "github.com/image-prewarm/image-prewarm/pkg/controller.")
	if !ok {
		return false
	}
	name, _, _ := strings.Cut(rest, ".")
	return slices.Contains(harness, name)
}
