package controller

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/rollout"
	"github.com/image-prewarm/image-prewarm/pkg/status"
)

const ns = "image-prewarm"

func specConfigMap(name, spec string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, UID: "uid-" + "x", Labels: map[string]string{config.ConfigLabel: "true"}},
		Data:       map[string]string{config.SpecKey: spec},
	}
}

func basicAuth(name string) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Type:       corev1.SecretTypeBasicAuth,
		Data:       map[string][]byte{"username": []byte("robot"), "password": []byte("hunter2")},
	}
}

func startFake(t *testing.T, objs ...any) *fake.Clientset {
	t.Helper()
	return startFakeWith(t, fake.NewClientset(), objs...)
}

// startFakeWith creates objs through client (which may have reactors) and runs a
// controller on it.
func startFakeWith(t *testing.T, client *fake.Clientset, objs ...any) *fake.Clientset {
	t.Helper()
	for _, o := range objs {
		var err error
		switch v := o.(type) {
		case *corev1.Node:
			_, err = client.CoreV1().Nodes().Create(t.Context(), v, metav1.CreateOptions{})
		case *corev1.Secret:
			_, err = client.CoreV1().Secrets(ns).Create(t.Context(), v, metav1.CreateOptions{})
		case *corev1.ConfigMap:
			_, err = client.CoreV1().ConfigMaps(ns).Create(t.Context(), v, metav1.CreateOptions{})
		case *batchv1.Job:
			_, err = client.BatchV1().Jobs(ns).Create(t.Context(), v, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	c := New(client, Options{Namespace: ns, NoopImage: "noop:1", StatusInterval: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx, 2) }()
	t.Cleanup(func() { cancel(); <-done })
	return client
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func listJobs(t *testing.T, client *fake.Clientset) []batchv1.Job {
	list, err := client.BatchV1().Jobs(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

// completeAll completes the Jobs not finished yet (finished ones are deleted soon after).
func completeAll(t *testing.T, client *fake.Clientset) {
	finish(t, client, batchv1.JobComplete, func(*batchv1.Job) bool { return true })
}

// finish gives the unfinished Jobs that match a true condition of type cond.
func finish(t *testing.T, client *fake.Clientset, cond batchv1.JobConditionType, match func(*batchv1.Job) bool) {
	t.Helper()
	for _, j := range listJobs(t, client) {
		if jobs.Finished(&j) || !match(&j) {
			continue
		}
		j.Status.Conditions = []batchv1.JobCondition{{Type: cond, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}
		if _, err := client.BatchV1().Jobs(ns).UpdateStatus(t.Context(), &j, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
	}
}

// createdJobs counts the Job creates the controller sent.
func createdJobs(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "create" && a.GetResource().Resource == "jobs" {
			n++
		}
	}
	return n
}

func TestSecretBeforeJobsWindowAndReap(t *testing.T) {
	spec := "registries: [{server: harbor.x, credentialsSecret: robot}]\nimages: [harbor.x/a:1]\nrollout: {maxConcurrentNodes: 2}\n"
	client := startFake(t, node("n1", ready), node("n2", ready), node("n3", ready), basicAuth("robot"), specConfigMap("ml", spec))
	eventually(t, "2 Jobs (the window)", func() bool { return len(listJobs(t, client)) == 2 })
	time.Sleep(50 * time.Millisecond)
	if n := len(listJobs(t, client)); n != 2 {
		t.Fatalf("%d Jobs with a window of 2", n)
	}
	firstSecret, firstJob := -1, -1
	for i, a := range client.Actions() {
		if a.GetVerb() != "create" {
			continue
		}
		switch a.GetResource().Resource {
		case "secrets":
			if firstSecret < 0 && a.(k8stesting.CreateAction).GetObject().(*corev1.Secret).Type == corev1.SecretTypeDockerConfigJson {
				firstSecret = i
			}
		case "jobs":
			if firstJob < 0 {
				firstJob = i
			}
		}
	}
	if firstSecret < 0 || firstSecret > firstJob {
		t.Fatalf("pull Secret created at action %d, first Job at %d: the Secret must come first", firstSecret, firstJob)
	}
	completeAll(t, client)
	eventually(t, "the third Job", func() bool { return createdJobs(client) == 3 })
	eventually(t, "the third Job stored", func() bool {
		return slices.ContainsFunc(listJobs(t, client), func(j batchv1.Job) bool { return !jobs.Finished(&j) })
	})
	completeAll(t, client)
	eventually(t, "pull Secret reaped", func() bool {
		list, _ := client.CoreV1().Secrets(ns).List(t.Context(), metav1.ListOptions{})
		return len(list.Items) == 1 // only the credentials Secret is left
	})
}

func TestInvalidSpecReportedWithPaths(t *testing.T) {
	client := startFake(t, node("n1", ready), specConfigMap("bad", "images: [\"Not A Ref\"]\nrollout: {maxConcurrentNodes: 0}\n"))
	eventually(t, "Invalid status", func() bool {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("bad"), metav1.GetOptions{})
		return err == nil && cm.Data[status.KeyPhase] == status.PhaseInvalid
	})
	cm, _ := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("bad"), metav1.GetOptions{})
	for _, path := range []string{"images[0]", "rollout.maxConcurrentNodes"} {
		if !strings.Contains(cm.Data[status.KeyMessage], path) {
			t.Errorf("status message %q lacks %s", cm.Data[status.KeyMessage], path)
		}
	}
	if jobs := listJobs(t, client); len(jobs) != 0 {
		t.Fatalf("an invalid spec created %d Jobs", len(jobs))
	}
}

func TestMissingCredentialsFailsRunWithoutJobs(t *testing.T) {
	spec := "registries: [{server: harbor.x, credentialsSecret: absent}]\nimages: [harbor.x/a:1]\n"
	client := startFake(t, node("n1", ready), specConfigMap("ml", spec))
	eventually(t, "Failed status", func() bool {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("ml"), metav1.GetOptions{})
		return err == nil && cm.Data[status.KeyPhase] == status.PhaseFailed
	})
	cm, _ := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("ml"), metav1.GetOptions{})
	if !strings.Contains(cm.Data[status.KeyMessage], `credentialsSecret "absent"`) {
		t.Errorf("message %q does not name the Secret", cm.Data[status.KeyMessage])
	}
	if jobs := listJobs(t, client); len(jobs) != 0 {
		t.Fatalf("%d Jobs created without a pull Secret", len(jobs))
	}
}

func TestRunIDDependsOnNameAndContent(t *testing.T) {
	a, _ := config.Parse([]byte("images: [nginx:1]"))
	b, _ := config.Parse([]byte("images: [nginx:2]"))
	if runIDFor("x", a) == runIDFor("y", a) || runIDFor("x", a) == runIDFor("x", b) || runIDFor("x", a) != runIDFor("x", a) {
		t.Fatal("run IDs must differ across names and contents and be stable")
	}
}

func TestTaskWaitsForItsSecretThenRuns(t *testing.T) {
	cm := specConfigMap("task-abc", "registries: [{server: harbor.x}]\nimages: [harbor.x/a:1]\nonce: true\npullSecret: image-pull-secret-abc\n")
	cm.CreationTimestamp = metav1.Now() // within the grace period for the task's Secret
	client := startFake(t, node("n1", ready), cm)
	time.Sleep(300 * time.Millisecond)
	if st, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("task-abc"), metav1.GetOptions{}); err == nil && st.Data[status.KeyPhase] == status.PhaseFailed {
		t.Fatalf("the run failed while its Secret was on its way: %s", st.Data[status.KeyMessage])
	}
	if n := len(listJobs(t, client)); n != 0 {
		t.Fatalf("%d Jobs started before the task's Secret existed", n)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "image-pull-secret-abc", Namespace: ns}, Type: corev1.SecretTypeDockerConfigJson}
	if _, err := client.CoreV1().Secrets(ns).Create(t.Context(), secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the task's Job", func() bool { return len(listJobs(t, client)) == 1 })
	if ps := listJobs(t, client)[0].Spec.Template.Spec.ImagePullSecrets; len(ps) != 1 || ps[0].Name != "image-pull-secret-abc" {
		t.Fatalf("imagePullSecrets %v", ps)
	}
}

// A node that left after its Job finished, before the controller saw the finish (here:
// while no controller ran), keeps the Job's outcome rather than being counted gone.
func TestNodeGoneAfterItsJobFinishedKeepsTheOutcome(t *testing.T) {
	const text = "images: [nginx:1.27]\n"
	spec, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	runID := runIDFor("ml", spec)
	done := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: jobs.JobName(runID, "left"), Namespace: ns,
			Labels:      map[string]string{jobs.LabelApp: jobs.AppName, jobs.LabelRun: runID, jobs.LabelSpec: jobs.SpecLabelValue("ml")},
			Annotations: map[string]string{jobs.AnnotationNode: "left"}},
		Status: batchv1.JobStatus{Conditions: []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}},
	}
	client := startFake(t, node("n1", ready), done, specConfigMap("ml", text))
	eventually(t, "the node that left reported", func() bool {
		cm, err := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("ml"), metav1.GetOptions{})
		if err != nil {
			return false
		}
		st, err := status.FromConfigMap("ml", cm)
		return err == nil && st.Results["left"].Phase != ""
	})
	cm, _ := client.CoreV1().ConfigMaps(ns).Get(t.Context(), status.Name("ml"), metav1.GetOptions{})
	st, _ := status.FromConfigMap("ml", cm)
	if got := st.Results["left"].Phase; got != string(rollout.Succeeded) {
		t.Fatalf("node that left after finishing: %q, want Succeeded", got)
	}
}

