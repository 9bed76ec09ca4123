package controller

import (
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
)

type nodeOpt func(*corev1.Node)

func node(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func ready(n *corev1.Node) {
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
}
func cordoned(n *corev1.Node) { n.Spec.Unschedulable = true }
func labeled(k, v string) nodeOpt {
	return func(n *corev1.Node) { n.Labels[k] = v }
}
func tainted(effect corev1.TaintEffect) nodeOpt {
	return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: "gpu", Effect: effect}) }
}
func images(names ...string) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Images = []corev1.ContainerImage{{Names: names}}
	}
}

func TestEligible(t *testing.T) {
	tolerateAll := []corev1.Toleration{{Operator: corev1.TolerationOpExists}}
	tests := map[string]struct {
		node        *corev1.Node
		selector    map[string]string
		tolerations []corev1.Toleration
		want        bool
	}{
		"ready":                      {node: node("a", ready), want: true},
		"linux arm64":                {node: node("a", ready, labeled(corev1.LabelOSStable, "linux"), labeled(corev1.LabelArchStable, "arm64")), want: true},
		"windows":                    {node: node("a", ready, labeled(corev1.LabelOSStable, "windows")), want: false},
		"s390x":                      {node: node("a", ready, labeled(corev1.LabelArchStable, "s390x")), want: false},
		"not ready":                  {node: node("a"), want: false},
		"cordoned":                   {node: node("a", ready, cordoned), want: false},
		"selector matches":           {node: node("a", ready, labeled("type", "gpu")), selector: map[string]string{"type": "gpu"}, want: true},
		"selector misses":            {node: node("a", ready, labeled("type", "cpu")), selector: map[string]string{"type": "gpu"}, want: false},
		"taint tolerated by default": {node: node("a", ready, tainted(corev1.TaintEffectNoSchedule)), tolerations: tolerateAll, want: true},
		"taint not tolerated":        {node: node("a", ready, tainted(corev1.TaintEffectNoExecute)), tolerations: []corev1.Toleration{}, want: false},
		"prefer-no-schedule ignored": {node: node("a", ready, tainted(corev1.TaintEffectPreferNoSchedule)), tolerations: []corev1.Toleration{}, want: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sel := newSelection(&config.Spec{NodeSelector: tc.selector, Tolerations: tc.tolerations, Images: []string{"nginx:1.27"}})
			if got := sel.eligible(newNodeRecord(tc.node)); got != tc.want {
				t.Fatalf("eligible = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestHasAllImagesThroughTransform(t *testing.T) {
	tests := map[string]struct {
		have []string
		want bool
	}{
		"normalized names": {have: []string{"docker.io/library/nginx:1.27", "harbor.x/ml/a:1"}, want: true},
		"short names":      {have: []string{"nginx:1.27", "harbor.x/ml/a:1"}, want: true},
		"one missing":      {have: []string{"nginx:1.27"}, want: false},
		"other tag":        {have: []string{"nginx:1.26", "harbor.x/ml/a:1"}, want: false},
		"no images at all": {have: nil, want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			obj, _ := trimNode(node("a", ready, images(tc.have...)))
			sel := newSelection(&config.Spec{Images: []string{"nginx:1.27", "harbor.x/ml/a:1"}})
			if got := sel.hasAllImages(obj.(*nodeRecord)); got != tc.want {
				t.Fatalf("hasAllImages = %v, want %v", got, tc.want)
			}
		})
	}
}

// client-go may pass a node through the transform twice: the record comes back as it
// was, its images intact.
func TestTrimNodeTwiceKeepsImages(t *testing.T) {
	once, _ := trimNode(node("a", ready, images("nginx:1.27", "harbor.x/ml/a:1", "other:1")))
	twice, _ := trimNode(once)
	rec := twice.(*nodeRecord)
	sel := newSelection(&config.Spec{Images: []string{"nginx:1.27", "harbor.x/ml/a:1"}})
	if rec != once.(*nodeRecord) || !sel.hasAllImages(rec) || imageCount(rec) != 3 {
		t.Fatalf("after two trims: %d images, hasAllImages %v", imageCount(rec), sel.hasAllImages(rec))
	}
}

func TestTrimNodeKeepsOnlyWhatIsRead(t *testing.T) {
	n := node("a", ready, labeled("k", "v"), labeled("a", "b"), tainted(corev1.TaintEffectNoSchedule), images("nginx:1.27"))
	n.UID, n.ResourceVersion = "uid-a", "7"
	n.Annotations = map[string]string{"big": "x"}
	n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeMemoryPressure})
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	obj, _ := trimNode(n)
	got := obj.(*nodeRecord)
	want := &nodeRecord{
		ObjectMeta: metav1.ObjectMeta{Name: "a", UID: "uid-a", ResourceVersion: "7"},
		NodeLabels: labelList{{"a", "b"}, {"k", "v"}}, Taints: n.Spec.Taints,
		Fingerprints: fingerprints(n.Status.Images), Ready: true,
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("record %+v, want %+v", got, want)
	}
	if cp := got.DeepCopyObject(); !equality.Semantic.DeepEqual(cp, got) {
		t.Fatalf("deep copy %+v differs from %+v", cp, got)
	}
	if key, err := cache.MetaNamespaceKeyFunc(got); key != "a" || err != nil {
		t.Fatalf("store key %q, %v", key, err)
	}
}

// The record's labels answer a selector and tell the gate's labels apart.
func TestLabelList(t *testing.T) {
	l := newLabelList(map[string]string{"pool": "gpu", "zone": "a", jobs.NodeLabelKey("s"): "ready"})
	sel, _ := labels.Parse("pool=gpu,zone in (a,b),!missing")
	if !sel.Matches(l) || l.Has("missing") || l.Get("zone") != "a" {
		t.Fatalf("labels %v: selector or lookups wrong", l)
	}
	same := newLabelList(map[string]string{"pool": "gpu", "zone": "a"})
	if !l.sameBesideGate(same) || !same.sameBesideGate(l) || slices.Equal(l, same) {
		t.Fatal("the gate's own label must count for the gate only")
	}
	other := newLabelList(map[string]string{"pool": "gpu", "zone": "b"})
	if l.sameBesideGate(other) || same.sameBesideGate(newLabelList(map[string]string{"pool": "gpu"})) {
		t.Fatal("a changed or missing label must count")
	}
}

func TestObserveJob(t *testing.T) {
	waiting := func(reason, msg string) *corev1.Pod {
		return &corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: []corev1.ContainerStatus{
			{Name: "pull-0", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}},
		}}}
	}
	cond := func(t batchv1.JobConditionType, reason string) *batchv1.Job {
		return &batchv1.Job{Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: t, Status: corev1.ConditionTrue, Reason: reason}}}}
	}
	tests := map[string]struct {
		job      *batchv1.Job
		pods     []*corev1.Pod
		phase    rollout.Phase
		failFast bool
	}{
		"complete":             {job: cond(batchv1.JobComplete, ""), phase: rollout.Succeeded},
		"deadline":             {job: cond(batchv1.JobFailed, "DeadlineExceeded"), phase: rollout.Failed},
		"running":              {job: &batchv1.Job{}, phase: rollout.Running},
		"unauthorized":         {job: &batchv1.Job{}, pods: []*corev1.Pod{waiting("ErrImagePull", "401 Unauthorized")}, phase: rollout.Failed, failFast: true},
		"not found":            {job: &batchv1.Job{}, pods: []*corev1.Pod{waiting("ImagePullBackOff", "manifest unknown")}, phase: rollout.Failed, failFast: true},
		"transient timeout":    {job: &batchv1.Job{}, pods: []*corev1.Pod{waiting("ErrImagePull", "i/o timeout")}, phase: rollout.Running},
		"initializing is fine": {job: &batchv1.Job{}, pods: []*corev1.Pod{waiting("PodInitializing", "")}, phase: rollout.Running},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := observeJob(tc.job, tc.pods)
			if got.phase != tc.phase || got.failFast != tc.failFast {
				t.Fatalf("observeJob = %+v, want phase %s failFast %v", got, tc.phase, tc.failFast)
			}
		})
	}
}

