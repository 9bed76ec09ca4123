package cluster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// KwokNodeLabel marks the fake nodes kwok manages.
	KwokNodeLabel      = "type"
	KwokNodeLabelValue = "kwok"
)

// NodeSpec describes one fake node.
type NodeSpec struct {
	Name          string
	Labels        map[string]string
	Taints        []corev1.Taint
	Unschedulable bool
	// Images are reported in status.images, as a kubelet would after pulling them.
	Images []string
	// Unmanaged nodes lack kwok's label: kwok ignores them and they never become Ready
	// (the heap benchmark's 5000 nodes cost no kwok work).
	Unmanaged bool
}

// FakeNodes returns n plain node specs named <prefix>-000, <prefix>-001, …
func FakeNodes(prefix string, n int) []NodeSpec {
	specs := make([]NodeSpec, n)
	for i := range specs {
		specs[i] = NodeSpec{Name: fmt.Sprintf("%s-%03d", prefix, i)}
	}
	return specs
}

// createWorkers: creating 1000 nodes one request at a time would dominate a benchmark.
const createWorkers = 8

// CreateNodes creates the nodes, several at a time; kwok makes managed ones Ready
// within a moment.
func (c *Cluster) CreateNodes(ctx context.Context, specs ...NodeSpec) error {
	errs := make([]error, createWorkers)
	var wg sync.WaitGroup
	for w := range createWorkers {
		wg.Go(func() {
			for i := w; i < len(specs) && errs[w] == nil; i += createWorkers {
				if _, err := c.Client.CoreV1().Nodes().Create(ctx, specs[i].node(), metav1.CreateOptions{}); err != nil {
					errs[w] = fmt.Errorf("create node %s: %w", specs[i].Name, err)
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s NodeSpec) node() *corev1.Node {
	labels := map[string]string{KwokNodeLabel: KwokNodeLabelValue, corev1.LabelHostname: s.Name, corev1.LabelOSStable: "linux"}
	if s.Unmanaged {
		delete(labels, KwokNodeLabel)
	}
	for k, v := range s.Labels {
		labels[k] = v
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: s.Name, Labels: labels, Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"}},
		Spec:       corev1.NodeSpec{Taints: s.Taints, Unschedulable: s.Unschedulable},
	}
	for _, image := range s.Images {
		n.Status.Images = append(n.Status.Images, corev1.ContainerImage{Names: []string{image}, SizeBytes: 1 << 20})
	}
	return n
}

// WaitNodesReady waits until every named node reports Ready.
func (c *Cluster) WaitNodesReady(ctx context.Context, names ...string) error {
	return c.poll(ctx, fmt.Sprintf("%d nodes Ready", len(names)), 2*time.Minute, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
			if err != nil || !IsReady(n) {
				return false, nil
			}
		}
		return true, nil
	})
}

// DeleteNode deletes a node, as when a cloud instance goes away.
func (c *Cluster) DeleteNode(ctx context.Context, name string) error {
	err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// IsReady reports the node's Ready condition.
func IsReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Names returns the names of specs.
func Names(specs []NodeSpec) []string {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	return names
}
