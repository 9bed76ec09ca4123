package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/config"
	"github.com/image-prewarm/image-prewarm/pkg/metrics"
)

func TestInstrument(t *testing.T) {
	tests := map[string]struct {
		resp admission.Response
		want string
	}{
		"allowed": {resp: admission.Allowed(""), want: metrics.WebhookAllowed},
		"patched": {resp: admission.PatchResponseFromRaw([]byte(`{}`), []byte(`{"a":1}`)), want: metrics.WebhookPatched},
		"denied":  {resp: admission.Denied("no"), want: metrics.WebhookDenied},
		"errored": {resp: admission.Errored(400, errors.New("bad")), want: metrics.WebhookError},
		"failed":  {resp: admission.Errored(500, errors.New("bad")), want: metrics.WebhookError},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hook := "test-" + name // a series of its own, whatever other tests record
			h := instrument(hook, admission.HandlerFunc(func(context.Context, admission.Request) admission.Response { return tc.resp }))
			h.Handle(t.Context(), admission.Request{})
			requests, observations := series(t, hook)
			if want := map[string]float64{tc.want: 1}; !maps.Equal(requests, want) {
				t.Errorf("image_prewarm_webhook_requests_total{webhook=%q} by result: %v, want %v", hook, requests, want)
			}
			if observations != 1 {
				t.Errorf("latency observations %d, want 1", observations)
			}
		})
	}
}

// series reads, through the registry /metrics serves, one webhook's request counts by
// result and its latency observation count.
func series(t *testing.T, hook string) (requests map[string]float64, observations uint64) {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	requests = map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["webhook"] != hook {
				continue
			}
			switch f.GetName() {
			case "image_prewarm_webhook_requests_total":
				requests[labels["result"]] += m.GetCounter().GetValue()
			case "image_prewarm_webhook_request_duration_seconds":
				observations += m.GetHistogram().GetSampleCount()
			}
		}
	}
	return requests, observations
}

func TestConfigurations(t *testing.T) {
	url := "https://127.0.0.1:9443/"
	svc := admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "ops", Name: "image-prewarm-webhook"}, CABundle: []byte("ca")}
	m := MutatingConfiguration("m", svc, admissionregistrationv1.Fail)
	v := ValidatingConfiguration("v", admissionregistrationv1.WebhookClientConfig{URL: &url}, admissionregistrationv1.Ignore)
	mw, vw := m.Webhooks[0], v.Webhooks[0]
	checks := map[string]struct{ got, want any }{
		"mutating path":           {*mw.ClientConfig.Service.Path, MutatePodsPath},
		"caller's service intact": {svc.Service.Path == nil, true},
		"validating URL":          {*vw.ClientConfig.URL, "https://127.0.0.1:9443" + ValidateConfigMapsPath},
		"mutating failurePolicy":  {*mw.FailurePolicy, admissionregistrationv1.Fail},
		"validating failure":      {*vw.FailurePolicy, admissionregistrationv1.Ignore},
		"mutating resources":      {mw.Rules[0].Resources[0] + " " + string(mw.Rules[0].Operations[0]), "pods CREATE"},
		"mutating operations":     {len(mw.Rules[0].Operations), 1},
		"validating resources":    {vw.Rules[0].Resources[0], "configmaps"},
		"validating operations":   {vw.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}},
		"mutating selector":       {mw.ObjectSelector.MatchExpressions[0], metav1.LabelSelectorRequirement{Key: "image-prewarm.io/pull-secret", Operator: metav1.LabelSelectorOpExists}},
		"validating selector":     {vw.ObjectSelector.MatchLabels, map[string]string{config.ConfigLabel: "true"}},
		"side effects":            {*mw.SideEffects + *vw.SideEffects, admissionregistrationv1.SideEffectClassNone + admissionregistrationv1.SideEffectClassNone},
		"reinvocation":            {*mw.ReinvocationPolicy, admissionregistrationv1.IfNeededReinvocationPolicy},
		"timeouts":                {*mw.TimeoutSeconds + *vw.TimeoutSeconds, int32(10)},
		"match policy":            {*mw.MatchPolicy == admissionregistrationv1.Equivalent && *vw.MatchPolicy == admissionregistrationv1.Equivalent, true},
		"review versions":         {mw.AdmissionReviewVersions[0] + vw.AdmissionReviewVersions[0], "v1v1"},
	}
	for name, c := range checks {
		gotJSON, _ := json.Marshal(c.got)
		wantJSON, _ := json.Marshal(c.want)
		if !bytes.Equal(gotJSON, wantJSON) {
			t.Errorf("%s: %s, want %s", name, gotJSON, wantJSON)
		}
	}
}

