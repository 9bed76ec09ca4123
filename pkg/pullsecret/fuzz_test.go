package pullsecret

import (
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
)

// FuzzFromSecret: no .dockerconfigjson content panics; an accepted one yields
// a complete credential for the requested server, and the run's Secret made
// from it reads back as the same credential. The seeds include entries that
// name one registry in several spellings and auth fields that disagree with
// username/password.
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
		if !utf8.ValidString(server) {
			return // a registry host is ASCII; JSON would rewrite the key
		}
		out, err := DockerConfigJSON([]Credential{c})
		if err != nil {
			t.Fatalf("accepted credential %v does not render: %v", c, err)
		}
		back, err := FromSecret(server, dockerSecret(string(out)))
		if err != nil || back != c {
			t.Fatalf("round trip of %v: %v, %v", c, back, err)
		}
	})
}
