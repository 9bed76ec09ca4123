#!/usr/bin/env bash
# Generates the webhook's CA and serving certificate for the chart's existingSecret TLS
# mode. Needs only Go; see README.md in this directory.
#
#   certs/generate.sh [-days N] [-secret NAME] SERVICE NAMESPACE OUTDIR
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
# Built with -C rather than run after a cd, so a relative OUTDIR means what the caller meant.
go build -C "$root" -o "$bin/gencert" ./certs/gencert
"$bin/gencert" "$@"