// review encodes obj in an AdmissionReview request body.
func review(t testing.TB, op admissionv1.Operation, obj runtime.Object) []byte {
	t.Helper()
	req := request(t, op, obj)
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// TestServer serves both webhooks over TLS as the API server calls them.
func TestServer(t *testing.T) {
	dir := t.TempDir()
	b, err := certs.Generate(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- NewServer(Options{Host: "127.0.0.1", Port: port, CertDir: dir}).Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	roots := x509.NewCertPool()
	roots.AddCert(b.CA.Cert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	base := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	tests := map[string]struct {
		path        string
		body        []byte
		wantAllowed bool
		wantPatch   bool
	}{
		"pod patched":        {path: MutatePodsPath, body: review(t, admissionv1.Create, pod(pullSecret("s"))), wantAllowed: true, wantPatch: true},
		"invalid spec":       {path: ValidateConfigMapsPath, body: review(t, admissionv1.Create, configMap(specLabel, map[string]string{config.SpecKey: invalidSpec}))},
		"valid spec allowed": {path: ValidateConfigMapsPath, body: review(t, admissionv1.Create, configMap(specLabel, map[string]string{config.SpecKey: validSpec})), wantAllowed: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp := postEventually(t, client, base+tc.path, tc.body)
			defer resp.Body.Close()
			if resp.ProtoMajor != 1 {
				t.Errorf("served over %s; HTTP/2 should be off", resp.Proto)
			}
			var out admissionv1.AdmissionReview
			if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
				t.Fatal(err)
			}
			if out.Response.UID != "uid-1" || out.Response.Allowed != tc.wantAllowed || (len(out.Response.Patch) > 0) != tc.wantPatch {
				t.Fatalf("response %+v", out.Response)
			}
		})
	}
}

// postEventually retries while the server is still starting.
func postEventually(t *testing.T, client *http.Client, url string, body []byte) *http.Response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// FuzzDecodeReview feeds the handlers malformed input at both decoding steps: the
// AdmissionReview request body, and the object inside a well-formed review. Nothing
// panics, every body gets an AdmissionReview answer, and a pod patch only ever touches
// imagePullSecrets.
func FuzzDecodeReview(f *testing.F) {
	seeds := []struct {
		op  admissionv1.Operation
		obj runtime.Object
	}{
		{admissionv1.Create, pod(pullSecret("s"))},
		{admissionv1.Create, pod(pullSecret("s"), "a", "s")},
		{admissionv1.Create, pod(pullSecret("Bad_Name"))},
		{admissionv1.Create, configMap(specLabel, map[string]string{config.SpecKey: invalidSpec})},
		{admissionv1.Update, configMap(specLabel, map[string]string{config.SpecKey: validSpec})},
	}
	for _, s := range seeds {
		f.Add(review(f, s.op, s.obj), request(f, s.op, s.obj).Object.Raw)
	}
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"operation":"CREATE","object":null}}`), []byte(`null`))
	f.Add([]byte(`{}`), []byte(`{"kind":"Pod","apiVersion":"v1","metadata":{"labels":{"image-prewarm.io/pull-secret":"x"}},"spec":{"imagePullSecrets":[null,{}]}}`))
	hooks := map[string]*admission.Webhook{
		"mutate":   (&admission.Webhook{Handler: instrument("fuzz-mutate", PodMutator{})}).WithRecoverPanic(false),
		"validate": (&admission.Webhook{Handler: instrument("fuzz-validate", ConfigValidator{})}).WithRecoverPanic(false),
	}
	f.Fuzz(func(t *testing.T, body, object []byte) {
		for name, h := range hooks {
			req, _ := http.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("%s: answer %q is not an AdmissionReview: %v", name, rec.Body.String(), err)
			}
			resp := h.Handle(t.Context(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID: "u", Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: object},
			}})
			for _, op := range resp.Patches {
				if !strings.HasPrefix(op.Path, "/spec/imagePullSecrets") {
					t.Fatalf("%s: patch touches %s", name, op.Path)
				}
			}
		}
	})
}
