#!/bin/sh
# Runs every libFuzzer target of BUILD/fuzz for SECONDS each, one after the other (`make
# fuzz-smoke`, `make fuzz-run FUZZ_SECONDS=1800`; docs/fuzzing.md). Each target first replays
# its committed regression inputs (tests/fuzz/regressions/<target>/), then fuzzes from a copy of
# tests/fuzz/corpus/<target>/ in a temporary directory, so the repository is never modified
# (FUZZ_OUT=DIR keeps the grown corpora and any crash files in DIR/<target>/ instead).
# Exits non-zero on the first crash, leak, timeout, out-of-memory or sanitizer report.
set -eu
build=${1:-build-fuzz}
seconds=${2:-20}
here=$(dirname "$0")
tmp=$(mktemp -d)
# The targets' per-input files (fuzz_common.h), on tmpfs when there is one.
shm=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
trap 'rm -rf "$tmp" "$shm"' EXIT
export FUZZ_TMPDIR="$shm"
out=${FUZZ_OUT:-$tmp}
# Leaks are errors, except memory libhdf5 loses on malformed files (lsan.supp; the checkpoint
# target checks that spikesim closes every HDF5 object). An absurd allocation returns NULL as
# glibc's malloc does instead of stopping ASan: libhdf5 asks for sizes read from corrupt headers
# and handles the failure. UBSan and ASan stop at the first report (the build already has
# -fno-sanitize-recover=all).
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for target in config idx checkpoint; do
    bin=$build/fuzz/fuzz_$target
    dict=""
    [ -f "$here/$target.dict" ] && dict="-dict=$here/$target.dict"
    # libhdf5 allocates object-header sizes read from the file (4 GB from a corrupt one) and
    # fails cleanly after reading; the block is never touched. Let single requests up to
    # 16 GB through for the checkpoint target; the 2 GB limit on resident memory still holds.
    malloc_limit=""
    [ "$target" = checkpoint ] && malloc_limit="-malloc_limit_mb=16384"
    mkdir -p "$out/$target/corpus" "$out/$target/artifacts"
    regressions=$(ls "$here/regressions/$target" 2>/dev/null | wc -l)
    if [ "$regressions" -gt 0 ]; then
        echo "== fuzz_$target: replaying $regressions regression input(s)"
        "$bin" $malloc_limit -runs=1 -timeout=10 -rss_limit_mb=2048 "$here/regressions/$target"/* \
            >"$out/$target/regressions.log" 2>&1 ||
            { cat "$out/$target/regressions.log"; echo "fuzz_$target: regression input failed"; exit 1; }
    fi
    cp "$here/corpus/$target"/* "$out/$target/corpus/"
    echo "== fuzz_$target: ${seconds}s from $(ls "$here/corpus/$target" | wc -l) seed(s)"
    # shellcheck disable=SC2086
    if ! "$bin" $dict $malloc_limit -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
         -artifact_prefix="$out/$target/artifacts/" "$out/$target/corpus" >"$out/$target/fuzz.log" 2>&1; then
        tail -n 60 "$out/$target/fuzz.log"
        echo "fuzz_$target: FAILED (log above; inputs in $out/$target/artifacts/ when FUZZ_OUT is set)"
        exit 1
    fi
    grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$out/$target/fuzz.log" | tail -n 1
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$out/$target/fuzz.log" | tr '\n' ' '
    echo
done
echo "fuzz: every target ran ${seconds}s with no crash, leak, timeout or sanitizer report"
