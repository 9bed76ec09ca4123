package keyring

import (
	"maps"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// TestKubeletFacts pins the behaviours of kubelet's keyring that pkg/pullsecret and
// pkg/config are built on. When a Kubernetes upgrade changes one, this says which.
func TestKubeletFacts(t *testing.T) {
	u := login{user: "u", pass: "p"}
	tests := map[string]struct {
		auths map[string]map[string]string
		image string
		want  []string // user:password of each credential kubelet offers, in order
	}{
		"host case matters": {
			auths: map[string]map[string]string{"harbor.example.com": {"auth": basicAuth(u)}},
			image: "Harbor.Example.com/a", want: nil,
		},
		"the legacy key serves docker.io": {
			auths: map[string]map[string]string{"https://index.docker.io/v1/": {"auth": basicAuth(u)}},
			image: "nginx", want: []string{"u:p"},
		},
		"the legacy key does not serve registry-1": {
			auths: map[string]map[string]string{"https://index.docker.io/v1/": {"auth": basicAuth(u)}},
			image: "registry-1.docker.io/library/nginx", want: nil,
		},
		"an IPv6 host without a port matches nothing": {
			auths: map[string]map[string]string{"[::1]": {"auth": basicAuth(u)}},
			image: "[::1]/a", want: nil,
		},
		"auth wins over username and password": {
			auths: map[string]map[string]string{"h.x": {"username": "other", "password": "x", "auth": basicAuth(u)}},
			image: "h.x/a", want: []string{"u:p"},
		},
		"unpadded auth": {
			auths: map[string]map[string]string{"h.x": {"auth": "dTpw"}},
			image: "h.x/a", want: []string{"u:p"},
		},
		"identitytoken is not a credential": {
			auths: map[string]map[string]string{"h.x": {"identitytoken": "tok"}},
			image: "h.x/a", want: []string{":"},
		},
		"two spellings of one registry are both offered": {
			auths: map[string]map[string]string{"h.x": {"auth": basicAuth(u)}, "https://h.x/v2/": {"auth": basicAuth(u)}},
			image: "h.x/a", want: []string{"u:p", "u:p"},
		},
		// Why config refuses Docker Hub credentials beside an anonymous localhost.
		"Docker Hub credentials go to names without a dot": {
			auths: map[string]map[string]string{"https://index.docker.io/v1/": {"auth": basicAuth(u)}},
			image: "localhost/app", want: []string{"u:p"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var got []string
			for _, c := range kubeletLookup(t, []corev1.Secret{*dockerConfigSecret("s", tc.auths)}, tc.image) {
				got = append(got, c.Username+":"+c.Password)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("kubelet offers %q for %s, want %q", got, tc.image, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("kubelet offers %q for %s, want %q", got, tc.image, tc.want)
				}
			}
		})
	}
}

// TestSeveralRegistries: one spec, several registries (one dockerconfigjson Secret for
// two of them, a basic-auth one for Docker Hub, one without credentials): every image
// gets its own registry's credentials and no other.
func TestSeveralRegistries(t *testing.T) {
	harbor := login{user: "robot$proj+ci", pass: `p:"\`, email: "ci@example.com"}
	local := login{user: "ci", pass: "ü:ß"}
	hub := login{user: "hubuser", pass: "hub:pass"}
	// One Secret for two registries, each with its own login and entry shape.
	key, entry := entryStyles[0]("localhost:5000", local)
	delete(entry, "email")
	shared := dockerConfigSecret("shared", map[string]map[string]string{"https://Harbor.Example.com/v2/": {"auth": basicAuth(harbor), "email": harbor.email}, key: entry})
	hubSecret := basicAuthSource("hub", hub)
	registries := []config.Registry{
		{Server: "Harbor.Example.com", CredentialsSecret: "shared"},
		{Server: "docker.io", CredentialsSecret: "hub"},
		{Server: "registry.local:5000"},
		{Server: "localhost:5000", CredentialsSecret: "shared"},
	}
	want := map[string]*login{
		"harbor.example.com/a:1":         &harbor,
		"Harbor.Example.com/b@" + digest: &harbor,
		"nginx":                          &hub,
		"registry-1.docker.io/myorg/x:1": &hub,
		"index.docker.io/myorg/y":        &hub,
		"registry.local:5000/app:1":      nil,
		"localhost:5000/app":             &local,
		"ghcr.io/o/p:1":                  nil,
		"quay.io/o/p:1":                  nil,
	}
	sc := specCase{name: "several", spec: specYAML(registries, slices.Sorted(maps.Keys(want))...), sources: []*corev1.Secret{shared, hubSecret}}
	if _, err := config.FromConfigMap(sc.configMap()); err != nil {
		t.Fatal(err)
	}
	secret := controllerSecrets(t, []specCase{sc})["several"]
	for img, l := range want {
		got := kubeletLookup(t, []corev1.Secret{*secret}, img)
		switch {
		case l == nil && len(got) != 0:
			t.Errorf("%s: kubelet offers %d credentials, want none", img, len(got))
		case l != nil && (len(got) != 1 || got[0].Username != l.user || got[0].Password != l.pass):
			t.Errorf("%s: kubelet offers %d credentials (keys %s), want exactly %s's", img, len(got), authsKeys(secret), l.user)
		case l == &harbor && got[0].Email != harbor.email:
			t.Errorf("%s: email %q, want %q", img, got[0].Email, harbor.email)
		}
	}
}

// TestDockerHubCredentialsBesideLocalhost: kubelet would send Docker Hub's credentials
// to an anonymous registry named without a dot (TestKubeletFacts), so the spec is
// refused, naming the image.
func TestDockerHubCredentialsBesideLocalhost(t *testing.T) {
	sc := specCase{name: "leak", spec: specYAML([]config.Registry{
		{Server: "docker.io", CredentialsSecret: "hub"},
		{Server: "localhost"},
	}, "nginx", "localhost/app")}
	_, err := config.FromConfigMap(sc.configMap())
	if paths, msg := specRefusal(t, err); len(paths) != 1 || paths[0] != "images[1]" {
		t.Fatalf("refusal names %q, want images[1]: %s", paths, msg)
	}
}
