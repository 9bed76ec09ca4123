package jobs

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

var testRef = RunRef{Namespace: "image-prewarm", Spec: "gpu-images", RunID: testRun}

func params(mods ...func(*JobParams)) JobParams {
	p := JobParams{
		Ref:  testRef,
		Node: "node-1",
		Images: []ImagePull{
			{Image: "nginx:1.27", PullPolicy: corev1.PullIfNotPresent},
			{Image: "harbor.example.com/ml/pytorch:2.5.1", PullPolicy: corev1.PullAlways},
		},
		Tolerations:      []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
		NoopImage:        "ghcr.io/image-prewarm/image-prewarm:v1",
		NoopPullPolicy:   corev1.PullIfNotPresent,
		PullTimeout:      15 * time.Minute,
		Retries:          1,
		TTLAfterFinished: 2 * time.Hour,
	}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func withPullSecret(p *JobParams) { p.PullSecret = SecretName(p.Ref.RunID) }

func TestBuildJob(t *testing.T) {
	tests := map[string]struct {
		params        JobParams
		wantSecret    string // imagePullSecrets and pod label; empty: neither
		wantDeadline  *int64
		wantInitNames []string
	}{
		"without credentials": {
			params:        params(),
			wantDeadline:  new(int64(900)),
			wantInitNames: []string{ContainerInstall, "pull-0", "pull-1"},
		},
		"with credentials": {
			params:        params(withPullSecret),
			wantSecret:    "image-pull-secret-" + testRun,
			wantDeadline:  new(int64(900)),
			wantInitNames: []string{ContainerInstall, "pull-0", "pull-1"},
		},
		"sub-second timeout rounds up": {
			params:        params(func(p *JobParams) { p.PullTimeout = 10 * time.Millisecond }),
			wantDeadline:  new(int64(1)),
			wantInitNames: []string{ContainerInstall, "pull-0", "pull-1"},
		},
		"no timeout, no images": {
			params:        params(func(p *JobParams) { p.PullTimeout = 0; p.Images = nil }),
			wantInitNames: []string{ContainerInstall},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			job := BuildJob(tc.params)
			checkJobMeta(t, job, tc.params)
			checkJobSpec(t, job, tc.params.Retries, tc.wantDeadline)
			checkPodMeta(t, job.Spec.Template, tc.params, tc.wantSecret)
			checkPodSpec(t, job.Spec.Template.Spec, tc.params, tc.wantSecret)
			checkContainers(t, job.Spec.Template.Spec, tc.params, tc.wantInitNames)
		})
	}
}

func TestTTLAfterFinished(t *testing.T) {
	tests := map[string]struct {
		ttl  time.Duration
		want *int32
	}{
		"hours":           {ttl: 2 * time.Hour, want: new(int32(7200))},
		"rounds up":       {ttl: 1500 * time.Millisecond, want: new(int32(2))},
		"none":            {ttl: 0, want: nil},
		"negative":        {ttl: -time.Second, want: nil},
		"capped at int32": {ttl: 100 * 365 * 24 * time.Hour, want: new(int32(1<<31 - 1))},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			job := BuildJob(params(func(p *JobParams) { p.TTLAfterFinished = tc.ttl }))
			if got := job.Spec.TTLSecondsAfterFinished; !equalPtr(got, tc.want) {
				t.Errorf("ttlSecondsAfterFinished = %v, want %v", deref(got), deref(tc.want))
			}
		})
	}
}

func deref(p *int32) any {
	if p == nil {
		return nil
	}
	return *p
}

func checkJobMeta(t *testing.T, job *batchv1.Job, p JobParams) {
	t.Helper()
	if want := JobName(p.Ref.RunID, p.Node); job.Name != want || job.Namespace != p.Ref.Namespace {
		t.Errorf("job = %s/%s, want %s/%s", job.Namespace, job.Name, p.Ref.Namespace, want)
	}
	checkLabels(t, "job", job.Labels, Labels(p.Ref))
	if got := NodeOf(job); got != p.Node {
		t.Errorf("NodeOf(job) = %q, want %q", got, p.Node)
	}
}

func checkJobSpec(t *testing.T, job *batchv1.Job, retries int32, wantDeadline *int64) {
	t.Helper()
	s := job.Spec
	if s.BackoffLimit == nil || *s.BackoffLimit != retries {
		t.Errorf("backoffLimit = %v, want %d", s.BackoffLimit, retries)
	}
	if !equalPtr(s.ActiveDeadlineSeconds, wantDeadline) {
		t.Errorf("activeDeadlineSeconds = %v, want %v", s.ActiveDeadlineSeconds, wantDeadline)
	}
	if !equalPtr(s.Completions, new(int32(1))) || !equalPtr(s.Parallelism, new(int32(1))) {
		t.Errorf("completions/parallelism = %v/%v, want 1/1", s.Completions, s.Parallelism)
	}
}

