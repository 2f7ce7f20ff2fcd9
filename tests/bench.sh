#!/bin/sh
# `make bench`: spikesim's benchmark, then the PyTorch reference measured in the same run on the
# same machine, and the ratios. The PyTorch side needs Debian's python3-torch (not a project
# dependency); without it the comparison is skipped with a message.
build=${1:-build}
threads=${2:-$(nproc)}
out=$(mktemp)
"$build/spikesim" bench configs/bench_bsa.yaml --threads "$threads" | tee "$out" || exit 1
# every attention kernel alone, N = 64 .. 4096: times and growth exponents
"$build/spikesim" bench-attention || exit 1
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "PyTorch reference: skipped (python3-torch is not installed: apt-get install python3-torch)"
    rm -f "$out"
    exit 0
fi
echo "PyTorch reference (tests/reference/bench_ref.py, torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)')):"
ref=$(/usr/bin/python3 tests/reference/bench_ref.py --threads "$threads") || exit 1
echo "$ref" | sed 's/^/  /'
# spikesim figures, parsed from its report
c_b1=$(sed -n 's/.*batch 1, 1 thread *: *\([0-9.]*\) samples.*/\1/p' "$out")
c_inf=$(sed -n 's/.*throughput, [0-9]* threads*: *\([0-9.]*\) samples.*/\1/p' "$out")
c_train=$(sed -n 's/.*training throughput *: *\([0-9.]*\) samples.*/\1/p' "$out")
r_b1=$(echo "$ref" | awk '$1 == "ref_infer_batch1_1t" {print $2}')
r_inf=$(echo "$ref" | awk '$1 ~ /^ref_infer_(Nt|1t)$/ {v = $2} END {print v}')
r_train=$(echo "$ref" | awk '$1 ~ /^ref_train_(Nt|1t)$/ {v = $2} END {print v}')
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "x%.2f", a / b; else print "n/a" }'; }
echo "spikesim / PyTorch (same machine, same run, $threads threads):"
echo "  inference, batch 1 : $c_b1 vs $r_b1 samples/s  $(ratio "$c_b1" "$r_b1")"
echo "  inference, batch 64: $c_inf vs $r_inf samples/s  $(ratio "$c_inf" "$r_inf")"
echo "  training           : $c_train vs $r_train samples/s  $(ratio "$c_train" "$r_train")"
rm -f "$out"
