package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/image-prewarm/image-prewarm/pkg/status"
	"github.com/image-prewarm/image-prewarm/test/cluster"
)

// TestRBACControllerRunsAsChartServiceAccount applies the chart's RBAC for real and runs
// the controller e2e rollout (20 nodes, private registry, window 5) as the chart's
// ServiceAccount: the chart grants enough, and no more than DESIGN.md allows. The nodes
// join with a startup taint, which the ServiceAccount removes (patch), and it may
// neither create nor delete a node.
func TestRBACControllerRunsAsChartServiceAccount(t *testing.T) {
	e := newEnv(t)
	// fullnameOverride: the cluster-scoped names are unique to this test.
	objs := renderChart(t, "rbac", e.ns, "--set", "fullnameOverride="+e.ns)
	applyForReal(t, ofKinds(objs, "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
		"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"))
	sa := oneOfKind(t, objs, "ServiceAccount").GetName()
	client := impersonate(t, e.ns, sa)
	lease := leaseNameOf(t, deploymentOf(t, objs).Spec.Template.Spec.Containers[0].Args)
	checkAccess(t, client, e.ns, lease)
	holdLease(t, client, e.ns, lease)

	start := time.Now()
	nodes := e.nodes("n", 20, func(s *cluster.NodeSpec) {
		s.Taints = append(s.Taints, corev1.Taint{Key: startupTaint, Effect: corev1.TaintEffectNoSchedule})
	})
	checkNodeWrites(t, client, nodes[0])
	checkNodePolicy(t, client, nodes[0])
	e.credentials("harbor-robot", "robot$prewarm", sentinel)
	jw := e.watchJobs()
	e.startControllerWith(client)
	e.applySpec("ml", e.privateSpec(5, threeImages...)+"  startupTaint: "+startupTaint+"\n  nodeLabel: true\n")
	<-jw.firstSeen
	e.checkSecretWhileRunning()
	st := e.waitStatus("ml", "run succeeded as the chart's ServiceAccount", phaseIs(status.PhaseSucceeded))
	if st.Counts["Succeeded"] != len(nodes) || st.Total != len(nodes) {
		t.Fatalf("counts %v total %d, want %d succeeded", st.Counts, st.Total, len(nodes))
	}
	if maxActive, _ := jw.snapshot(); maxActive > 5 {
		t.Errorf("%d Jobs active at once, window 5", maxActive)
	}
	e.eventually("Secret reaped", 30*time.Second, func(context.Context) (bool, error) { return len(e.secrets()) == 0, nil })
	e.eventually("taints removed and labels set as the ServiceAccount", 30*time.Second, func(ctx context.Context) (bool, error) {
		return len(e.nodesGated(ctx, nodes, "ml")) == 0, nil
	})
	e.stopController()
	e.assertNoCredentialLeak()
	e.assertRanWithoutDenials()
	e.assertJobPodsAdmitted(len(nodes))
	t.Logf("rollout of %d nodes as %s: %v", len(nodes), sa, time.Since(start).Round(time.Millisecond))
}

// checkNodeWrites: as the ServiceAccount, deleting or creating a node is forbidden by
// the API server itself, not only by a review.
func checkNodeWrites(t *testing.T, client kubernetes.Interface, node string) {
	t.Helper()
	if err := client.CoreV1().Nodes().Delete(t.Context(), node, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("delete node %s as the ServiceAccount: %v, want Forbidden", node, err)
	}
	fresh := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: node + "-forged"}}
	if _, err := client.CoreV1().Nodes().Create(t.Context(), fresh, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Errorf("create node as the ServiceAccount: %v, want Forbidden", err)
	}
}

