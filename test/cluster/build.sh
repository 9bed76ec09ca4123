#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok), the real node's kubelet, containerd (with its runc shim
# and ctr), the OCI registry (distribution) and helm from the Go module proxy into a cache
# outside the repository, and prints the bin directory. A second run finds them and
# returns at once. runc and the CNI plugins come from Debian packages (node-packages.sh, run first).
#
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod points every
# k8s.io/<staging> module at ./staging. A small wrapper module maps each of them to its
# published v0.x version instead. etcd is built the same way through etcdmain.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
ETCD_VERSION=${ETCD_VERSION:-3.7.3}
KWOK_VERSION=${KWOK_VERSION:-0.8.0}
HELM_VERSION=${HELM_VERSION:-3.22.0}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-2.4.2}
REGISTRY_VERSION=${REGISTRY_VERSION:-3.1.2}
CACHE=${IMAGE_PREWARM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/image-prewarm}
KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_containerd-${CONTAINERD_VERSION}_registry-${REGISTRY_VERSION}"
BIN="$CACHE/$KEY/bin"
WANT=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kwok helm
  containerd containerd-shim-runc-v2 ctr registry)

bash "$(dirname "$0")/node-packages.sh"

# HELM_BUILD names how helm is built (build_helm): change it with the flags, so a cached
# helm is rebuilt without throwing away the rest of the cache (kubernetes takes minutes).
HELM_BUILD=release-ldflags-1
helm_current() { [ -x "$BIN/helm" ] && [ -e "$BIN/.helm-$HELM_BUILD" ]; }

have_all() {
  for b in "${WANT[@]}"; do [ -x "$BIN/$b" ] || return 1; done
  helm_current
}
if have_all; then echo "$BIN"; exit 0; fi

log() { echo "build.sh: $*" >&2; }
mkdir -p "$BIN"
# Test packages may start at once on a cold machine: one builds, the others wait.
exec 9>"$CACHE/$KEY/.lock"
flock 9
if have_all; then echo "$BIN"; exit 0; fi
export GOFLAGS=-mod=mod CGO_ENABLED=0 GOTOOLCHAIN=local
started=$(date +%s)

build_kubernetes() {
  local w="$CACHE/$KEY/src/kubernetes" staging_minor="0.${K8S_VERSION#1.}"
  mkdir -p "$w"
  local kmod
  kmod=$(cd "$w" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  {
    echo "module image-prewarm.local/kubernetes-wrapper"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    # Every staging module the kubernetes go.mod requires at v0.0.0 → its published version.
    grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$kmod" | awk -v v="v$staging_minor" '{print "replace " $1 " => " $1 " " v}'
  } > "$w/go.mod"
  log "building kubernetes v$K8S_VERSION (cold: several minutes)"
  (cd "$w" && go build -trimpath -ldflags "-s -w \
      -X k8s.io/component-base/version.gitVersion=v$K8S_VERSION \
      -X k8s.io/client-go/pkg/version.gitVersion=v$K8S_VERSION" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet)
}

build_etcd() {
  local w="$CACHE/$KEY/src/etcd"
  mkdir -p "$w"
  cat > "$w/go.mod" <<MOD
module image-prewarm.local/etcd-wrapper
go 1.26.0
require go.etcd.io/etcd/server/v3 v$ETCD_VERSION
MOD
  cat > "$w/main.go" <<'GO'
// Command etcd runs etcd's own entry point; a wrapper module because etcd's main
// package lives in a module that is not meant to be built from the proxy.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  log "building etcd v$ETCD_VERSION"
  (cd "$w" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" .)
}

build_installable() { # name module/path version [build tags] [extra ldflags]
  log "building $1 $3"
  local w="$CACHE/$KEY/src/$1"
  mkdir -p "$w"
  GOBIN="$w" GOFLAGS= go install -trimpath -tags "${4:-}" -ldflags "-s -w ${5:-}" "$2@v$3"
  mv "$w/$1" "$BIN/$1"
}

# helm with the -X flags of its release Makefile: its version, and the Kubernetes version
# its client-go implies (major+1, minor), which `helm template` and `helm lint` assume
# without --kube-version. Plain `go install` leaves v1.20.0, below most charts' kubeVersion.
# The proxy's zip carries no git metadata, so gitCommit stays empty.
build_helm() {
  local m=helm.sh/helm/v3 gomod client major minor
  gomod=$(cd "$CACHE" && GOFLAGS= go mod download -json "$m@v$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  client=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")
  IFS=. read -r major minor _ <<< "${client#v}"
  major=$((major + 1))
  build_installable helm "$m/cmd/helm" "$HELM_VERSION" "" "-X $m/internal/version.version=v$HELM_VERSION \
    -X $m/internal/version.metadata= -X $m/internal/version.gitTreeState=clean \
    -X $m/pkg/lint/rules.k8sVersionMajor=$major -X $m/pkg/lint/rules.k8sVersionMinor=$minor \
    -X $m/pkg/chartutil.k8sVersionMajor=$major -X $m/pkg/chartutil.k8sVersionMinor=$minor"
  touch "$BIN/.helm-$HELM_BUILD"
}

build_containerd() {
  local tags="no_btrfs no_devmapper no_zfs" m=github.com/containerd/containerd/v2/cmd
  for c in containerd containerd-shim-runc-v2 ctr; do
    [ -x "$BIN/$c" ] || build_installable "$c" "$m/$c" "$CONTAINERD_VERSION" "$tags"
  done
}

[ -x "$BIN/etcd" ] || build_etcd
[ -x "$BIN/kwok" ] || build_installable kwok sigs.k8s.io/kwok/cmd/kwok "$KWOK_VERSION"
helm_current || build_helm
[ -x "$BIN/registry" ] || build_installable registry github.com/distribution/distribution/v3/cmd/registry "$REGISTRY_VERSION"
build_containerd
[ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kubelet" ] || build_kubernetes
have_all || { log "missing binaries in $BIN"; exit 1; }
log "built in $(( $(date +%s) - started ))s into $BIN"
echo "$BIN"
