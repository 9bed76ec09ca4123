// Package keyring holds no code: its tests check the pull Secrets that
// image-prewarm builds against kubelet's own credential lookup
// (k8s.io/kubernetes pkg/credentialprovider, v1.37.2), so that every registry
// and image spelling our validation accepts gives kubelet exactly the user's
// credentials, and that the run's Secret keeps the credential hash kubelet
// compares before it lets a pod use an image another pod pulled (KEP-2535).
//
// It is a module of its own so that the main module never depends on
// k8s.io/kubernetes: cd test/keyring && go test -count=1 ./...
package keyring