func TestPullDurations(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Unix(1000+int64(s), 0)) }
	term := func(name string, start, end int) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: name, State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{StartedAt: at(start), FinishedAt: at(end)}}}
	}
	tests := map[string]struct {
		statuses []corev1.ContainerStatus
		want     map[int]time.Duration
	}{
		// A real kubelet: the pull is the gap before the container starts; noop runs instantly.
		"kubelet": {statuses: []corev1.ContainerStatus{term("install-noop", 0, 1), term("pull-0", 31, 31), term("pull-1", 41, 41)}, want: map[int]time.Duration{0: 30 * time.Second, 1: 10 * time.Second}},
		// kwok: every container shows the simulated pull as its own run time.
		"simulated":  {statuses: []corev1.ContainerStatus{term("install-noop", 0, 5), term("pull-0", 0, 5)}, want: map[int]time.Duration{0: 5 * time.Second}},
		"unfinished": {statuses: []corev1.ContainerStatus{term("install-noop", 0, 1), {Name: "pull-0"}}, want: map[int]time.Duration{}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := pullDurations(&corev1.Pod{Status: corev1.PodStatus{InitContainerStatuses: tc.statuses}})
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i, d := range tc.want {
				if got[i] != d {
					t.Fatalf("image %d: got %v, want %v", i, got[i], d)
				}
			}
		})
	}
}

func TestTruncateKeepsValidUTF8(t *testing.T) {
	for name, tc := range map[string]struct {
		in   string
		n    int
		want string
	}{
		"short":      {in: "ok", n: 5, want: "ok"},
		"ascii":      {in: "abcdef", n: 3, want: "abc…"},
		"multi-byte": {in: "ÄÖÜäöü", n: 2, want: "ÄÖ…"},
	} {
		if got := truncate(tc.in, tc.n); got != tc.want || !utf8.ValidString(got) {
			t.Errorf("%s: truncate = %q, want %q", name, got, tc.want)
		}
	}
}

func TestLastPullError(t *testing.T) {
	pod := func(states ...corev1.ContainerState) *corev1.Pod {
		p := &corev1.Pod{}
		for _, s := range states {
			p.Status.InitContainerStatuses = append(p.Status.InitContainerStatuses, corev1.ContainerStatus{State: s})
		}
		return p
	}
	waiting := func(reason, msg string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: msg}}
	}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{}}
	for name, tc := range map[string]struct {
		pods []*corev1.Pod
		want string
	}{
		"none":         {pods: nil, want: ""},
		"initializing": {pods: []*corev1.Pod{pod(done, waiting("PodInitializing", ""))}, want: ""},
		"backing off":  {pods: []*corev1.Pod{pod(done, waiting("ImagePullBackOff", "dial tcp: connection refused"))}, want: "ImagePullBackOff: dial tcp: connection refused"},
		"second pod":   {pods: []*corev1.Pod{pod(done), pod(waiting("ErrImagePull", "i/o timeout"))}, want: "ErrImagePull: i/o timeout"},
	} {
		if got := lastPullError(tc.pods); got != tc.want {
			t.Errorf("%s: lastPullError = %q, want %q", name, got, tc.want)
		}
	}
}
