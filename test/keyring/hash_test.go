package keyring

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/util/parsers"

	"github.com/image-prewarm/image-prewarm/pkg/config"
)

// credentialHash is the hash kubelet records for the credential it pulled image with
// and compares before it lets another pod use the image (KEP-2535, on by default since
// 1.35): pkg/kubelet/images/image_manager.go trackedToImagePullCreds copies
// TrackedAuthConfig.AuthConfigHash, which credentialprovider.NewTrackedAuthConfig
// computes (hashAuthConfig: username, password and email) when the keyring reads
// the Secret.
func credentialHash(t *testing.T, s *corev1.Secret, image string) string {
	t.Helper()
	got := kubeletLookup(t, []corev1.Secret{*s}, image)
	if len(got) != 1 {
		t.Fatalf("kubelet found %d credentials for %s in Secret %s (keys %s), want 1", len(got), image, s.Name, authsKeys(s))
	}
	if got[0].AuthConfigHash == "" {
		t.Fatal("kubelet computed no credential hash: is KubeletEnsureSecretPulledImages off?")
	}
	return got[0].AuthConfigHash
}

// workloadSecret is the pull Secret a workload holds for the same login, as kubectl
// create secret docker-registry makes it, for the registry name kubelet looks image
// up by.
func workloadSecret(t *testing.T, name, image string, l login) *corev1.Secret {
	t.Helper()
	repo, _, _, err := parsers.ParseImageName(image)
	if err != nil {
		t.Fatal(err)
	}
	host, _, _ := strings.Cut(repo, "/")
	key, entry := entryStyles[0](host, l)
	if entry["email"] == "" {
		delete(entry, "email")
	}
	return dockerConfigSecret(name, map[string]map[string]string{key: entry})
}

// TestCredentialHashKept: a workload whose own pull Secret holds the same login hashes
// the same as the run's Secret, so kubelet lets it use the prewarmed image without
// going back to the registry: for dockerconfigjson sources of every entry shape (email
// included), basic-auth sources and task requests.
func TestCredentialHashKept(t *testing.T) {
	hosts := []struct{ server, image string }{
		{"harbor.example.com", "harbor.example.com/team/app:1"},
		{"Harbor.Example.com", "harbor.example.com/team/app@" + digest},
		{"docker.io", "myorg/app:1"},
		{"docker.io", "registry-1.docker.io/myorg/app:1"},
		{"[::1]:5000", "[::1]:5000/app"},
		{"localhost:5000", "localhost:5000/app"},
	}
	type pair struct {
		what string
		// The workload's pull Secrets: kubectl's for the login, and the spec's own
		// credentials Secret when kubelet can pull the image with it.
		workloads []*corev1.Secret
		run       *corev1.Secret // the run's (or task's) Secret
		image     string
	}
	var specCases []specCase
	var pairs []pair
	pairOf := map[string]int{} // spec name -> index in pairs
	api := newTaskAPI()
	for i, h := range hosts {
		for j, l := range logins {
			for style := range entryStyles {
				name := fmt.Sprintf("dcj-%d-%d-%d", i, j, style)
				source := dockerConfigSource(name+"-creds", style, []string{h.server}, l)
				specCases = append(specCases, specCase{name: name, sources: []*corev1.Secret{source},
					spec: specYAML([]config.Registry{{Server: h.server, CredentialsSecret: source.Name}}, h.image)})
				workloads := []*corev1.Secret{workloadSecret(t, "w-"+name, h.image, l)}
				if len(kubeletLookup(t, []corev1.Secret{*source}, h.image)) == 1 {
					workloads = append(workloads, source)
				}
				pairOf[name] = len(pairs)
				pairs = append(pairs, pair{what: name + " (dockerconfigjson, style " + fmt.Sprint(style) + ")", workloads: workloads, image: h.image})
			}
			name := fmt.Sprintf("basic-%d-%d", i, j)
			source := basicAuthSource(name+"-creds", l)
			specCases = append(specCases, specCase{name: name, sources: []*corev1.Secret{source},
				spec: specYAML([]config.Registry{{Server: h.server, CredentialsSecret: source.Name}}, h.image)})
			noEmail := login{user: l.user, pass: l.pass}
			pairOf[name] = len(pairs)
			pairs = append(pairs, pair{what: name + " (basic-auth)", workloads: []*corev1.Secret{workloadSecret(t, "w-"+name, h.image, noEmail)}, image: h.image})

			secret, refusal := api.create(t, taskRequest{Images: []string{h.image}, Registry: h.server, Username: l.user, Password: l.pass})
			if refusal != nil {
				t.Fatalf("task for %s refused: %s", h.image, refusal.Message)
			}
			pairs = append(pairs, pair{what: fmt.Sprintf("task %d-%d", i, j), workloads: []*corev1.Secret{workloadSecret(t, "w-task", h.image, noEmail)}, run: secret, image: h.image})
		}
	}
	made := controllerSecrets(t, specCases)
	for name, s := range made {
		pairs[pairOf[name]].run = s
	}
	compared := 0
	for _, p := range pairs {
		got := credentialHash(t, p.run, p.image)
		for _, w := range p.workloads {
			if want := credentialHash(t, w, p.image); got != want {
				t.Errorf("%s: the run's Secret hashes %s, the workload's %s %s: kubelet would pull %s again for the workload", p.what, got[:12], w.Name, want[:12], p.image)
			}
			compared++
		}
	}
	t.Logf("%d runs' Secrets, %d credential hashes compared", len(pairs), compared)
}

// TestCredentialHashSeesEmail is the control: the hash does cover the email, so a run's
// Secret that dropped it would not match the workload's.
func TestCredentialHashSeesEmail(t *testing.T) {
	with := login{user: "u", pass: "p", email: "ci@example.com"}
	without := login{user: "u", pass: "p"}
	a := workloadSecret(t, "with", "harbor.example.com/a", with)
	b := workloadSecret(t, "without", "harbor.example.com/a", without)
	if credentialHash(t, a, "harbor.example.com/a") == credentialHash(t, b, "harbor.example.com/a") {
		t.Fatal("kubelet's hash ignores the email: this test no longer tells anything")
	}
}
