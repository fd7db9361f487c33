#!/usr/bin/env bash
# Regenerates the protobuf-c C code in Sources/COTLP from proto/.
# Usage: scripts/generate-proto.sh [OUTDIR]   (default: Sources/COTLP)
# Headers land in OUTDIR/include/<proto path>.pb-c.h, sources in OUTDIR/generated/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/Sources/COTLP}
command -v protoc-c >/dev/null || { echo "protoc-c not found: apt-get install protobuf-c-compiler" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$root/proto"
protos=$(find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
# shellcheck disable=SC2086
protoc-c --proto_path=. --c_out="$tmp" $protos
rm -rf "$out/generated" "$out/include/opentelemetry" "$out/include/google"
mkdir -p "$out/generated" "$out/include"
(cd "$tmp" && find . -name '*.pb-c.h' | while read -r h; do mkdir -p "$out/include/$(dirname "$h")"; cp "$h" "$out/include/$h"; done)
(cd "$tmp" && find . -name '*.pb-c.c' | while read -r c; do mkdir -p "$out/generated/$(dirname "$c")"; cp "$c" "$out/generated/$c"; done)
