#!/usr/bin/env bash
# Regenerates the protobuf-c C code in Sources/COTLP from proto/.
# Usage: scripts/generate-proto.sh [OUTDIR]   (default: Sources/COTLP)
# Headers land in OUTDIR/include/<proto path>.pb-c.h, sources in OUTDIR/generated/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/Sources/COTLP}
command -v protoc-c >/dev/null || { echo "protoc-c not found: apt-get install protobuf-c-compiler" >&2; exit 1; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
# Strings are generated as bytes (protobuf-c's string_as_bytes field option): a
# length, not a NUL terminator, so a value holding U+0000 arrives whole, and no
# strlen per string (docs/otlp-decoding.md). The copies in $tmp/proto carry the
# option; proto/ stays as published. The option's definition needs
# google/protobuf/descriptor.proto (Debian: libprotobuf-dev).
[ -f /usr/include/google/protobuf/descriptor.proto ] || { echo "descriptor.proto not found: apt-get install libprotobuf-dev" >&2; exit 1; }
mkdir -p "$tmp/proto" "$tmp/out"
cp -r "$root/proto/." "$tmp/proto/"
cd "$tmp/proto"
protos=$(find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort)
for p in $protos; do
  python3 - "$p" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
# Every scalar string field (repeated or not, map values excluded) gets the option.
text, n = re.subn(r'^(\s*(?:repeated\s+)?string\s+\w+\s*=\s*\d+)\s*;', r'\1 [(pb_c_field).string_as_bytes = true];', text, flags=re.M)
if n:
    text = re.sub(r'^(package [^;]+;)', r'\1\nimport "protobuf-c/protobuf-c.proto";', text, count=1, flags=re.M)
open(path, "w").write(text)
PY
done
# shellcheck disable=SC2086
protoc-c --proto_path=. --proto_path=/usr/include --c_out="$tmp/out" $protos
tmp="$tmp/out"
rm -rf "$out/generated" "$out/include/opentelemetry" "$out/include/google"
mkdir -p "$out/generated" "$out/include"
(cd "$tmp" && find . -name '*.pb-c.h' | while read -r h; do mkdir -p "$out/include/$(dirname "$h")"; cp "$h" "$out/include/$h"; done)
(cd "$tmp" && find . -name '*.pb-c.c' | while read -r c; do mkdir -p "$out/generated/$(dirname "$c")"; cp "$c" "$out/generated/$c"; done)
