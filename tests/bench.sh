#!/bin/sh
# `make bench`: spikesim's benchmark of the five Fashion-MNIST bench models
# (configs/bench_{bsa,ssa,softmax,cat,primal}.yaml; bsa also at two firing-rate levels), every
# attention kernel alone, then the PyTorch reference of the same models measured in the same run
# on the same machine, and one table of ratios. The PyTorch side needs Debian's python3-torch
# (not a project dependency); without it the comparison is skipped with a message.
#
#   tests/bench.sh [BUILD [THREADS]]
#
# About 10-15 minutes on two cores: each figure is the best of 2-3 short runs, on 2000 images
# (throughput), 200 (batch 1) or 2 training steps of 64; PyTorch's inference runs on 512.
build=${1:-build}
threads=${2:-$(nproc)}
models="bsa ssa softmax cat primal"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
echo "make bench: spikesim on ${models}, $threads threads (sample counts and repetitions are on each line)"
for k in $models; do
    extra=""
    [ "$k" = bsa ] && extra="--rate-levels"
    # shellcheck disable=SC2086
    "$build/spikesim" bench "configs/bench_$k.yaml" --threads "$threads" $extra | tee "$dir/c_$k" || exit 1
done
# every attention kernel alone, N = 64 .. 4096: times and growth exponents
"$build/spikesim" bench-attention || exit 1
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "PyTorch reference: skipped (python3-torch is not installed: apt-get install python3-torch)"
    exit 0
fi
echo "PyTorch reference (tests/reference/bench_ref.py, torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'); inference on 512 images, batch 1 on 200; each phase in its own process):"
for k in $models; do
    /usr/bin/python3 tests/reference/bench_ref.py --config "configs/bench_$k.yaml" --threads "$threads" \
        >"$dir/r_$k" || exit 1
    echo "  $k: $(tr '\n' ' ' <"$dir/r_$k")"
done

# spikesim's figures, parsed from its report; PyTorch's, from its key/value lines
cval() { sed -n "$2" "$dir/c_$1" | head -n 1; }
rval() { awk -v k="$2" '$1 == k {v = $2} END {print v}' "$dir/r_$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "x%.2f", a / b; else print "n/a" }'; }
echo "spikesim / PyTorch, samples/s (same machine, same run; throughput and training on $threads threads, batch 1 on one):"
printf '  %-8s %-30s %-30s %-30s %s\n' model "inference, batch 1" "inference throughput" "training, batch 64" "peak RSS MiB inference, training"
for k in $models; do
    c_b1=$(cval "$k" 's/.*batch 1, 1 thread *: [0-9.]* ms\/sample (\([0-9.]*\) samples\/s.*/\1/p')
    c_inf=$(cval "$k" 's/.*throughput, [0-9]* threads* *: *\([0-9.]*\) samples\/s.*/\1/p')
    c_train=$(cval "$k" 's/.*training, batch [0-9]* *: *\([0-9.]*\) samples\/s.*/\1/p')
    c_rss_i=$(cval "$k" 's/.*peak RSS *: inference \([0-9.]*\) MiB.*/\1/p')
    c_rss_t=$(cval "$k" 's/.*peak RSS *: inference .* training \([0-9.]*\) MiB.*/\1/p')
    r_b1=$(rval "$k" ref_infer_batch1_1t)
    r_inf=$(awk '$1 ~ /^ref_infer_(Nt|1t)$/ {v = $2} END {print v}' "$dir/r_$k")
    r_train=$(awk '$1 ~ /^ref_train_(Nt|1t)$/ {v = $2} END {print v}' "$dir/r_$k")
    printf '  %-8s %-30s %-30s %-30s %s\n' "$k" \
        "$c_b1 vs $r_b1 $(ratio "$c_b1" "$r_b1")" \
        "$c_inf vs $r_inf $(ratio "$c_inf" "$r_inf")" \
        "$c_train vs $r_train $(ratio "$c_train" "$r_train")" \
        "$c_rss_i, $c_rss_t vs $(rval "$k" ref_rss_infer_mib), $(rval "$k" ref_rss_train_mib)"
done
frs=""
for k in $models; do
    fr=$(rval "$k" ref_fr)
    [ -n "$fr" ] && frs="$frs $k $fr"
done
echo "  throughput: spikesim runs a spiking model one sample per thread, PyTorch and spikesim's ANN"
echo "  models batches of 64. PyTorch's firing rate (64 images):$frs; the ANN models run random weights."
echo "make bench: $(($(date +%s) - start)) s"
