package keyring

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kubernetes/pkg/credentialprovider"
	credentialprovidersecrets "k8s.io/kubernetes/pkg/credentialprovider/secrets"
	"k8s.io/kubernetes/pkg/util/parsers"
)

// kubeletLookup returns the credentials kubelet would try for image with pullSecrets
// as the pod's imagePullSecrets, in kubelet's order, only those that come from the
// Secrets (the node's own docker config is not ours to check).
//
// It follows kubelet v1.37.2 pkg/kubelet/images/image_manager.go: EnsureImageExists
// applies the default tag (applyDefaultImageTag), then makeLookupPullCredentialsFunc
// parses the image (parsers.ParseImageName), builds the keyring with
// secrets.MakeDockerKeyring(pullSecrets, node keyring) and calls Lookup with the
// parsed repository. The node keyring is the one kuberuntime builds,
// credentialprovider.NewDefaultDockerKeyring(); the external credential provider
// plugins are left out (none is configured on our nodes).
func kubeletLookup(t *testing.T, pullSecrets []corev1.Secret, image string) []credentialprovider.TrackedAuthConfig {
	t.Helper()
	image, err := applyDefaultImageTag(image)
	if err != nil {
		t.Fatalf("kubelet cannot parse image %q: %v", image, err)
	}
	repoToPull, _, _, err := parsers.ParseImageName(image)
	if err != nil {
		t.Fatalf("kubelet cannot parse image %q: %v", image, err)
	}
	keyring, err := credentialprovidersecrets.MakeDockerKeyring(pullSecrets, credentialprovider.UnionDockerKeyring{credentialprovider.NewDefaultDockerKeyring()})
	if err != nil {
		t.Fatalf("kubelet refuses the pull Secrets: %v", err)
	}
	found, _ := keyring.Lookup(repoToPull)
	var fromSecrets []credentialprovider.TrackedAuthConfig
	for _, c := range found {
		if c.Source != nil && c.Source.Secret != nil {
			fromSecrets = append(fromSecrets, c)
		}
	}
	return fromSecrets
}

// applyDefaultImageTag is kubelet's (pkg/kubelet/images/image_manager.go, unexported).
func applyDefaultImageTag(image string) (string, error) {
	_, tag, digest, err := parsers.ParseImageName(image)
	if err != nil {
		return "", err
	}
	if len(digest) == 0 && len(tag) > 0 && !strings.HasSuffix(image, ":"+tag) {
		image = image + ":" + tag
	}
	return image, nil
}

// authsKeys lists a pull Secret's auths keys, for failure messages (never values).
func authsKeys(s *corev1.Secret) []string {
	var cfg credentialprovider.DockerConfigJSON
	if err := json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg); err != nil {
		return []string{"<not JSON>"}
	}
	return slices.Sorted(maps.Keys(cfg.Auths))
}
