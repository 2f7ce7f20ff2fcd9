#!/bin/sh
# `make bench`: spikesim's benchmark of the five Fashion-MNIST bench models
# (configs/bench_{bsa,ssa,softmax,cat,primal}.yaml; bsa also at three firing-rate levels), every
# attention kernel alone, then the PyTorch reference of the same models measured in the same run
# on the same machine, and one table of ratios. The PyTorch side needs Debian's python3-torch
# (not a project dependency); without it the comparison is skipped with a message.
#
#   [BENCH_ROUNDS=5] [BENCH_MODELS="bsa ssa softmax cat primal"] [BENCH_KEEP=DIR] \
#       tests/bench.sh [BUILD [THREADS]]
#   BENCH_FROM=DIR [BENCH_ROUNDS=N] [BENCH_MODELS=...] tests/bench.sh
#
# The run's raw reports (c_MODEL_ROUND: spikesim's, r_MODEL_ROUND: PyTorch's key/value lines),
# which every figure of the summary comes from, are kept in BENCH_KEEP (by default
# runs/bench-DATE-TIME; BENCH_KEEP= keeps nothing); BENCH_FROM=DIR measures nothing and prints
# the summary (tables, paired ratios, the targets) of the reports in DIR again
# (tests/bench_check.sh reads fixtures so).
#
# About 16 minutes on two cores. Round 1 is the full benchmark of both sides, model by model
# (spikesim's, then PyTorch's); rounds 2 .. BENCH_ROUNDS repeat the timings and bsa's firing-rate
# levels, spikesim and PyTorch interleaved model by model and phase by phase. The table gives the
# median of the rounds of each side (this 2-core machine's timings differ by up to 1.5x from one
# run to the next), and below it the median of the rounds' own ratios: each round measures both
# sides back to back, so a slow spell of the machine lands on both. Within a round each figure is
# the best of 2-3 runs, on 2000 images (throughput), 200 (batch 1) or about a second of training
# steps of 64; PyTorch's inference runs on 512.
build=${1:-build}
threads=${2:-$(nproc)}
rounds=${BENCH_ROUNDS:-5}
models=${BENCH_MODELS:-bsa ssa softmax cat primal}
start=$(date +%s)

# measure: round 1 (the full benchmark of both sides) then rounds 2..ROUNDS into $dir
# (c_MODEL_ROUND, r_MODEL_ROUND); returns 1 when PyTorch is missing (nothing to pair), exits on
# a failed run
measure() {
    echo "make bench: spikesim on ${models}, $threads threads (sample counts and repetitions are on each line)"
    torch=yes
    if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
        torch=""
        echo "PyTorch reference: skipped (python3-torch is not installed: apt-get install python3-torch)"
    fi
    for k in $models; do
        extra=""
        [ "$k" = bsa ] && extra="--rate-levels"
        # shellcheck disable=SC2086
        "$build/spikesim" bench "configs/bench_$k.yaml" --threads "$threads" $extra | tee "$dir/c_${k}_1" || exit 1
        [ -n "$torch" ] || continue
        # PyTorch runs on the OpenBLAS kernels spikesim ran on (its "dense products" line). Where
        # OpenBLAS takes the CPU for an unknown one and loads its generic SSE3 kernels, spikesim
        # restarts itself with OPENBLAS_CORETYPE set (sim/main.c); torch, on the same library,
        # needs the variable too.
        core=$(sed -n 's/.*dense products *: OpenBLAS \([A-Za-z0-9]*\) kernels.*/\1/p' "$dir/c_${k}_1")
        [ -n "$core" ] && export OPENBLAS_CORETYPE="$core"
        echo "PyTorch reference of $k (tests/reference/bench_ref.py, torch $(/usr/bin/python3 -c 'import torch; print(torch.__version__)'), OpenBLAS ${core:-?} kernels as spikesim; inference on 512 images, batch 1 on 200; each phase in its own process):"
        /usr/bin/python3 tests/reference/bench_ref.py --config "configs/bench_$k.yaml" --threads "$threads" \
            >"$dir/r_${k}_1" || exit 1
        echo "  $k: $(tr '\n' ' ' <"$dir/r_${k}_1")"
    done
    # every attention kernel alone, N = 64 .. 4096: times and growth exponents
    "$build/spikesim" bench-attention || exit 1
    [ -n "$torch" ] || return 1

    # Rounds 2..ROUNDS: the timings alone (and bsa's firing-rate levels), spikesim and PyTorch
    # interleaved model by model and phase by phase, so that a slow spell of the shared machine
    # lands on both sides; every figure below is the median over the rounds (round 1 is the
    # full runs above).
    for r in $(seq 2 "$rounds"); do
        echo "round $r of $rounds: timings of both sides, interleaved"
        for k in $models; do
            for ph in infer train; do
                extra=""
                [ "$k" = bsa ] && [ "$ph" = infer ] && extra="--rate-levels"
                # shellcheck disable=SC2086
                "$build/spikesim" bench "configs/bench_$k.yaml" --threads "$threads" --phase "$ph" \
                    $extra >>"$dir/c_${k}_$r" || exit 1
                /usr/bin/python3 tests/reference/bench_ref.py --config "configs/bench_$k.yaml" \
                    --threads "$threads" --phase "$ph" >>"$dir/r_${k}_$r" || exit 1
            done
        done
    done
}

