package jobs

import (
	"bytes"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BuildSecret builds the run's ephemeral pull Secret. It is the only object
// that ever holds the credentials; the Jobs reference it by name.
func BuildSecret(ref RunRef, dockerConfigJSON []byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      SecretName(ref.RunID),
			Namespace: ref.Namespace,
			Labels:    Labels(ref),
		},
		Type: corev1.SecretTypeDockerConfigJson,
		// Cloned so that a caller wiping its buffer after use does not
		// change (or see changes to) the Secret being sent.
		Data: map[string][]byte{corev1.DockerConfigJsonKey: bytes.Clone(dockerConfigJSON)},
	}
}
