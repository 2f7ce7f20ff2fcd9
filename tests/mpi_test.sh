#!/bin/sh
# What only an MPI job can check (`make mpi-test`; the cmocka suite needs no MPI). With BUILD's
# spikesim built by `make MPI=1`, on this machine (mpirun -np 2 --oversubscribe, one OpenMP
# thread per rank):
#   1. data-parallel training: 1 rank and 2 ranks with the same global batch give the same
#      training losses and weights within the tolerance below, and the 2-rank job leaves only
#      rank 0's three files (run, best and last checkpoints); when strace works, rank 1 is
#      traced and opens no file for writing but Open MPI's own session files;
#   2. resume: a 2-rank run resumed from its epoch-1 checkpoint ends bit-identical to the
#      uninterrupted 2-rank run (parameters, optimizer moments, state, loss history);
#   3. distributed compare: 2 ranks share the runs round-robin (each rank's own log names only
#      its runs) and write the same summary.csv as 1 rank except the timing columns;
#   4. a compare run failing on rank 1: the job exits 1, rank 0 prints rank 1's error once,
#      and no report is written.
#
# Tolerance (1 vs 2 ranks): a rank holds half of every batch, so a sum over the batch (a
# BLAS weight gradient, a BatchNorm statistic) is two half sums added, not one sum in row order:
# the same numbers rounded in another order, about 1 ulp apart. The losses are compared with
# relative tolerance 1e-4 and the weights (2-D *.weight, pos, BatchNorm weights) with absolute
# tolerance 1e-5 (measured: at most 5e-7 after 2 epochs). Biases of the Linear layers that
# feed a BatchNorm are not compared, nor BatchNorm running means: BatchNorm subtracts the batch
# mean, so such a bias's exact gradient is 0 and what the trainer computes is rounding noise,
# which AdamW divides by its own magnitude into steps of size lr; those biases (and the running
# means that follow them) random-walk differently in every summation order.
#   tests/mpi_test.sh [BUILD]      (default build-mpi)
build=${1:-build-mpi}
bin=$build/spikesim
[ -x "$bin" ] || { echo "mpi_test: FAILED: no $bin (make MPI=1)"; exit 1; }
command -v mpirun >/dev/null 2>&1 || { echo "mpi_test: FAILED: no mpirun (make MPI=1 deps)"; exit 1; }
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
# Open MPI refuses root unless told; CI containers run as root
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
mpirun="mpirun --oversubscribe"
tmp=$(mktemp -d /tmp/spikesim-mpi-test.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
fail() { echo "mpi_test: FAILED: $*"; exit 1; }
run() { # run NP OUT_DIR SPIKESIM_ARGS...
    np=$1 dir=$2
    shift 2
    mkdir -p "$dir"
    $mpirun -np "$np" "$bin" "$@" >"$dir.log" 2>&1 || { cat "$dir.log"; fail "mpirun -np $np spikesim $*"; }
}
# Bit-identical objects: h5diff without a tolerance.
same() { # same A B OBJECT
    h5diff "$1" "$2" "$3" "$3" >/dev/null || fail "$3 differs between $1 and $2"
}

cat >"$tmp/tiny.yaml" <<'YAML'
name: tiny
seed: 1
data: {source: synthetic, synthetic_samples: 128}
model: {image_size: 16, patch: 4, dim: 32, heads: 2, blocks: 1, mlp_ratio: 2, timesteps: 4,
        init_std: 0.3, attention: {kind: bsa}}
train: {epochs: 2, batch_size: 16, lr: 0.005}
YAML

# ---- 1. one rank against two ----------------------------------------------------------------
run 1 "$tmp/one" run "$tmp/tiny.yaml" -o "$tmp/one/run.h5" --quiet
run 2 "$tmp/two" run "$tmp/tiny.yaml" -o "$tmp/two/run.h5" --quiet
files=$(cd "$tmp/two" && ls -A | tr '\n' ' ')
[ "$files" = "run.best.h5 run.h5 run.last.h5 " ] || fail "2-rank run left: $files"
a=$tmp/one/run.last.h5 b=$tmp/two/run.last.h5
h5diff --relative=1e-4 "$a" "$b" /training/history/train_loss /training/history/train_loss >/dev/null ||
    fail "training losses differ by more than 1e-4 (relative) between 1 and 2 ranks"
if h5diff "$a" "$b" /training/history/train_loss /training/history/train_loss >/dev/null; then
    loss_note="bit-identical"
else
    loss_note="within 1e-4"
fi
n=0
for p in $(h5ls -r "$a/parameters" | awk '{print $1}'); do
    case "$p" in
    *_bn.weight | /pos | *.weight) ;;
    *) continue ;;
    esac
    h5diff -d 1e-5 "$a" "$b" "/parameters$p" "/parameters$p" >/dev/null ||
        fail "/parameters$p differs by more than 1e-5 between 1 and 2 ranks"
    n=$((n + 1))
done
[ "$n" -ge 8 ] || fail "only $n weight tensors compared"