if [ -n "${BENCH_FROM:-}" ]; then
    dir=$BENCH_FROM
    # the models and rounds of the kept run, unless given
    if [ -z "${BENCH_MODELS:-}" ]; then
        models=""
        for k in bsa ssa softmax cat primal; do [ -f "$dir/c_${k}_1" ] && models="$models $k"; done
        models=${models# }
    fi
    if [ -z "${BENCH_ROUNDS:-}" ]; then
        rounds=1
        while [ -f "$dir/c_${models%% *}_$((rounds + 1))" ]; do rounds=$((rounds + 1)); done
    fi
    [ -n "$models" ] && [ -f "$dir/c_${models%% *}_1" ] || {
        first=${models%% *}
        echo "tests/bench.sh: error: $dir: no report c_${first:-MODEL}_1 (BENCH_FROM reads what BENCH_KEEP kept)" >&2
        exit 1
    }
    echo "make bench: the reports in $dir, $rounds rounds of ${models} (BENCH_FROM: nothing measured)"
    threads=$(sed -n 's/.*throughput, \([0-9]*\) threads* *:.*/\1/p' "$dir/c_${models%% *}_1" | head -n 1)
else
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    measured=0
    measure || measured=$?
    keep=${BENCH_KEEP-runs/bench-$(date +%Y%m%d-%H%M%S)}
    if [ -n "$keep" ]; then
        mkdir -p "$keep" && cp "$dir"/c_* "$dir"/r_* "$keep"/ 2>/dev/null
        echo "make bench: raw reports kept in $keep (re-read them with BENCH_FROM=$keep tests/bench.sh)"
    fi
    [ "$measured" -eq 0 ] || exit 0
fi

# one figure of every round: spikesim's parsed from its report, PyTorch's from its key/value lines
cval() { sed -n "$3" "$dir/c_$1_$2" | head -n 1; }
# rval MODEL ROUND KEY[|KEY...]: PyTorch's figure, the largest of the keys named
rval() {
    awk -v k="$3" 'BEGIN {n = split(k, ks, "|")}
        {for (i = 1; i <= n; i++) if ($1 == ks[i] && (v == "" || $2 + 0 > v + 0)) v = $2}
        END {print v}' "$dir/r_$1_$2"
}
# median of the numbers on stdin (the middle one, the mean of the two middle ones if even)
median() { sort -g | awk '{v[NR] = $1} END {if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
# all_rounds MODEL SIDE PATTERN: the figure of every round, one per line (SIDE c or r)
all_rounds() {
    for r in $(seq 1 "$rounds"); do
        if [ "$2" = c ]; then cval "$1" "$r" "$3"; else rval "$1" "$r" "$3"; fi
    done
}
med() { all_rounds "$@" | median; }
# round_ratio MODEL C_PATTERN SIDE PATTERN_OR_KEYS: the median over the rounds of each round's
# spikesim figure over the same round's other figure (SIDE r: PyTorch's, as rval; c: spikesim's)
round_ratio() {
    for r in $(seq 1 "$rounds"); do
        if [ "$3" = r ]; then b=$(rval "$1" "$r" "$4"); else b=$(cval "$1" "$r" "$4"); fi
        awk -v a="$(cval "$1" "$r" "$2")" -v b="$b" 'BEGIN { if (a > 0 && b > 0) print a / b }'
    done | median
}
# each_scaling MODEL N_PATTERN ONE_PATTERN: every round's N threads / 1, in round order
each_scaling() {
    for r in $(seq 1 "$rounds"); do
        awk -v a="$(cval "$1" "$r" "$2")" -v b="$(cval "$1" "$r" "$3")" \
            'BEGIN { if (a > 0 && b > 0) printf "x%.2f\n", a / b; else print "n/a" }'
    done | tr '\n' ' ' | sed 's/ $//'
}
paired() { round_ratio "$1" "$2" r "$3"; }  # MODEL C_PATTERN R_KEYS: spikesim / PyTorch
scaling() { round_ratio "$1" "$2" c "$3"; } # MODEL N_PATTERN ONE_PATTERN: N threads / 1
nfmt() { awk -v f="$1" -v v="$2" 'BEGIN { if (v > 0) printf f, v; else print "n/a" }'; } # FORMAT V
xfmt() { nfmt "x%.2f" "$1"; }
spread() { all_rounds "$@" | tr '\n' ' ' | sed 's/ $//'; }
quot() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) print a / b }'; } # a / b, or nothing
ratio() { xfmt "$(quot "$1" "$2")"; }
P_B1='s/.*batch 1, 1 thread *: [0-9.]* ms\/sample (\([0-9.]*\) samples\/s.*/\1/p'
P_INF='s/.*throughput, [0-9]* threads* *: *\([0-9.]*\) samples\/s.*/\1/p'
P_INF1='s/.*throughput, [0-9]* threads* *: .*(1 thread: \([0-9.]*\) samples\/s.*/\1/p'
P_TR='s/.*training, batch [0-9]* *: *\([0-9.]*\) samples\/s.*/\1/p'
P_TR1='s/.*training, batch [0-9]* *: .*(1 thread: \([0-9.]*\) samples\/s.*/\1/p'
# PyTorch's figure is its best on this machine with up to $threads threads: the better of its
# 1-thread run and its $threads-thread run (itself the better of two thread settings, bench_ref.py)
R_INF="ref_infer_Nt|ref_infer_1t" R_TR="ref_train_Nt|ref_train_1t"
echo "spikesim / PyTorch, samples/s, median of $rounds rounds (same machine, same run; spikesim's throughput and training on $threads threads, batch 1 on one; PyTorch's best with 1 or $threads threads, OpenBLAS's threads set too):"
printf '  %-8s %-30s %-30s %-30s %s\n' model "inference, batch 1" "inference throughput" "training, batch 64" "peak RSS MiB inference, training"
for k in $models; do
    c_b1=$(med "$k" c "$P_B1") c_inf=$(med "$k" c "$P_INF") c_train=$(med "$k" c "$P_TR")
    r_b1=$(med "$k" r ref_infer_batch1_1t) r_inf=$(med "$k" r "$R_INF") r_train=$(med "$k" r "$R_TR")
    c_rss_i=$(cval "$k" 1 's/.*peak RSS *: inference \([0-9.]*\) MiB.*/\1/p')
    c_rss_t=$(cval "$k" 1 's/.*peak RSS *: inference .* training \([0-9.]*\) MiB.*/\1/p')
    printf '  %-8s %-30s %-30s %-30s %s\n' "$k" \
        "$c_b1 vs $r_b1 $(ratio "$c_b1" "$r_b1")" \
        "$c_inf vs $r_inf $(ratio "$c_inf" "$r_inf")" \
        "$c_train vs $r_train $(ratio "$c_train" "$r_train")" \
        "$c_rss_i, $c_rss_t vs $(rval "$k" 1 ref_rss_infer_mib), $(rval "$k" 1 ref_rss_train_mib)"