func checkPodMeta(t *testing.T, tmpl corev1.PodTemplateSpec, p JobParams, wantSecret string) {
	t.Helper()
	want := Labels(p.Ref)
	if wantSecret != "" {
		want[LabelPullSecret] = wantSecret
	}
	checkLabels(t, "pod", tmpl.Labels, want)
	if got := tmpl.Annotations[AnnotationNode]; got != p.Node {
		t.Errorf("pod annotation %s = %q, want %q", AnnotationNode, got, p.Node)
	}
}

func checkPodSpec(t *testing.T, spec corev1.PodSpec, p JobParams, wantSecret string) {
	t.Helper()
	if spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("restartPolicy = %q, want Never", spec.RestartPolicy)
	}
	var gotSecrets []string
	for _, s := range spec.ImagePullSecrets {
		gotSecrets = append(gotSecrets, s.Name)
	}
	if wantSecret == "" && len(gotSecrets) > 0 || wantSecret != "" && !slices.Equal(gotSecrets, []string{wantSecret}) {
		t.Errorf("imagePullSecrets = %v, want %q (none if empty)", gotSecrets, wantSecret)
	}
	terms := spec.Affinity.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms
	if len(terms) != 1 || len(terms[0].MatchFields) != 1 || len(terms[0].MatchExpressions) != 0 {
		t.Fatalf("node affinity terms = %+v, want one metadata.name field", terms)
	}
	if f := terms[0].MatchFields[0]; f.Key != "metadata.name" || f.Operator != corev1.NodeSelectorOpIn || !slices.Equal(f.Values, []string{p.Node}) {
		t.Errorf("node affinity = %+v, want metadata.name In [%s]", f, p.Node)
	}
	if !slices.Equal(spec.Tolerations, p.Tolerations) {
		t.Errorf("tolerations = %v, want %v", spec.Tolerations, p.Tolerations)
	}
	if !equalPtr(spec.AutomountServiceAccountToken, new(false)) || !equalPtr(spec.EnableServiceLinks, new(false)) {
		t.Errorf("automountServiceAccountToken/enableServiceLinks = %v/%v, want false/false",
			spec.AutomountServiceAccountToken, spec.EnableServiceLinks)
	}
	if g := spec.TerminationGracePeriodSeconds; g == nil || *g > 5 {
		t.Errorf("terminationGracePeriodSeconds = %v, want a few seconds at most", g)
	}
}

func checkContainers(t *testing.T, spec corev1.PodSpec, p JobParams, wantInitNames []string) {
	t.Helper()
	var names []string
	for _, c := range spec.InitContainers {
		names = append(names, c.Name)
	}
	if !slices.Equal(names, wantInitNames) {
		t.Fatalf("init containers = %v, want %v", names, wantInitNames)
	}
	install := spec.InitContainers[0]
	if install.Image != p.NoopImage || !slices.Equal(install.Command, []string{"/prewarm-noop", "install", NoopDir}) {
		t.Errorf("install container = %s %v", install.Image, install.Command)
	}
	if len(install.VolumeMounts) != 1 || install.VolumeMounts[0].ReadOnly || install.VolumeMounts[0].MountPath != NoopDir {
		t.Errorf("install mounts = %+v, want %s writable", install.VolumeMounts, NoopDir)
	}
	for i, c := range spec.InitContainers[1:] {
		img := p.Images[i]
		if c.Image != img.Image || c.ImagePullPolicy != img.PullPolicy || !slices.Equal(c.Command, []string{NoopDir + "/prewarm-noop"}) {
			t.Errorf("%s = %s %s %v, want %s %s", c.Name, c.Image, c.ImagePullPolicy, c.Command, img.Image, img.PullPolicy)
		}
		if len(c.VolumeMounts) != 1 || !c.VolumeMounts[0].ReadOnly || c.VolumeMounts[0].MountPath != NoopDir {
			t.Errorf("%s mounts = %+v, want %s read-only", c.Name, c.VolumeMounts, NoopDir)
		}
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Name != ContainerDone ||
		spec.Containers[0].Image != p.NoopImage || !slices.Equal(spec.Containers[0].Command, []string{"/prewarm-noop"}) {
		t.Errorf("containers = %+v, want one %q running /prewarm-noop", spec.Containers, ContainerDone)
	}
	for _, c := range allContainers(spec) {
		r := c.Resources
		if r.Requests.Cpu().MilliValue() != 1 || r.Requests.Memory().Value() != 8<<20 || r.Limits.Memory().Value() != 32<<20 {
			t.Errorf("%s resources = %v", c.Name, r)
		}
	}
}

// TestBuildJobRestricted checks the Pod Security "restricted" rules that the
// pull pod can break, over every container, by hand (the policy checker of
// k8s.io/pod-security-admission is not a dependency of this module).
func TestBuildJobRestricted(t *testing.T) {
	tests := map[string]struct {
		params JobParams
	}{
		"without credentials": {params: params()},
		"with credentials":    {params: params(withPullSecret)},
		"many images": {params: params(func(p *JobParams) {
			for i := range 20 {
				p.Images = append(p.Images, ImagePull{Image: fmt.Sprintf("registry.example.com/img-%d:latest", i)})
			}
		})},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			for _, v := range restrictedViolations(BuildJob(tc.params).Spec.Template.Spec) {
				t.Error(v)
			}
		})
	}
}

