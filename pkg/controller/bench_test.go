package controller

import (
	"fmt"
	"runtime"
	runtimemetrics "runtime/metrics"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
)

// BenchmarkNodeCache reports the heap the node informer's store holds for 5000 nodes
// with 50 images each (two names per image, as kubelet reports tag and digest): the
// live heap a GC finds (/gc/heap/live:bytes) with the store over that without it.
// HeapInuse would count the spans the transform's garbage fragmented too, which the
// runtime reuses, and so depend on when the GC ran.
func BenchmarkNodeCache(b *testing.B) {
	nodes := make([]*corev1.Node, 5000)
	for i := range nodes {
		n := node(fmt.Sprintf("node-%04d", i), ready, labeled("pool", "gpu"))
		for j := range 50 {
			n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{
				fmt.Sprintf("registry.example.com/team-%02d/image-%02d:1.%d.%d", j%7, j, i%10, j),
				fmt.Sprintf("registry.example.com/team-%02d/image-%02d@sha256:%064x", j%7, j, i*50+j),
			}})
		}
		nodes[i] = n
	}
	var heap float64
	for b.Loop() {
		before := liveHeap()
		store := cache.NewStore(cache.MetaNamespaceKeyFunc)
		for _, n := range nodes {
			obj, _ := trimNode(n)
			_ = store.Add(obj)
		}
		heap = float64(int64(liveHeap()-before)) / (1 << 20)
		runtime.KeepAlive(store)
	}
	b.ReportMetric(heap, "MiB-live")
}

// liveHeap collects garbage and returns the bytes it found live.
func liveHeap() uint64 {
	runtime.GC()
	s := []runtimemetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	runtimemetrics.Read(s)
	return s[0].Value.Uint64()
}