// checkNodePolicy: the chart's ValidatingAdmissionPolicy lets the ServiceAccount change
// only its own labels and remove taints: a foreign label, a new taint and a cordon are
// denied (dry-run; the policy takes a moment to be in force after its creation).
func checkNodePolicy(t *testing.T, client kubernetes.Interface, node string) {
	t.Helper()
	forged := map[string]string{
		"foreign label": `[{"op":"add","path":"/metadata/labels/team","value":"evil"}]`,
		"new taint":     `[{"op":"add","path":"/spec/taints/-","value":{"key":"evict","effect":"NoExecute"}}]`,
		"cordon":        `[{"op":"add","path":"/spec/unschedulable","value":true}]`,
	}
	allowed := `[{"op":"add","path":"/metadata/labels/prewarm.image-prewarm.io~1probe","value":"ready"}]`
	dryRun := metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}
	for name, patch := range forged {
		var err error
		_ = wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
			_, err = client.CoreV1().Nodes().Patch(ctx, node, types.JSONPatchType, []byte(patch), dryRun)
			return apierrors.IsForbidden(err) || apierrors.IsInvalid(err), nil
		})
		if !apierrors.IsForbidden(err) && !apierrors.IsInvalid(err) {
			t.Errorf("%s as the ServiceAccount: %v, want denied by the node policy", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	if _, err := client.CoreV1().Nodes().Patch(t.Context(), node, types.JSONPatchType, []byte(allowed), dryRun); err != nil {
		t.Errorf("its own label as the ServiceAccount: %v, want allowed", err)
	}
}

// impersonate returns a client acting as the ServiceAccount, with the groups a token of
// that ServiceAccount carries, and logs who the API server sees.
func impersonate(t *testing.T, ns, sa string) kubernetes.Interface {
	t.Helper()
	client, err := kubernetes.NewForConfig(saConfig(ns, sa))
	if err != nil {
		t.Fatal(err)
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(t.Context(), &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("API server sees user %s, groups %v", review.Status.UserInfo.Username, review.Status.UserInfo.Groups)
	return client
}

func leaseNameOf(t *testing.T, args []string) string {
	t.Helper()
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--lease-name="); ok {
			return name
		}
	}
	t.Fatalf("no --lease-name in %v", args)
	return ""
}

// checkAccess asks the API server (SelfSubjectAccessReview as the ServiceAccount) what
// the identity may do: what the controller, webhook and task API need, and nothing of
// what DESIGN.md rules out.
func checkAccess(t *testing.T, client kubernetes.Interface, ns, lease string) {
	t.Helper()
	type attrs = authzv1.ResourceAttributes
	other := "default"
	tests := map[string]struct {
		attrs attrs
		want  bool
	}{
		"nodes list":                   {attrs{Resource: "nodes", Verb: "list"}, true},
		"nodes watch":                  {attrs{Resource: "nodes", Verb: "watch"}, true},
		"nodes get":                    {attrs{Resource: "nodes", Verb: "get"}, true},
		"nodes patch":                  {attrs{Resource: "nodes", Verb: "patch"}, true},
		"nodes update":                 {attrs{Resource: "nodes", Verb: "update"}, false},
		"nodes create":                 {attrs{Resource: "nodes", Verb: "create"}, false},
		"nodes delete":                 {attrs{Resource: "nodes", Verb: "delete"}, false},
		"nodes status patch":           {attrs{Resource: "nodes", Subresource: "status", Verb: "patch"}, false},
		"tokenreviews create":          {attrs{Group: "authentication.k8s.io", Resource: "tokenreviews", Verb: "create"}, true},
		"subjectaccessreviews create":  {attrs{Group: "authorization.k8s.io", Resource: "subjectaccessreviews", Verb: "create"}, true},
		"jobs create":                  {attrs{Namespace: ns, Group: "batch", Resource: "jobs", Verb: "create"}, true},
		"jobs delete":                  {attrs{Namespace: ns, Group: "batch", Resource: "jobs", Verb: "delete"}, true},
		"jobs deletecollection":        {attrs{Namespace: ns, Group: "batch", Resource: "jobs", Verb: "deletecollection"}, true},
		"jobs watch":                   {attrs{Namespace: ns, Group: "batch", Resource: "jobs", Verb: "watch"}, true},
		"jobs update":                  {attrs{Namespace: ns, Group: "batch", Resource: "jobs", Verb: "update"}, false},
		"pods list":                    {attrs{Namespace: ns, Resource: "pods", Verb: "list"}, true},
		"pods create":                  {attrs{Namespace: ns, Resource: "pods", Verb: "create"}, false},
		"pods exec":                    {attrs{Namespace: ns, Resource: "pods", Subresource: "exec", Verb: "create"}, false},
		"secrets get":                  {attrs{Namespace: ns, Resource: "secrets", Verb: "get", Name: "harbor-robot"}, true},
		"secrets create":               {attrs{Namespace: ns, Resource: "secrets", Verb: "create"}, true},
		"secrets delete":               {attrs{Namespace: ns, Resource: "secrets", Verb: "delete", Name: "image-pull-secret-x"}, true},
		"secrets list":                 {attrs{Namespace: ns, Resource: "secrets", Verb: "list"}, false},
		"secrets watch":                {attrs{Namespace: ns, Resource: "secrets", Verb: "watch"}, false},
		"secrets update":               {attrs{Namespace: ns, Resource: "secrets", Verb: "update"}, false},
		"secrets list, all namespaces": {attrs{Resource: "secrets", Verb: "list"}, false},
		"secrets get elsewhere":        {attrs{Namespace: other, Resource: "secrets", Verb: "get", Name: "x"}, false},
		"secrets create elsewhere":     {attrs{Namespace: other, Resource: "secrets", Verb: "create"}, false},
		"jobs create elsewhere":        {attrs{Namespace: other, Group: "batch", Resource: "jobs", Verb: "create"}, false},
		"configmaps get elsewhere":     {attrs{Namespace: other, Resource: "configmaps", Verb: "get"}, false},
		"configmaps watch":             {attrs{Namespace: ns, Resource: "configmaps", Verb: "watch"}, true},
		"configmaps update":            {attrs{Namespace: ns, Resource: "configmaps", Verb: "update"}, true},
		"configmaps delete":            {attrs{Namespace: ns, Resource: "configmaps", Verb: "delete"}, true},
		"events create":                {attrs{Namespace: ns, Resource: "events", Verb: "create"}, true},
		"events patch":                 {attrs{Namespace: ns, Resource: "events", Verb: "patch"}, true},
		"events list (Pulled)":         {attrs{Namespace: ns, Resource: "events", Verb: "list"}, true},
		"events watch (Pulled)":        {attrs{Namespace: ns, Resource: "events", Verb: "watch"}, true},
		"events list elsewhere":        {attrs{Namespace: other, Resource: "events", Verb: "list"}, false},
		"lease create":                 {attrs{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "create"}, true},
		"lease get":                    {attrs{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "get", Name: lease}, true},
		"lease update":                 {attrs{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: lease}, true},
		"other lease update":           {attrs{Namespace: ns, Group: "coordination.k8s.io", Resource: "leases", Verb: "update", Name: "kube-scheduler"}, false},
		"tasks create":                 {attrs{Namespace: ns, Group: "image-prewarm.io", Resource: "tasks", Verb: "create"}, false},
		"roles escalate":               {attrs{Namespace: ns, Group: "rbac.authorization.k8s.io", Resource: "roles", Verb: "create"}, false},
	}
	for name, tc := range tests {
		review := &authzv1.SelfSubjectAccessReview{Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &tc.attrs}}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(t.Context(), review, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got.Status.Allowed != tc.want {
			t.Errorf("%s (%+v): allowed=%v, want %v", name, tc.attrs, got.Status.Allowed, tc.want)
		}
	}
}

// holdLease runs leader election as the ServiceAccount on the chart's Lease: acquire
// (create), renew (get, update) and release on cancel (update).
func holdLease(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: name, Namespace: ns},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: "e2e-replica"},
	}
	renewals := 0
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 200 * time.Millisecond,
		ReleaseOnCancel: true, Name: name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				_ = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, false, func(ctx context.Context) (bool, error) {
					l, err := kube.Client.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{})
					if err == nil && l.Spec.RenewTime != nil && l.Spec.AcquireTime != nil && l.Spec.RenewTime.After(l.Spec.AcquireTime.Time) {
						renewals++
					}
					return renewals >= 2, nil
				})
				cancel()
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	elector.Run(ctx)
	l, err := kube.Client.CoordinationV1().Leases(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Lease %s was not created as the ServiceAccount: %v", name, err)
	}
	if renewals < 2 || (l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "") {
		t.Fatalf("Lease %s as the ServiceAccount: renewals seen %d, holder after release %v", name, renewals, l.Spec.HolderIdentity)
	}
}

