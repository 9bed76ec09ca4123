package webhook

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/pkg/jobs"
)

// pod builds a pod with the given labels and imagePullSecrets.
func pod(labels map[string]string, secrets ...string) *corev1.Pod {
	p := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: labels},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "harbor.example.com/ml/a:1"}}},
	}
	for _, s := range secrets {
		p.Spec.ImagePullSecrets = append(p.Spec.ImagePullSecrets, corev1.LocalObjectReference{Name: s})
	}
	return p
}

func pullSecret(name string) map[string]string {
	return map[string]string{jobs.LabelPullSecret: name, jobs.LabelRun: "abc"}
}

func secretNames(p *corev1.Pod) []string {
	var names []string
	for _, ref := range p.Spec.ImagePullSecrets {
		names = append(names, ref.Name)
	}
	return names
}

func TestMutate(t *testing.T) {
	tests := map[string]struct {
		pod         *corev1.Pod
		wantChanged bool
		wantSecrets []string
	}{
		"no secrets":             {pod: pod(pullSecret("image-pull-secret-x")), wantChanged: true, wantSecrets: []string{"image-pull-secret-x"}},
		"already present":        {pod: pod(pullSecret("image-pull-secret-x"), "image-pull-secret-x"), wantSecrets: []string{"image-pull-secret-x"}},
		"other secrets present":  {pod: pod(pullSecret("image-pull-secret-x"), "a", "b"), wantChanged: true, wantSecrets: []string{"a", "b", "image-pull-secret-x"}},
		"present among others":   {pod: pod(pullSecret("s"), "a", "s"), wantSecrets: []string{"a", "s"}},
		"no label":               {pod: pod(map[string]string{"app": "x"}, "a"), wantSecrets: []string{"a"}},
		"nil labels":             {pod: pod(nil), wantSecrets: nil},
		"bad label: upper case":  {pod: pod(pullSecret("Image_Pull")), wantSecrets: nil},
		"bad label: empty value": {pod: pod(pullSecret("")), wantSecrets: nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Mutate(tc.pod); got != tc.wantChanged {
				t.Errorf("Mutate changed = %v, want %v", got, tc.wantChanged)
			}
			if got := secretNames(tc.pod); !slices.Equal(got, tc.wantSecrets) {
				t.Errorf("imagePullSecrets %q, want %q", got, tc.wantSecrets)
			}
			if Mutate(tc.pod) {
				t.Error("a second Mutate changed the pod again")
			}
			if got := secretNames(tc.pod); !slices.Equal(got, tc.wantSecrets) {
				t.Errorf("after a second Mutate: imagePullSecrets %q, want %q", got, tc.wantSecrets)
			}
		})
	}
}

// request wraps obj in an admission request as the API server sends it.
func request(t testing.TB, op admissionv1.Operation, obj runtime.Object) admission.Request {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "uid-1", Operation: op, Object: runtime.RawExtension{Raw: raw},
	}}
}

func TestPodMutatorHandle(t *testing.T) {
	tests := map[string]struct {
		op          admissionv1.Operation
		obj         runtime.Object // nil: a request without an object
		wantAllowed bool
		wantCode    int32
		wantPatch   string // JSON of the patch operations; "" for none
		wantWarning string
	}{
		"adds the secret": {
			op: admissionv1.Create, obj: pod(pullSecret("image-pull-secret-x")), wantAllowed: true,
			wantPatch: `[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"image-pull-secret-x"}]}]`,
		},
		"appends after other secrets": {
			op: admissionv1.Create, obj: pod(pullSecret("s"), "a"), wantAllowed: true,
			wantPatch: `[{"op":"add","path":"/spec/imagePullSecrets/1","value":{"name":"s"}}]`,
		},
		"already present: no patch": {op: admissionv1.Create, obj: pod(pullSecret("s"), "s"), wantAllowed: true},
		"bad label: admitted with a warning": {
			op: admissionv1.Create, obj: pod(pullSecret("Bad_Name")), wantAllowed: true,
			wantWarning: `label image-prewarm.io/pull-secret="Bad_Name" is not a valid Secret name`,
		},
		"not a create: untouched": {op: admissionv1.Update, obj: pod(pullSecret("s")), wantAllowed: true},
		"not a pod":               {op: admissionv1.Create, obj: configMap(nil, nil), wantCode: 400},
		"no object":               {op: admissionv1.Create, wantCode: 400},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: tc.op}}
			if tc.obj != nil {
				req = request(t, tc.op, tc.obj)
			}
			resp := PodMutator{}.Handle(t.Context(), req)
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("allowed = %v, want %v (result %+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if tc.wantCode != 0 && (resp.Result == nil || resp.Result.Code != tc.wantCode) {
				t.Fatalf("result %+v, want code %d", resp.Result, tc.wantCode)
			}
			patch := ""
			if len(resp.Patches) > 0 {
				b, _ := json.Marshal(resp.Patches)
				patch = string(b)
			}
			if patch != tc.wantPatch {
				t.Errorf("patch %s\nwant  %s", patch, tc.wantPatch)
			}
			if (resp.PatchType != nil) != (tc.wantPatch != "") {
				t.Errorf("patchType %v with patch %q", resp.PatchType, patch)
			}
			warnings := strings.Join(resp.Warnings, "\n")
			if (tc.wantWarning == "") != (warnings == "") || !strings.Contains(warnings, tc.wantWarning) {
				t.Errorf("warnings %q, want %q", warnings, tc.wantWarning)
			}
		})
	}
}

// TestPodMutatorKeepsUnknownFields: fields our API types do not know (a newer API
// server's) must not be removed by the patch.
func TestPodMutatorKeepsUnknownFields(t *testing.T) {
	raw := `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","labels":{"image-prewarm.io/pull-secret":"s"}},` +
		`"spec":{"futureField":{"x":1},"containers":[{"name":"c","image":"a","futureContainerField":true}]}}`
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: []byte(raw)}}}
	resp := PodMutator{}.Handle(t.Context(), req)
	b, _ := json.Marshal(resp.Patches)
	if want := `[{"op":"add","path":"/spec/imagePullSecrets","value":[{"name":"s"}]}]`; string(b) != want {
		t.Fatalf("patch %s\nwant  %s", b, want)
	}
}

func BenchmarkMutate(b *testing.B) {
	labels := pullSecret("image-pull-secret-0123456789")
	b.ReportAllocs()
	for b.Loop() {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: labels}}
		if !Mutate(&p) {
			b.Fatal("not mutated")
		}
	}
}
