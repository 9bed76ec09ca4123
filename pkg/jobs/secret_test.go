package jobs

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// The values a leak check looks for; distinctive so a match is no accident.
const (
	testPassword = "s3cr3t-Pa55w0rd-do-not-leak"
	testAuth     = "cm9ib3QkcHJld2FybTpzM2NyM3QtUGE1NXcwcmQtZG8tbm90LWxlYWs="
)

var testDockerConfig = []byte(`{"auths":{"harbor.example.com":{"username":"robot$prewarm","password":"` +
	testPassword + `","auth":"` + testAuth + `"}}}`)

func TestBuildSecret(t *testing.T) {
	tests := map[string]struct {
		ref RunRef
	}{
		"short spec": {ref: testRef},
		"long spec":  {ref: RunRef{Namespace: "ns", Spec: string(bytes.Repeat([]byte("s"), 200)), RunID: "abcdef0123"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			input := bytes.Clone(testDockerConfig)
			s := BuildSecret(tc.ref, input)
			if s.Name != "image-pull-secret-"+tc.ref.RunID || s.Namespace != tc.ref.Namespace {
				t.Errorf("secret = %s/%s", s.Namespace, s.Name)
			}
			if s.Type != corev1.SecretTypeDockerConfigJson {
				t.Errorf("type = %q, want %q", s.Type, corev1.SecretTypeDockerConfigJson)
			}
			if len(s.Data) != 1 || !bytes.Equal(s.Data[".dockerconfigjson"], testDockerConfig) {
				t.Errorf("data keys = %d, .dockerconfigjson = %q", len(s.Data), s.Data[".dockerconfigjson"])
			}
			checkLabels(t, "secret", s.Labels, Labels(tc.ref))
			clear(input) // a caller wiping its buffer must not change the Secret
			if !bytes.Equal(s.Data[".dockerconfigjson"], testDockerConfig) {
				t.Error("Secret data aliases the caller's buffer")
			}
		})
	}
}

// TestJobCarriesNoCredentials checks that the credentials live only in the
// Secret: no field of any Job, serialized, holds any part of them.
func TestJobCarriesNoCredentials(t *testing.T) {
	forbidden := map[string]string{
		"dockerconfigjson":        string(testDockerConfig),
		"dockerconfigjson base64": base64.StdEncoding.EncodeToString(testDockerConfig),
		"password":                testPassword,
		"auth":                    testAuth,
	}
	tests := map[string]struct {
		params JobParams
	}{
		"with credentials":    {params: params(withPullSecret)},
		"without credentials": {params: params()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			// Built the way the controller does: Secret first, Job references it.
			_ = BuildSecret(tc.params.Ref, testDockerConfig)
			raw, err := json.Marshal(BuildJob(tc.params))
			if err != nil {
				t.Fatal(err)
			}
			for what, value := range forbidden {
				if bytes.Contains(raw, []byte(value)) {
					t.Errorf("the Job holds the %s", what)
				}
			}
		})
	}
}
