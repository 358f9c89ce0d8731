#!/usr/bin/env bash
# Fuzz the packet code with libFuzzer + ASan + UBSan.
#   tests/fuzz/run.sh SECONDS [TARGET...]     (targets: split gro parse csum frame dgram aead_open xform; default all)
# Each target is built with clang from csrc/packet alone (aead_*: from
# csrc/transform with OpenSSL 3 libcrypto; xform: the transform stage of
# csrc/pump with the few files it needs) and run for SECONDS
# over a scratch copy of its committed seed corpus (tests/fuzz/corpus/TARGET;
# the committed corpus is never modified). Exits non-zero on any finding: the
# crashing input is kept under tests/fuzz/findings/ and its path printed.
# Environment: CLANG (default clang). KEEP_GROWN=1: after a clean run, the
# inputs that reached code the committed corpus does not (libFuzzer's
# -merge=1) are copied to tests/fuzz/grown/TARGET/ to review and commit as
# found-*. Targets run one after another, one process each, so a shared
# machine is not swamped.
set -euo pipefail

secs=${1:?usage: tests/fuzz/run.sh SECONDS [TARGET...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cc=${CLANG:-clang}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(split gro parse csum frame dgram aead_open xform)
command -v "$cc" >/dev/null || { echo "run.sh: $cc not found (install clang)" >&2; exit 2; }

# The scratch corpus's inputs that add coverage to the committed one, into grown/TARGET.
keep_grown() {
    local t=$1 merged="$work/merged-$1" n=0 f
    mkdir -p "$merged"
    cp "$here/corpus/$t"/* "$merged/"
    "$work/$t" -merge=1 -timeout=10 -rss_limit_mb=2048 -max_len=70000 "$merged" "$work/corpus-$t" \
        > "$work/$t.merge.log" 2>&1 || { tail -20 "$work/$t.merge.log"; return 1; }
    for f in "$merged"/*; do
        [ -e "$here/corpus/$t/$(basename "$f")" ] && continue
        mkdir -p "$here/grown/$t"
        cp "$f" "$here/grown/$t/"
        n=$((n + 1))
    done
    echo "   $n new input(s) reaching new code: $here/grown/$t/"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
    [ -f "$here/fuzz_$t.c" ] || { echo "run.sh: no target '$t'" >&2; exit 2; }
    case "$t" in
        aead_*) code=(-DTP_HAVE_LIBCRYPTO -I "$root/csrc/transform" "$root"/csrc/transform/tp_aead.c "$root"/csrc/transform/tp_replay.c -lcrypto) ;;
        xform) code=(-I "$root/csrc/pump" -I "$root/csrc/packet" -I "$root/tunpump/include"
                     "$root"/csrc/pump/{tp_xform,tp_batch,tp_ring}.c "$root"/csrc/packet/{tp_vnet,tp_csum,tp_parse,tp_l34}.c) ;;
        *) code=(-I "$root/csrc/packet" "$root"/csrc/packet/*.c) ;;
    esac
    "$cc" -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
        -I "$here" "$here/fuzz_$t.c" "${code[@]}" -o "$work/$t"
    mkdir -p "$work/corpus-$t" "$work/crash-$t"
    cp "$here/corpus/$t"/* "$work/corpus-$t/"
    echo "== $t: ${secs}s"
    if ! "$work/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=70000 \
            -print_final_stats=1 -artifact_prefix="$work/crash-$t/" "$work/corpus-$t" \
            > "$work/$t.log" 2>&1; then
        mkdir -p "$here/findings"
        cp "$work/crash-$t"/* "$here/findings/" 2>/dev/null || true
        tail -40 "$work/$t.log"
        echo "FINDING in $t: inputs kept in $here/findings/ (replay: build with tests/fuzz/driver.c)" >&2
        status=1
        continue
    fi
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "$work/$t.log" | sed "s/^/   /"
    if [ "${KEEP_GROWN:-0}" = 1 ]; then keep_grown "$t" || status=1; fi
done
exit $status
