#!/bin/sh
# `make isa-test`: the AVX2 build and the portable build give byte-identical results.
#
# The portable build (-DSNN_NO_CLONES, sim/vec.h) has no target clones and no run-time AVX2
# dispatch: every kernel runs its SSE2/scalar instance (bit planes, BSA and SSA popcounts,
# Shiftmax, neuron steps, BPTT, event-driven layers). Both builds train and evaluate the same
# small runs, the AVX2 build on every thread and the portable one on one thread, and every
# dataset that is a result must be equal, byte for byte (h5diff with no tolerance): logits and
# predictions, recorded spikes and membranes, per-neuron statistics, op counts, energy,
# metrics, trained parameters and the training losses. Only the wall times, the thread count
# and the creation date may differ.
#
#   tests/isa_test.sh [FAST_BUILD [PORTABLE_BUILD]]
fast=${1:-build}
portable=${2:-build-portable}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
threads=$(nproc)
small="--set data.limit=48 --set record.samples=3"
train="--set data.train_limit=256 --set train.epochs=1"
# name|config|settings: the committed bsa and ssa checkpoints (trained, so Q and K fire: from
# scratch they barely do), evaluated and fine-tuned; bsa with membranes recorded and with rate
# encoding; sdsa with the SEW residual (integer spike sums) and the three ANN models, trained
cases="bsa|configs/bench_bsa.yaml|--set record.membrane=true
bsa_train|configs/bench_bsa.yaml|$train
bsa_rate|configs/bench_bsa.yaml|--set data.encoding=rate
ssa_train|configs/bench_ssa.yaml|$train
sdsa_sew|configs/fmnist_sdsa.yaml|$train --set model.residual=sew
softmax|configs/fmnist_softmax.yaml|$train
cat|configs/fmnist_cat.yaml|$train
primal|configs/fmnist_primal.yaml|$train"
echo "$cases" | while IFS='|' read -r name cfg extra; do
    # shellcheck disable=SC2086
    "$fast/spikesim" run "$cfg" $small $extra --threads "$threads" -o "$dir/$name.fast.h5" \
        >"$dir/$name.fast.log" 2>&1 || { cat "$dir/$name.fast.log"; echo "isa-test: $name: the AVX2 build failed"; exit 1; }
    # shellcheck disable=SC2086
    "$portable/spikesim" run "$cfg" $small $extra --threads 1 -o "$dir/$name.portable.h5" \
        >"$dir/$name.portable.log" 2>&1 || { cat "$dir/$name.portable.log"; echo "isa-test: $name: the portable build failed"; exit 1; }
    for obj in /outputs /nodes /ops /energy /metrics /parameters /training/history/train_loss \
               /training/history/train_accuracy /training/history/val_accuracy; do
        # objects a run does not write (no training: no history) must be missing from both
        in_fast=$(h5ls "$dir/$name.fast.h5$obj" >/dev/null 2>&1 && echo 1 || echo 0)
        in_port=$(h5ls "$dir/$name.portable.h5$obj" >/dev/null 2>&1 && echo 1 || echo 0)
        if [ "$in_fast" != "$in_port" ]; then
            echo "isa-test: $name: $obj is in one file only"; exit 1
        fi
        [ "$in_fast" = 1 ] || continue
        if ! h5diff -q "$dir/$name.fast.h5" "$dir/$name.portable.h5" "$obj" "$obj"; then
            h5diff -r "$dir/$name.fast.h5" "$dir/$name.portable.h5" "$obj" "$obj" | head -20
            echo "isa-test: $name: $obj differs between the AVX2 and the portable build"; exit 1
        fi
    done
    echo "isa-test: $name: AVX2 build ($threads threads) and portable build (1 thread) byte-identical"
done || exit 1