// startControllerWith runs the controller with client, as startController does with the
// admin client; its log goes to e.logs and it stops when the test ends.
// assertRanWithoutDenials: the controller logged no authorization failure and its Events
// (create/patch) reached the API server.
func (e *env) assertRanWithoutDenials() {
	e.t.Helper()
	if log := strings.ToLower(e.logs.String()); strings.Contains(log, "forbidden") {
		e.t.Errorf("the controller was denied something:\n%s", e.logs.Tail(3000))
	}
	reasons := map[string]int{}
	for _, ev := range e.events() {
		if ev.Source.Component == "image-prewarm" {
			reasons[ev.Reason]++
		}
	}
	if reasons["PullSecretCreated"] == 0 || len(reasons) < 2 {
		e.t.Errorf("the controller's Events did not arrive: %v", reasons)
	}
}

// assertJobPodsAdmitted: every prewarm Job's pod passed Pod Security "restricted"
// admission in this namespace (the Job controller reports rejected pods as FailedCreate).
func (e *env) assertJobPodsAdmitted(nodes int) {
	e.t.Helper()
	assertRestrictedEnforced(e.t, e.ns)
	assertNoFailedCreate(e.t, e)
	succeeded := 0
	for _, p := range e.createdPods.pods() {
		if p.Status.Phase == corev1.PodSucceeded {
			succeeded++
		}
	}
	if succeeded < nodes {
		e.t.Errorf("%d prewarm pods succeeded, want one per node (%d)", succeeded, nodes)
	}
}
