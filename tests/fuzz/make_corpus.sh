#!/bin/sh
# Regenerates the committed seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/) from
# the repository's configs and from checkpoints the simulator writes (docs/fuzzing.md). Needs
# build/spikesim (`make`). Seeds are small on purpose: libFuzzer mutates structure, and every
# seed is re-read on each start.
set -eu
cd "$(dirname "$0")/../.."
c=tests/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$c" && mkdir -p "$c/config" "$c/idx" "$c/checkpoint"

# config: every shipped config, and one with --set overrides after NUL bytes (fuzz_config.c).
cp configs/*.yaml "$c/config/"
{ cat configs/synthetic.yaml; printf '\000model.heads=4\000train.lr=0.5\000record.membrane=true'; } \
    >"$c/config/synthetic_with_sets"

# idx: [limit][image file length, 2 bytes LE][image file][label file] (fuzz_idx.c).
byte() { printf "\\$(printf %03o "$1")"; }        # one byte, 0..255
be32() { byte 0; byte 0; byte 0; byte "$1"; }     # big-endian uint32 below 256
images() { # n rows cols, then n*rows*cols pixel bytes
    byte 0; byte 0; byte 8; byte 3; be32 "$1"; be32 "$2"; be32 "$3"
    head -c $(($1 * $2 * $3)) /dev/urandom
}
labels() { # n, then n label bytes
    byte 0; byte 0; byte 8; byte 1; be32 "$1"
    shift
    for l in "$@"; do byte "$l"; done
}
seed() { # name limit images-file labels-file
    len=$(wc -c <"$3")
    { byte "$2"; byte $((len % 256)); byte $((len / 256)); cat "$3" "$4"; } >"$c/idx/$1"
}
images 3 4 4 >"$tmp/i"; labels 3 0 9 4 >"$tmp/l"
seed valid 0 "$tmp/i" "$tmp/l"
seed valid_limit 2 "$tmp/i" "$tmp/l"
gzip -9n <"$tmp/i" >"$tmp/i.gz"; gzip -9n <"$tmp/l" >"$tmp/l.gz"
seed gzip 0 "$tmp/i.gz" "$tmp/l.gz"
head -c 30 "$tmp/i" >"$tmp/short"
seed truncated_pixels 0 "$tmp/short" "$tmp/l"
head -c 20 "$tmp/i.gz" >"$tmp/short.gz"
seed truncated_gzip 0 "$tmp/short.gz" "$tmp/l"
labels 2 1 2 >"$tmp/l2"
seed count_mismatch 0 "$tmp/i" "$tmp/l2"

# checkpoint: a one-epoch checkpoint of the model of tests/fuzz/checkpoint.yaml
# and a truncated one. (The run file is left out: at 190 KiB it slows every mutation.)
build/spikesim run tests/fuzz/checkpoint.yaml -o "$tmp/run.h5" --threads 1 >/dev/null 2>&1
cp "$tmp/run.last.h5" "$c/checkpoint/checkpoint.h5"
head -c 2048 "$tmp/run.last.h5" >"$c/checkpoint/truncated.h5"
du -sh "$c"/*
