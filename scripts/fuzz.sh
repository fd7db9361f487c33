#!/usr/bin/env bash
# Builds the libFuzzer target for the OTLP decoders and runs it for FUZZ_SECONDS
# (default 60) on the committed seed corpus. Crashes land in fuzz/artifacts/.
#
# SwiftPM cannot link a libFuzzer executable (it renames the entry point libFuzzer's
# own main needs), so this compiles SluiceCore's sources and the harness into one
# module with swiftc, and the C targets with clang, all instrumented.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
seconds=${FUZZ_SECONDS:-60}
out=.build-fuzz
mkdir -p "$out/obj" fuzz/artifacts fuzz/corpus-work
cflags=(-O1 -g -fsanitize=fuzzer-no-link,address -ISources/COTLP/include -ISources/CSluiceShims/include -ISources/CBlockCache/include)
for c in $(find Sources/COTLP Sources/CSluiceShims Sources/CBlockCache -name '*.c'); do
    o="$out/obj/$(echo "$c" | tr '/' '_').o"
    [ "$o" -nt "$c" ] || clang "${cflags[@]}" -c "$c" -o "$o"
done
swiftc -O -g -sanitize=fuzzer,address -parse-as-library -module-name FuzzDecoders \
    -swift-version 6 \
    -I Sources/COTLP/include -I Sources/CBlockCache/include -I Sources/CProtobufC -I Sources/CZlib -I Sources/CZstd -I Sources/CSluiceShims/include \
    $(find Sources/SluiceOTLP -name '*.swift') fuzz/FuzzDecoders.swift \
    -use-ld=lld "$out"/obj/*.o -lprotobuf-c -lz -lzstd -lssl -lcrypto \
    -o "$out/fuzz-decoders"
# New inputs the run finds go to corpus-work; the committed seeds stay as they are.
"$out/fuzz-decoders" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix=fuzz/artifacts/ -print_final_stats=1 fuzz/corpus-work fuzz/corpus
