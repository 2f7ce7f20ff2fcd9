#!/bin/sh
# Runs every cmocka test binary in BUILD/tests from the repository root and prints one
# closing line "N passed, N failed". Exits non-zero if any binary failed.
build=${1:-build}
passed=0
failed=0
failed_names=""
for t in "$build"/tests/test_*; do
    case "$t" in *.o|*.d) continue ;; esac
    [ -x "$t" ] || continue
    if "$t"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        failed_names="$failed_names $(basename "$t")"
    fi
done
[ "$failed" -eq 0 ] || echo "failed test binaries:$failed_names"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
