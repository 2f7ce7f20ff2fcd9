#!/bin/sh
# `make isa-test`: every instruction-set variant of spikesim gives byte-identical results.
#
# Three builds run the same small runs:
#   - the default build, whose target clones (sim/vec.h) take AVX-512 on a CPU that has it,
#     else AVX2, on every thread;
#   - the AVX2 build (-DSNN_NO_AVX512_CLONES: clones for AVX2 and the baseline only), on every
#     thread: on an AVX-512 CPU it runs the AVX2 variants the default build skips;
#   - the portable build (-DSNN_NO_CLONES: no target clones and no run-time AVX2 dispatch, every
#     kernel runs its SSE2/scalar instance: bit planes, BSA and SSA popcounts, Shiftmax, neuron
#     steps, BPTT, event-driven layers), on one thread.
# Every dataset that is a result must be equal, byte for byte (h5diff with no tolerance): logits
# and predictions, recorded spikes and membranes, per-neuron statistics, op counts, energy,
# metrics, trained parameters and the training losses. Only the wall times, the thread count
# and the creation date may differ.
#
#   tests/isa_test.sh [DEFAULT_BUILD [AVX2_BUILD [PORTABLE_BUILD]]]
fast=${1:-build}
avx2=${2:-build-avx2}
portable=${3:-build-portable}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
threads=$(nproc)
small="--set data.limit=48 --set record.samples=3"
train="--set data.train_limit=256 --set train.epochs=1"
# name|config|settings: the committed bsa and ssa checkpoints (trained, so Q and K fire: from
# scratch they barely do), evaluated and fine-tuned; bsa with membranes recorded and with rate
# encoding; bsa and ssa at N = 256 tokens (the long-sequence task, trained from scratch: the
# kernels' long-head paths); sdsa with the SEW residual (integer spike sums) and the three ANN models,
# trained
cases="bsa|configs/bench_bsa.yaml|--set record.membrane=true
bsa_train|configs/bench_bsa.yaml|$train
bsa_long|configs/longseq_bsa.yaml|--set data.synthetic_samples=192 --set train.epochs=1
ssa_long|configs/longseq_ssa.yaml|--set data.synthetic_samples=192 --set train.epochs=1
bsa_rate|configs/bench_bsa.yaml|--set data.encoding=rate
ssa_train|configs/bench_ssa.yaml|$train
sdsa_sew|configs/fmnist_sdsa.yaml|$train --set model.residual=sew
softmax|configs/fmnist_softmax.yaml|$train
cat|configs/fmnist_cat.yaml|$train
primal|configs/fmnist_primal.yaml|$train"
# run BUILD NAME CFG THREADS OUT EXTRA...: one run of one build, its log shown if it fails
run() {
    b=$1 name=$2 cfg=$3 t=$4 out=$5
    shift 5
    "$b/spikesim" run "$cfg" "$@" --threads "$t" -o "$out" >"$out.log" 2>&1 ||
        { cat "$out.log"; echo "isa-test: $name: $b failed"; return 1; }
}
echo "$cases" | while IFS='|' read -r name cfg extra; do
    # shellcheck disable=SC2086
    run "$fast" "$name" "$cfg" "$threads" "$dir/$name.fast.h5" $small $extra || exit 1
    # shellcheck disable=SC2086
    run "$avx2" "$name" "$cfg" "$threads" "$dir/$name.avx2.h5" $small $extra || exit 1
    # shellcheck disable=SC2086
    run "$portable" "$name" "$cfg" 1 "$dir/$name.portable.h5" $small $extra || exit 1
    for other in avx2 portable; do
        for obj in /outputs /nodes /ops /energy /metrics /parameters /training/history/train_loss \
                   /training/history/train_accuracy /training/history/val_accuracy; do
            # objects a run does not write (no training: no history) must be missing from both
            in_fast=$(h5ls "$dir/$name.fast.h5$obj" >/dev/null 2>&1 && echo 1 || echo 0)
            in_other=$(h5ls "$dir/$name.$other.h5$obj" >/dev/null 2>&1 && echo 1 || echo 0)
            if [ "$in_fast" != "$in_other" ]; then
                echo "isa-test: $name: $obj is in one file only ($other)"; exit 1
            fi
            [ "$in_fast" = 1 ] || continue
            if ! h5diff -q "$dir/$name.fast.h5" "$dir/$name.$other.h5" "$obj" "$obj"; then
                h5diff -r "$dir/$name.fast.h5" "$dir/$name.$other.h5" "$obj" "$obj" | head -20
                echo "isa-test: $name: $obj differs between the default and the $other build"; exit 1
            fi
        done
    done
    echo "isa-test: $name: default build ($threads threads), AVX2 build ($threads threads) and portable build (1 thread) byte-identical"
done || exit 1
