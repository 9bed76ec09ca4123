package app

import (
	"errors"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/image-prewarm/image-prewarm/pkg/webhook"
)

func TestSelfTest(t *testing.T) {
	denied := errors.New(`admission webhook "` + webhook.ValidatingWebhookName + `" denied the request: images: at least one image is required`)
	unreachable := errors.New(`Internal error occurred: failed calling webhook "` + webhook.ValidatingWebhookName + `": context deadline exceeded`)
	tests := map[string]struct {
		createErr error
		lease     *coordinationv1.Lease
		wantFail  []string
	}{
		"webhook denies, lease fresh": {createErr: denied, lease: lease("replica-0", 2*time.Second)},
		"webhook not called":          {createErr: nil, lease: lease("replica-0", 0), wantFail: []string{"webhook: an invalid prewarm spec was admitted"}},
		"webhook unreachable":         {createErr: unreachable, lease: lease("replica-0", 0), wantFail: []string{"webhook: the API server did not get"}},
		"lease stale":                 {createErr: denied, lease: lease("replica-0", time.Minute), wantFail: []string{"replica-0 renewed it 1m0s ago"}},
		"lease without holder":        {createErr: denied, lease: lease("", 0), wantFail: []string{"has no holder"}},
		"no lease":                    {createErr: denied, wantFail: []string{"lease: leases.coordination.k8s.io \"ctl\" not found"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.lease != nil {
				client = fake.NewClientset(tc.lease)
			}
			client.PrependReactor("create", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if opts := a.(k8stesting.CreateActionImpl).GetCreateOptions(); len(opts.DryRun) == 0 {
					t.Error("the webhook check created a ConfigMap for real")
				}
				return true, nil, tc.createErr
			})
			var out strings.Builder
			cfg := &SelfTestConfig{Namespace: "ns", Webhook: true, LeaseName: "ctl", Timeout: 10 * time.Millisecond}
			err := SelfTest(t.Context(), cfg, client, &out)
			if len(tc.wantFail) == 0 {
				if err != nil || strings.Count(out.String(), "ok   ") != 2 {
					t.Fatalf("err %v, output:\n%s", err, out.String())
				}
				return
			}
			for _, want := range tc.wantFail {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("err %v, want it to contain %q", err, want)
				}
			}
		})
	}
}

func lease(holder string, age time.Duration) *coordinationv1.Lease {
	renew := metav1.NewMicroTime(time.Now().Add(-age))
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "ctl", Namespace: "ns"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &renew, LeaseDurationSeconds: new(int32(15))},
	}
}

func TestParseSelfTest(t *testing.T) {
	c, err := ParseSelfTest([]string{"--namespace=ops", "--lease-name=ctl", "--webhook=false"}, &strings.Builder{})
	if err != nil || c.Namespace != "ops" || c.LeaseName != "ctl" || c.Webhook || c.Timeout != time.Minute {
		t.Fatalf("%+v, %v", c, err)
	}
	if _, err := ParseSelfTest([]string{"--namespace=Bad", "--timeout=0s", "extra"}, &strings.Builder{}); err == nil ||
		!strings.Contains(err.Error(), "--namespace") || !strings.Contains(err.Error(), "--timeout") || !strings.Contains(err.Error(), "unexpected") {
		t.Fatalf("want every problem, got %v", err)
	}
}
