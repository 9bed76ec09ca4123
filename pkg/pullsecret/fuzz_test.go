package pullsecret

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// FuzzFromSecret: no .dockerconfigjson content panics, and an accepted one
// yields a complete credential for the requested server.
func FuzzFromSecret(f *testing.F) {
	for _, tc := range fromSecretCases {
		if tc.secret != nil && tc.secret.Type == corev1.SecretTypeDockerConfigJson {
			f.Add(tc.server, tc.secret.Data[corev1.DockerConfigJsonKey])
		}
	}
	f.Fuzz(func(t *testing.T, server string, raw []byte) {
		c, err := FromSecret(server, dockerSecret(string(raw)))
		if err != nil {
			return
		}
		if c.Server != server || c.Username == "" || c.Password == "" {
			t.Fatalf("incomplete credential %v", c)
		}
	})
}
