package perf

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/image-prewarm/image-prewarm/certs"
	"github.com/image-prewarm/image-prewarm/pkg/jobs"
	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

// loopbackWebhook is the webhook server on 127.0.0.1 with a throwaway CA.
type loopbackWebhook struct {
	url string
	ca  *certs.KeyPair
}

func startLoopbackWebhook(t *testing.T) *loopbackWebhook {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	bundle, err := certs.Generate(dir, []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	go func() { defer close(done); _ = srv.Start(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	w := &loopbackWebhook{url: "https://127.0.0.1:" + strconv.Itoa(port), ca: bundle.CA}
	err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		conn, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), w.tlsConfig())
		if err == nil {
			conn.Close()
		}
		return err == nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *loopbackWebhook) tlsConfig() *tls.Config {
	roots := x509.NewCertPool()
	roots.AddCert(w.ca.Cert)
	return &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}
}

func reviewBody(t *testing.T, i int) []byte {
	t.Helper()
	pod := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", i), Namespace: "ns", Labels: map[string]string{jobs.LabelPullSecret: "image-pull-secret-abc"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "harbor.example.com/a:1"}}}}
	raw, _ := json.Marshal(pod)
	review := admissionv1.AdmissionReview{TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Resource: metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Operation: admissionv1.Create, Namespace: "ns", Object: runtime.RawExtension{Raw: raw}}}
	body, _ := json.Marshal(review)
	return body
}

// TestWebhookTLSLoad: open-loop 1000 requests/s for 10 s over TLS on loopback, 3 runs.
func TestWebhookTLSLoad(t *testing.T) {
	if !enabled {
		t.Skip("make bench runs this")
	}
	w := startLoopbackWebhook(t)
	body := reviewBody(t, 0)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: w.tlsConfig(), MaxIdleConnsPerHost: 128}}
	var p50s, p99s, errs []float64
	for range 3 {
		lat, failed := loadRun(client, w.url+webhook.MutatePodsPath, body, 1000, 10*time.Second)
		sort.Float64s(lat)
		p50s = append(p50s, lat[len(lat)/2])
		p99s = append(p99s, lat[len(lat)*99/100])
		errs = append(errs, float64(failed))
	}
	results.Add(Figure{Name: "webhook over TLS on loopback at 1000 req/s, p50", Goal: "≤ 2 ms", Unit: "ms", Values: p50s, Note: "10 s open-loop per run, 3 runs, keep-alive"})
	results.Add(Figure{Name: "webhook over TLS on loopback at 1000 req/s, p99", Goal: "≤ 5 ms", Unit: "ms", Values: p99s, Note: "same runs"})
	results.Add(Figure{Name: "webhook over TLS: errors per 10 000 requests", Goal: "0", Unit: "errors", Values: errs, Note: "same runs"})
}

// loadRun sends rate requests per second for d, each on its own schedule (open loop:
// a slow answer does not slow the sender), and returns latencies in ms and failures.
func loadRun(client *http.Client, url string, body []byte, rate int, d time.Duration) ([]float64, int) {
	var mu sync.Mutex
	var lat []float64
	var failed atomic.Int64
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for i := 0; i < int(d/interval); i++ {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		wg.Go(func() {
			t0 := time.Now()
			resp, err := client.Post(url, "application/json", bytes.NewReader(body))
			if err != nil {
				failed.Add(1)
				return
			}
			var review admissionv1.AdmissionReview
			err = json.NewDecoder(resp.Body).Decode(&review)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || review.Response == nil || !review.Response.Allowed || len(review.Response.Patch) == 0 {
				failed.Add(1)
				return
			}
			mu.Lock()
			lat = append(lat, float64(time.Since(t0).Microseconds())/1000)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lat, int(failed.Load())
}

// TestWebhook500PodsAtOnce: 500 labeled pods created concurrently through the real API
// server, which calls the webhook over TLS; every stored pod must carry the Secret.
func TestWebhook500PodsAtOnce(t *testing.T) {
	kube := needCluster(t)
	w := startLoopbackWebhook(t)
	var injected, rejected []float64
	for run := range 3 {
		ns := fmt.Sprintf("burst-%d", run)
		if err := kube.Namespace(t.Context(), ns, nil); err != nil {
			t.Fatal(err)
		}
		url := w.url
		cfg := webhook.MutatingConfiguration("perf-"+ns, admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: w.ca.CertPEM}, admissionregistrationv1.Fail)
		for i := range cfg.Webhooks {
			cfg.Webhooks[i].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}}
		}
		if _, err := kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(t.Context(), cfg, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second) // the API server picks up webhook configurations asynchronously
		ok, bad := createPodsAtOnce(t, ns, 500)
		injected, rejected = append(injected, float64(ok)), append(rejected, float64(bad))
		_ = kube.Client.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
		_ = kube.Client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	}
	results.Add(Figure{Name: "500 labeled pods created at once: injected", Goal: "500", Unit: "pods", Values: injected, Note: "32 concurrent clients, failurePolicy Fail"})
	results.Add(Figure{Name: "500 labeled pods created at once: rejected", Goal: "0", Unit: "pods", Values: rejected, Note: "same runs"})
}

func createPodsAtOnce(t *testing.T, ns string, n int) (injected, rejected int) {
	var ok, bad atomic.Int64
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%03d", i), Labels: map[string]string{jobs.LabelPullSecret: "image-pull-secret-burst"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "harbor.example.com/a:1"}}}}
				got, err := kube.Client.CoreV1().Pods(ns).Create(context.Background(), pod, metav1.CreateOptions{})
				switch {
				case err != nil:
					bad.Add(1)
				case len(got.Spec.ImagePullSecrets) == 1 && got.Spec.ImagePullSecrets[0].Name == "image-pull-secret-burst":
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return int(ok.Load()), int(bad.Load())
}
