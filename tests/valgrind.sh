#!/bin/sh
# valgrind memcheck of a small simulation, a small training run and the inspection commands on
# the OpenMP-free build (BUILD, default build-noomp): any memory error or any definitely or
# indirectly lost block fails (exit 1). "Possibly lost" and "still reachable" blocks are not
# errors: HDF5's library state is deliberately never shut down (sim/h5io.c, snn_h5_init) and
# OpenBLAS keeps its own pools; with OpenMP, libgomp's thread pool would add more such blocks,
# which is why this uses the OMP=0 build.
set -eu
build=${1:-build-noomp}
bin="$build/spikesim"
dir=$(mktemp -d /tmp/spikesim-valgrind-XXXXXX)
trap 'rm -rf "$dir"' EXIT INT TERM
cat >"$dir/sim.yaml" <<'YAML'
name: vg_sim
seed: 1
data: {source: synthetic, synthetic_samples: 4}
model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2}
record: {samples: 2, membrane: true}
YAML
cat >"$dir/train.yaml" <<'YAML'
name: vg_train
seed: 1
data: {source: synthetic, synthetic_samples: 10}
model: {image_size: 16, patch: 4, dim: 16, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 2}
train: {epochs: 1, batch_size: 4, val_fraction: 0.2}
YAML
vg="valgrind --quiet --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --error-exitcode=99"
export OMP_WAIT_POLICY=passive
fail=0
# step NAME EXPECTED_EXIT COMMAND...: valgrind exits 99 on a memory error or leak
step() {
    name=$1
    want=$2
    shift 2
    rc=0
    $vg "$@" >"$dir/$name.out" 2>"$dir/$name.log" || rc=$?
    if [ "$rc" -eq "$want" ]; then
        echo "valgrind: $name: exit $rc, 0 errors, 0 definitely or indirectly lost"
    else
        echo "valgrind: $name: FAILED (exit $rc, expected $want)"
        cat "$dir/$name.log"
        fail=1
    fi
}
step simulation 0 "$bin" run "$dir/sim.yaml" -o "$dir/sim.h5" --quiet
step training 0 "$bin" run "$dir/train.yaml" -o "$dir/train.h5" --quiet
step resume 0 "$bin" run "$dir/train.yaml" -o "$dir/train2.h5" --quiet --set train.epochs=2 \
    --set "train.resume=$dir/train.last.h5"
step inspect 0 "$bin" inspect "$dir/sim.h5"
step raster 0 "$bin" raster "$dir/sim.h5" --population head_lif -o "$dir/r.svg"
step bad-config 2 "$bin" run "$dir/sim.yaml" -o "$dir/x.h5" --set model.heads=3
step bad-weights 1 "$bin" run "$dir/sim.yaml" -o "$dir/x.h5" --set "model.weights=$dir/sim.yaml"
exit $fail