# only rank 0 writes: trace rank 1's file calls (when strace works here; containers may forbid
# ptrace) and allow only Open MPI's own session files and libxsmm's lock file (libxsmm 1.17
# creates an empty /tmp/.libxsmm.<uid> when it starts, to learn whether it is the only instance,
# and removes it at exit: no output of ours)
if strace -o /dev/null true >/dev/null 2>&1; then
    mkdir -p "$tmp/traced"
    # shellcheck disable=SC2016
    $mpirun -np 2 sh -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then
            exec strace -f -e trace=open,openat,creat,mkdir,rename,unlink -o "$0" "$@"; fi
        exec "$@"' "$tmp/rank1.trace" "$bin" run "$tmp/tiny.yaml" -o "$tmp/traced/run.h5" --quiet \
        >"$tmp/traced.log" 2>&1 || { cat "$tmp/traced.log"; fail "traced 2-rank run"; }
    writes=$(grep -E 'O_WRONLY|O_RDWR|O_CREAT|creat\(|mkdir\(|rename\(|unlink\(' "$tmp/rank1.trace" |
        grep -v -E '"/(dev|proc|sys)/|/ompi\.|open_mpi|pmix|vader_segment|"/tmp/\.libxsmm\.[0-9]+"')
    [ -z "$writes" ] || fail "rank 1 wrote files: $writes"
    trace_note="rank 1 wrote no file (strace)"
else
    trace_note="rank 1's files not traced (no strace)"
fi

# ---- 2. resume in two ranks -----------------------------------------------------------------
# run.best.h5 holds epoch 1 when epoch 1 validated best: check it, it is what makes it the
# epoch-1 checkpoint this test resumes from
h5dump -d /training/state -y "$tmp/two/run.best.h5" | tr -d ' \n' | grep -q '{1,' ||
    fail "the 2-rank run's best epoch is not 1 any more: pick another seed in tiny.yaml"
run 2 "$tmp/res" run "$tmp/tiny.yaml" --set "train.resume=$tmp/two/run.best.h5" \
    -o "$tmp/res/run.h5" --quiet
for o in /parameters /optimizer/m /optimizer/v /training/state /training/history/train_loss \
         /training/history/val_accuracy; do
    same "$b" "$tmp/res/run.last.h5" "$o"
done

# ---- 3. distributed compare -----------------------------------------------------------------
cat >"$tmp/cmp.yaml" <<YAML
name: cmp
base: $tmp/tiny.yaml
set: {train.epochs: 1, data.synthetic_samples: 64}
grid:
  model.attention.kind: [bsa, ssa, sdsa]
YAML
run 1 "$tmp/c1" compare "$tmp/cmp.yaml" -o "$tmp/c1"
$mpirun -np 2 --output-filename "$tmp/c2logs" "$bin" compare "$tmp/cmp.yaml" -o "$tmp/c2" \
    >"$tmp/c2.log" 2>&1 || { cat "$tmp/c2.log"; fail "mpirun -np 2 spikesim compare"; }
# round-robin: rank 0 runs the 1st and 3rd, rank 1 the 2nd
log0=$(cat "$tmp"/c2logs/*/rank.0/stderr) log1=$(cat "$tmp"/c2logs/*/rank.1/stderr)
echo "$log1" | grep -q "\[2/3\]" || fail "rank 1 did not run the 2nd run"
echo "$log1" | grep -q "\[1/3\]\|\[3/3\]" && fail "rank 1 ran another rank's run"
echo "$log0" | grep -q "\[2/3\]" && fail "rank 0 ran rank 1's run"
echo "$log0" | grep -q "wrote .*report.html" || fail "rank 0 did not write the report"
# summary.csv without its timing columns (wall_seconds, train_seconds)
untimed() {
    awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "wall_seconds" || $i == "train_seconds") skip[i] = 1 }
             { line = ""; for (i = 1; i <= NF; i++) if (!skip[i]) line = line $i ","; print line }' "$1"
}
[ "$(untimed "$tmp/c1/summary.csv")" = "$(untimed "$tmp/c2/summary.csv")" ] ||
    fail "summary.csv of 2 ranks differs from 1 rank's beyond the timing columns"
for f in report.md report.html summary.json; do [ -s "$tmp/c2/$f" ] || fail "no $f from 2 ranks"; done
# ---- 4. a run failing on rank 1 ------------------------------------------------------------
# rank 0 must report rank 1's error (not hang in a collective) and write no report
sed 's/^name: tiny/name: bad/; s|^train: {|train: {resume: '"$tmp"'/missing.h5, |' \
    "$tmp/tiny.yaml" >"$tmp/bad.yaml"
printf 'name: cf\nruns: [%s, %s]\n' "$tmp/tiny.yaml" "$tmp/bad.yaml" >"$tmp/cf.yaml"
if $mpirun -np 2 "$bin" compare "$tmp/cf.yaml" -o "$tmp/cf" >"$tmp/cf.log" 2>&1; then
    fail "a compare whose run on rank 1 fails exited 0"
fi
[ "$(grep -c 'spikesim: error: run bad: .*missing.h5' "$tmp/cf.log")" = 1 ] ||
    { cat "$tmp/cf.log"; fail "rank 1's error is not reported once"; }
[ ! -e "$tmp/cf/summary.csv" ] || fail "a failed compare wrote its summary"
echo "mpi_test: ok (training 1 vs 2 ranks: losses $loss_note, $n weight tensors within 1e-5;" \
     "2-rank resume bit-identical; compare over 2 ranks: summary.csv equal but timing;" \
     "rank 1's failure reported by rank 0; $trace_note)"
