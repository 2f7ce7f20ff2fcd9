#!/usr/bin/python3
"""How much of an ANN bench model's training step both sides spend in their dense products, one
thread each: what bounds `make bench`'s ANN training ratios (README, Performance).

    /usr/bin/python3 tests/reference/blas_share.py [softmax cat primal]

Needs perf (Debian's linux-perf) and python3-torch; run from the repository root after `make`.
For each model it samples (perf record -F 1000, cpu-clock) the PyTorch reference's training step
(bench_ref.py's model and step, torch and BLAS on one thread) over 20 steps after 3 warm-up
steps, perf enabled only around those 20 steps (--control), and counts the samples that fall in
libopenblas: B = OpenBLAS's samples / 1000 / 20 is the products' part of PyTorch's step T (the
20 steps' wall time / 20). No program that makes the same products in OpenBLAS trains faster
than T / B times PyTorch (PyTorch gets the OPENBLAS_CORETYPE spikesim runs on, as in
tests/bench.sh): at one thread each, "3x PyTorch" that way needs B < T / 3. spikesim makes most
of them in libxsmm's JIT kernels instead (attention/gemm.h), which perf shows as "[JIT]": its
side, `spikesim bench --phase train --threads 1` sampled whole, counts the samples in libopenblas
and in JIT code over every training step it ran (warm-ups included), against the step it prints.

Prints per model: PyTorch's step and OpenBLAS time, their ratio (the OpenBLAS bound), and
spikesim's step and product time.
"""
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FREQ = 1000


def seconds(data):
    """Seconds of samples in dense products (libopenblas, and libxsmm's JIT code) and in all, in a
    perf.data file (cpu-clock, FREQ Hz)."""
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort",
                          "dso", "-n"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in rep.splitlines() if line.strip() and line[0] != "#"]
    blas = sum(int(r[1]) for r in rows if "openblas" in r[2] or r[2] == "[JIT]")
    return blas / FREQ, sum(int(r[1]) for r in rows) / FREQ


def sampled(cmd, data, extra=()):
    out = subprocess.run(["perf", "record", "-q", "-F", str(FREQ), "-o", data, *extra, "--",
                          *cmd], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    return out, seconds(data)


STEPS = 20


def child(cfg, ctl, ack):
    """The PyTorch side, run under perf: perf samples only the STEPS timed steps."""
    import argparse
    import time
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_ref as BR
    import train_ref as TR
    c = BR.bench_config(argparse.Namespace(config=cfg, attention="bsa"))
    model = BR.build(c)
    images, labels = TR.load_split("t10k")
    BR.set_threads(1, 1)
    x, y = images[:c["batch"]].float() / 255.0, labels[:c["batch"]]
    model.train()
    opt = TR.make_optimizer(model, 1e-3, 0.01)
    eta = c["eta"] if c["kind"] == "primal" else 0.0
    for _ in range(3):
        BR.ann_train_step(model, opt, x, y, 1e-4, eta)

    def command(word):
        with open(ctl, "w") as f:
            f.write(word + "\n")
        with open(ack) as f:
            f.readline()
    command("enable")
    t0 = time.perf_counter()
    for _ in range(STEPS):
        BR.ann_train_step(model, opt, x, y, 1e-4, eta)
    wall = time.perf_counter() - t0
    command("disable")
    print(f"wall_step {wall / STEPS:.9f}")


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(*sys.argv[2:])
        return
    kinds = sys.argv[1:] or ["softmax", "cat", "primal"]
    print("one thread each; ms per training step")
    print("model    | PyTorch step | its OpenBLAS | bound T/B | spikesim step | its products")
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "perf.data")
        ctl, ack = os.path.join(tmp, "ctl"), os.path.join(tmp, "ack")
        os.mkfifo(ctl)
        os.mkfifo(ack)
        for k in kinds:
            cfg = f"configs/bench_{k}.yaml"
            out, (b, _) = sampled(["build/spikesim", "bench", cfg, "--phase", "train",
                                   "--threads", "1"], data)
            m = re.search(r"training, batch (\d+) +: ([0-9.]+) samples/s on 1 thread .*best of 3 "
                          r"runs of (\d+) steps, (\d+) on 1 thread", out)
            core = re.search(r"dense products *: OpenBLAS (\w+) kernels", out)
            if not m or not core:
                sys.exit(f"blas_share.py: no training or kernels line in spikesim's output:\n{out}")
            # spikesim bench --threads 1: two timers (every thread = 1, and 1), each a warm-up
            # step, a step that sizes the runs, then 3 runs
            bsz, rate_s = int(m.group(1)), float(m.group(2))
            n1, n2 = int(m.group(3)), int(m.group(4))
            t_s, b_s = bsz / rate_s, b / ((2 + 3 * n1) + (2 + 3 * n2))
            os.environ["OPENBLAS_CORETYPE"] = core.group(1)
            out, (b, _) = sampled(["/usr/bin/python3", os.path.abspath(__file__), "--child", cfg,
                                   ctl, ack], data, ["-D", "-1", f"--control=fifo:{ctl},{ack}"])
            t_ref, b_ref = float(out.split("wall_step")[1]), b / STEPS
            print(f"{k:8s} | {1e3 * t_ref:12.1f} | {1e3 * b_ref:7.1f} "
                  f"({100 * b_ref / t_ref:2.0f} %) | x{t_ref / b_ref:8.2f} | {1e3 * t_s:13.1f} | "
                  f"{1e3 * b_s:7.1f} ({100 * b_s / t_s:2.0f} %)")


if __name__ == "__main__":
    main()