// A Job this controller created counts as running until the informer shows it: a refill
// in that gap must not start one node too many.
func TestCreatedJobHoldsItsSlotUntilSeen(t *testing.T) {
	spec, err := config.Parse([]byte("images: [nginx:1.27]\nrollout: {maxConcurrentNodes: 1}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := New(fake.NewClientset(), Options{Namespace: ns, NoopImage: "noop:1"})
	for _, name := range []string{"n1", "n2"} {
		trimmed, _ := trimNode(node(name, ready))
		if err := c.nodeInformer.GetStore().Add(trimmed); err != nil {
			t.Fatal(err)
		}
	}
	rs := &runState{runID: "r1", spec: spec, status: &status.Status{Results: map[string]status.Result{}},
		awaiting: map[string]awaitedJob{"n1": {since: time.Now()}, "n2": {since: time.Now().Add(-2 * awaitTimeout)}}}
	cm := specConfigMap("ml", "")
	nodes, _ := c.observe(t.Context(), cm, rs, newSelection(&config.Spec{Images: spec.Images}))
	want := []rollout.Node{{Name: "n1", Phase: rollout.Running, JobActive: true}, {Name: "n2", Phase: rollout.Pending}}
	if !slices.Equal(nodes, want) {
		t.Fatalf("nodes %+v, want %+v (n1 just created, n2's create long ago and never seen)", nodes, want)
	}
	if d := rollout.Decide(rollout.Input{Nodes: nodes, Window: 1}); len(d.Start) != 0 {
		t.Fatalf("started %v with the window's one slot held by n1", d.Start)
	}
}
