#!/usr/bin/env bash
# Installs the real node's Debian packages when they are missing: runc (containerd's
# runtime), the CNI plugins (bridge, host-local, loopback) and iproute2 (the node's
# bridge). Debian's containerd is too old for kubelet 1.37, so containerd is built
# from source by build.sh instead. Prints nothing when everything is present.
set -euo pipefail
CNI_DIR=/usr/lib/cni
have() { command -v runc >/dev/null && command -v ip >/dev/null && [ -x "$CNI_DIR/bridge" ] && [ -x "$CNI_DIR/host-local" ] && [ -x "$CNI_DIR/loopback" ]; }
have && exit 0
echo "node-packages.sh: installing runc, containernetworking-plugins, iproute2" >&2
export DEBIAN_FRONTEND=noninteractive
sudo=; [ "$(id -u)" = 0 ] || sudo=sudo
$sudo apt-get update -qq >&2
$sudo apt-get install -y -qq --no-install-recommends runc containernetworking-plugins iproute2 >&2
have || { echo "node-packages.sh: runc or CNI plugins still missing" >&2; exit 1; }