done
# NeuroBench SynapticOperations per second: spikesim's report line, PyTorch's ref_synops (its
# own count per sample times its best inference throughput, bench_ref.py)
P_SYN='s/.*synaptic operations *: *\([0-9.e+]*\) [A-Za-z]*s\/s on.*/\1/p'
echo "synaptic operations per second, median of $rounds rounds (NeuroBench SynapticOperations, each side counting its own: ACs for a spiking model, MACs for an ANN; spikesim on $threads threads, PyTorch at its best), their ratio, then the paired ratio:"
for k in $models; do
    c_syn=$(med "$k" c "$P_SYN") r_syn=$(med "$k" r ref_synops)
    unit=$(cval "$k" 1 's/.*synaptic operations *: *[0-9.e+]* \([A-Za-z]*s\/s\) on.*/\1/p')
    echo "  $k: $(nfmt %.3g "$c_syn") vs $(nfmt %.3g "$r_syn") ${unit:-?} $(ratio "$c_syn" "$r_syn") $(xfmt "$(paired "$k" "$P_SYN" ref_synops)")"
done
echo "paired: the median of the rounds' own ratios (each round's spikesim / its PyTorch, measured back to back; spikesim's $threads threads / its 1 thread, measured alternately in one process):"
for k in $models; do
    echo "  $k: batch 1 $(xfmt "$(paired "$k" "$P_B1" ref_infer_batch1_1t)")," \
        "throughput $(xfmt "$(paired "$k" "$P_INF" "$R_INF")")," \
        "training $(xfmt "$(paired "$k" "$P_TR" "$R_TR")");" \
        "scaling: inference $(xfmt "$(scaling "$k" "$P_INF" "$P_INF1")")," \
        "training $(xfmt "$(scaling "$k" "$P_TR" "$P_TR1")")"