func restrictedViolations(spec corev1.PodSpec) []string {
	var v []string
	psc := spec.SecurityContext
	if psc == nil || !equalPtr(psc.RunAsNonRoot, new(true)) {
		v = append(v, "pod: runAsNonRoot is not true")
	}
	if psc == nil || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		v = append(v, "pod: runAsUser unset or 0 (target images may default to root)")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		v = append(v, "pod: seccompProfile is not RuntimeDefault")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		v = append(v, "pod: uses a host namespace")
	}
	for _, vol := range spec.Volumes {
		if vol.EmptyDir == nil || vol.HostPath != nil {
			v = append(v, "volume "+vol.Name+": not an emptyDir")
		}
	}
	for _, c := range allContainers(spec) {
		v = append(v, containerViolations(c)...)
	}
	return v
}

func containerViolations(c corev1.Container) []string {
	sc := c.SecurityContext
	if sc == nil {
		return []string{c.Name + ": no securityContext"}
	}
	var v []string
	if !equalPtr(sc.AllowPrivilegeEscalation, new(false)) {
		v = append(v, c.Name+": allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		v = append(v, c.Name+": capabilities do not drop ALL, or add some")
	}
	if !equalPtr(sc.ReadOnlyRootFilesystem, new(true)) {
		v = append(v, c.Name+": readOnlyRootFilesystem is not true")
	}
	if equalPtr(sc.Privileged, new(true)) || equalPtr(sc.RunAsNonRoot, new(false)) || equalPtr(sc.RunAsUser, new(int64(0))) {
		v = append(v, c.Name+": privileged or root")
	}
	for _, port := range c.Ports {
		if port.HostPort != 0 {
			v = append(v, c.Name+": hostPort")
		}
	}
	return v
}

func TestPullContainerIndex(t *testing.T) {
	tests := map[string]struct {
		name   string
		want   int
		wantOK bool
	}{
		"first":          {name: "pull-0", want: 0, wantOK: true},
		"large":          {name: "pull-123", want: 123, wantOK: true},
		"install":        {name: ContainerInstall},
		"done":           {name: ContainerDone},
		"no digits":      {name: "pull-"},
		"leading zero":   {name: "pull-01"},
		"sign":           {name: "pull-+1"},
		"negative":       {name: "pull--1"},
		"trailing text":  {name: "pull-1a"},
		"other prefix":   {name: "xpull-1"},
		"round trip 999": {name: PullContainerName(999), want: 999, wantOK: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := PullContainerIndex(tc.name)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("PullContainerIndex(%q) = %d, %v, want %d, %v", tc.name, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func FuzzPullContainerIndex(f *testing.F) {
	for _, seed := range []string{"pull-0", "pull-42", "pull-01", "pull--1", "done", "pull-9999999999999999999999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		i, ok := PullContainerIndex(name)
		if ok && PullContainerName(i) != name {
			t.Fatalf("PullContainerIndex(%q) = %d, but PullContainerName(%d) = %q", name, i, i, PullContainerName(i))
		}
		if !ok && strings.HasPrefix(name, "pull-") && i != 0 {
			t.Fatalf("PullContainerIndex(%q) = %d with ok false", name, i)
		}
	})
}

func TestNodeOf(t *testing.T) {
	long := strings.Repeat("n", 253)
	tests := map[string]struct {
		job  *batchv1.Job
		want string
	}{
		"built job, 253-char node": {job: BuildJob(params(func(p *JobParams) { p.Node = long })), want: long},
		"foreign job":              {job: &batchv1.Job{}, want: ""},
		"nil":                      {job: nil, want: ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := NodeOf(tc.job); got != tc.want {
				t.Errorf("NodeOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func allContainers(spec corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(spec.InitContainers), spec.Containers...)
}

func checkLabels(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s labels = %v, want %v", what, got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s label %s = %q, want %q", what, k, got[k], v)
		}
	}
}

func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
