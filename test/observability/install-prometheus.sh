#!/usr/bin/env bash
# Installs Prometheus and promtool from Debian's prometheus package into a cache directory,
# without installing the package (no system service, nothing under /usr, /etc or /var),
# and prints the directory holding the prometheus and promtool binaries.
#
#   bin="$(test/observability/install-prometheus.sh)"; "$bin/promtool" --version
#
# Cache: ${IMAGE_PREWARM_CACHE:-$HOME/.cache/image-prewarm}/prometheus-<version>. A second
# run finds it and returns at once. Needs apt-get and dpkg (Debian or Ubuntu); runs
# `apt-get update` only when apt does not know the package yet. Concurrent runs wait for
# each other on a lock file in the cache.
set -euo pipefail

cache="${IMAGE_PREWARM_CACHE:-$HOME/.cache/image-prewarm}"
mkdir -p "$cache"
exec 9>"$cache/.prometheus.lock"
flock 9

# Fast path: an installed version is reused without asking apt anything.
for dir in "$cache"/prometheus-*/usr/bin; do
	if [[ -x "$dir/prometheus" && -x "$dir/promtool" && -e "$dir/../../.complete" ]]; then
		echo "$dir"
		exit 0
	fi
done

for tool in apt-get apt-cache dpkg; do
	command -v "$tool" >/dev/null || { echo "install-prometheus: $tool not found (Debian or Ubuntu needed)" >&2; exit 1; }
done

candidate() { apt-cache policy prometheus 2>/dev/null | awk '/Candidate:/ {print $2}'; }
version="$(candidate)"
if [[ -z "$version" || "$version" == "(none)" ]]; then
	apt-get update -qq >&2
	version="$(candidate)"
fi
if [[ -z "$version" || "$version" == "(none)" ]]; then
	echo "install-prometheus: apt knows no prometheus package" >&2
	exit 1
fi

dest="$cache/prometheus-${version//[^A-Za-z0-9.+-]/_}"
work="$(mktemp -d "$cache/.prometheus-download.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# apt-get download writes into the current directory (as root it warns that the _apt
# sandbox user cannot write there; harmless).
(cd "$work" && apt-get download -q "prometheus=$version") >&2
dpkg -x "$work"/prometheus_*.deb "$work/root"
"$work/root/usr/bin/promtool" --version >/dev/null
touch "$work/root/.complete"
rm -rf "$dest"
mv "$work/root" "$dest"
echo "$dest/usr/bin"