done
echo "every round (samples/s; spikesim | PyTorch), and spikesim's $threads threads against 1 from the medians (each round's in brackets):"
for k in $models; do
    c_inf=$(med "$k" c "$P_INF") c_inf1=$(med "$k" c "$P_INF1")
    c_train=$(med "$k" c "$P_TR") c_train1=$(med "$k" c "$P_TR1")
    echo "  $k: batch 1 $(spread "$k" c "$P_B1") | $(spread "$k" r ref_infer_batch1_1t);" \
        "throughput $(spread "$k" c "$P_INF") | $(spread "$k" r "$R_INF");" \
        "training $(spread "$k" c "$P_TR") | $(spread "$k" r "$R_TR");" \
        "scaling: inference $(ratio "$c_inf" "$c_inf1") ($(each_scaling "$k" "$P_INF" "$P_INF1")), training" \
        "$(ratio "$c_train" "$c_train1") ($(each_scaling "$k" "$P_TR" "$P_TR1"))"
done
# The performance targets (README, Performance), each from the ratio of medians and the paired
# ratio: met when both reach it, at the edge when one does, not met when neither.
verdict() { # TARGET VALUE...: met / at the edge / not met (empty values are skipped)
    t=$1
    shift
    awk -v t="$t" -v vs="$*" 'BEGIN { n = split(vs, v, " "); hit = 0; m = 0
        for (i = 1; i <= n; i++) if (v[i] != "") { m++; if (v[i] + 0 >= t) hit++ }
        print (m && hit == m) ? "met" : (hit ? "at the edge" : "not met") }'
}
# worst "MODEL:VERDICT" lines: the worst verdict, naming the models not met and at the edge
worst() {
    nm=$(printf '%s\n' "$1" | sed -n 's/^\([a-z]*\):not met$/\1/p' | tr '\n' ' ')
    ed=$(printf '%s\n' "$1" | sed -n 's/^\([a-z]*\):at the edge$/\1/p' | tr '\n' ' ')
    if [ -n "$nm" ]; then
        echo "not met (${nm% })${ed:+; at the edge (${ed% })}"
    elif [ -n "$ed" ]; then
        echo "at the edge (${ed% })"
    else
        echo met
    fi
}
echo "against the performance targets (README, Performance; each ratio of medians, then its paired ratio):"
case " $models " in *" bsa "*)
    v=$(quot "$(med bsa c "$P_INF")" "$(med bsa r "$R_INF")") p=$(paired bsa "$P_INF" "$R_INF")
    echo "  bsa inference throughput >= x20 PyTorch's: $(xfmt "$v") $(xfmt "$p"): $(verdict 20 "$v" "$p")"
    v=$(quot "$(med bsa c "$P_B1")" "$(med bsa r ref_infer_batch1_1t)")
    p=$(paired bsa "$P_B1" ref_infer_batch1_1t)
    echo "  bsa inference at batch 1 >= x10 PyTorch's: $(xfmt "$v") $(xfmt "$p"): $(verdict 10 "$v" "$p")"
esac
# every_model LABEL TARGET NUM_PATTERN SIDE DEN_PATTERN: one target over every model, each
# model's ratio (spikesim's NUM over SIDE's DEN, as round_ratio) and verdict
every_model() {
    line="" all=""
    for k in $models; do
        v=$(quot "$(med "$k" c "$3")" "$(med "$k" "$4" "$5")") p=$(round_ratio "$k" "$3" "$4" "$5")
        line="$line, $k $(xfmt "$v") $(xfmt "$p")"
        all="$all
$k:$(verdict "$2" "$v" "$p")"
    done
    echo "  $1:${line#,}: $(worst "$all")"
}
every_model "training >= x3 PyTorch's, every model" 3 "$P_TR" r "$R_TR"
every_model "$threads threads >= x1.7 one thread, inference" 1.7 "$P_INF" c "$P_INF1"
every_model "$threads threads >= x1.7 one thread, training" 1.7 "$P_TR" c "$P_TR1"
case " $models " in *" bsa "*)
    # one reading a round (each the best of its 15 interleaved rounds of the three levels)
    P_LESS='s/.*synaptic-layer time x[0-9.]* (\([0-9.]*\)% less.*/\1/p'
    less=$(med bsa c "$P_LESS")
    echo "  half the firing rate cuts bsa's synaptic-layer time >= 35 %: ${less:-?} % (median of the rounds: $(spread bsa c "$P_LESS")): $(verdict 35 "$less")"
esac
frs=""
for k in $models; do
    fr=$(rval "$k" 1 ref_fr)
    [ -n "$fr" ] && frs="$frs $k $fr"
done
echo "  throughput: spikesim runs a spiking model one sample per thread, PyTorch and spikesim's ANN"
echo "  models batches of 64. PyTorch's firing rate (64 images):${frs:- (no spiking model)}; the ANN models run random weights."
echo "make bench: $(($(date +%s) - start)) s"
