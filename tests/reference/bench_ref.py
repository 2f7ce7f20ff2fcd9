#!/usr/bin/python3
"""PyTorch side of `make bench`: the reference model of a bench config measured on this machine
the way `spikesim bench` measures spikesim.

    /usr/bin/python3 tests/reference/bench_ref.py --config configs/bench_bsa.yaml [--threads N]
    /usr/bin/python3 tests/reference/bench_ref.py --attention cat [--threads N]

The model is the config's (patch, dim, heads, blocks, mlp_ratio, timesteps, attention kind and
Primal's s and eta, train.batch_size, model.weights); without --config, --attention picks the
Fashion-MNIST bench model of that kind. Spiking models (bsa, ssa) are spikesim_ref.SpikeSimRef,
trained by train_ref's step (surrogate-gradient BPTT, AdamW, clipping); ANN models (softmax, cat,
primal) are baselines_ref.AnnRef, trained with baselines_ref.train_forward, cross-entropy with
label smoothing 0.1 (+ eta KSVD for primal), AdamW and clipping. Weights: the config's checkpoint
when it names one (bsa, ssa), else random (Spikformer's init for spiking models, init_random for
ANN models): only a spiking model's rate could change spikesim's speed, and PyTorch's dense
compute does not depend on it.

Prints one `key value` line per figure:
    ref_infer_batch1_1t   inference samples/s, one sample at a time, 1 thread (200 images)
    ref_infer_1t          inference samples/s, batches of 64, 1 thread (512 images)
    ref_infer_Nt          the same with N threads
    ref_train_1t          training samples/s (forward, backward, clipping, AdamW), batch 64, 1 thread
    ref_train_Nt          the same with N threads
    ref_train_steps_1t    steps per timed training run, 1 thread (and _Nt)
    ref_infer_blas_Nt     OpenBLAS threads of the ref_infer_Nt run (1 or N; ref_train_blas_Nt)
    ref_fr                firing rate (spikes / neuron updates, every population) of 64 test
                          images in inference (spiking models)
    ref_synops_per_sample NeuroBench SynapticOperations per sample of those 64 images, counted
                          as spikesim counts them (synaptic_ops): ACs for a spiking model,
                          MACs for an ANN
    ref_synops            synaptic operations per second: ref_synops_per_sample times the
                          better of ref_infer_1t and ref_infer_Nt (PyTorch at its best)
    ref_rss_infer_mib     peak RSS (ru_maxrss) of the process that ran the inference figures
    ref_rss_train_mib     peak RSS of the process that ran the training figures
Threads: Debian's torch does its BLAS products in OpenBLAS, whose own pthreads run under each of
torch's OpenMP threads. torch.set_num_threads(N) alone therefore runs N x N threads, and on 2
cores the "2-thread" runs were 2-3x slower than the 1-thread ones. This script sets both
pools. A 1-thread figure is torch 1 thread and
BLAS 1 thread. An N-thread figure is the better of two runs: torch N threads with BLAS 1, and
torch 1 thread with BLAS N. ref_infer_blas_Nt and ref_train_blas_Nt say which of the two won
(1 or N). That is PyTorch at its best on N threads, the peer a careful user would run.
Inference and training each run in a process of their own (this script, --phase), so each peak
RSS is that phase's, torch and the data included. Each time is the best of a few repetitions
after a warm-up run: batch 1 and inference best of 2, training best of 3 runs of as many steps
as last about a second by one step's time, 2 to 40 (as spikesim bench; ref_train_steps_1t and
_Nt give the counts).
"""
import argparse
import ctypes
import math
import os
import resource
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import baselines_ref as B  # noqa: E402
import spikesim_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
SPIKING = ("bsa", "ssa")
ANN = ("softmax", "cat", "primal")
BATCH1_SAMPLES, INFER_SAMPLES = 200, 512
TRAIN_MIN_STEPS, TRAIN_MAX_STEPS, TRAIN_RUN_SECONDS = 2, 40, 1.0


try:
    # torch links OpenBLAS through libblas.so.3: the same loaded library, so this sets torch's
    # pool. Another BLAS behind libblas.so.3 has no openblas_set_num_threads (AttributeError).
    _OPENBLAS = ctypes.CDLL("libblas.so.3")
    _OPENBLAS.openblas_set_num_threads.argtypes = [ctypes.c_int]
except (OSError, AttributeError):
    _OPENBLAS = None


def thread_configs(t):
    """(torch threads, BLAS threads) settings tried for a t-thread figure (module docstring)."""
    if t == 1 or _OPENBLAS is None:
        return [(t, 1)]
    return [(t, 1), (1, t)]


def set_threads(torch_threads, blas_threads):
    torch.set_num_threads(torch_threads)
    if _OPENBLAS is not None:
        _OPENBLAS.openblas_set_num_threads(blas_threads)


def best_of(fn, reps):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_config(args):
    """The model settings of --config (a spikesim YAML), or of the bench model of --attention."""
    c = {"patch": 4, "dim": 64, "heads": 4, "blocks": 2, "mlp_ratio": 4, "kind": args.attention,
         "s": 20, "eta": 0.05, "batch": 64, "weights": None}
    if args.config:
        import yaml
        with open(args.config) as f:
            y = yaml.safe_load(f)
        m = y.get("model", {})
        a = m.get("attention", {})
        c.update({k: m[k] for k in ("patch", "dim", "heads", "blocks", "mlp_ratio") if k in m})
        c["kind"] = a.get("kind", "bsa")
        c["s"] = a.get("s", 20)
        c["eta"] = a.get("eta", 0.05)
        c["batch"] = y.get("train", {}).get("batch_size", 64)
        if m.get("weights"):
            w = m["weights"]
            c["weights"] = w if os.path.isabs(w) else os.path.join(ROOT, w)
    c["timesteps"] = 4 if c["kind"] in SPIKING else 1
    if c["kind"] not in SPIKING + ANN:
        sys.exit(f"bench_ref.py: attention {c['kind']!r} is not one of {SPIKING + ANN}")
    return c


def build(c):
    common = dict(name="bench", patch=c["patch"], dim=c["dim"], heads=c["heads"],
                  blocks=c["blocks"], mlp_ratio=c["mlp_ratio"])
    torch.manual_seed(0)
    if c["kind"] in SPIKING:
        model = R.build_model(R.ModelConfig(timesteps=c["timesteps"], attention=c["kind"], **common))
        TR.spikformer_init(model)
        if c["weights"]:
            R.load_h5(c["weights"], model)
    else:
        model = B.AnnRef(B.AnnConfig(attention=c["kind"], s=c["s"], eta=c["eta"], **common))
        B.init_random(model, 0)
    model.eval()
    return model


def infer_fn(c, model):
    if c["kind"] in SPIKING:
        return lambda x: model(x, record=False)
    return model


def phase_infer(c, model, images, threads, out):
    run = infer_fn(c, model)
    model.eval()
    x1 = images[:BATCH1_SAMPLES]
    set_threads(1, 1)

    def batch1():
        with torch.no_grad():
            for i in range(x1.shape[0]):
                run(x1[i:i + 1])
    with torch.no_grad():
        for i in range(10):  # warm-up
            run(x1[i:i + 1])
    out["ref_infer_batch1_1t"] = x1.shape[0] / best_of(batch1, 2)
    bsz = 64

    def infer():
        with torch.no_grad():
            for i in range(0, INFER_SAMPLES, bsz):
                run(images[i:i + bsz])
    for t in sorted({1, threads}):
        for tt, bt in thread_configs(t):
            set_threads(tt, bt)
            with torch.no_grad():
                run(images[:bsz])  # warm-up
            rate = INFER_SAMPLES / best_of(infer, 2)
            if rate > out.get(f"ref_infer_{t}t", 0.0):
                out[f"ref_infer_{t}t"] = rate
                out[f"ref_infer_blas_{t}t"] = bt
    # one pass over 64 images gives the synaptic operations and a spiking model's spikes
    spiking = c["kind"] in SPIKING
    acs, macs, res = synaptic_ops(model, (lambda x: model(x, record=True)) if spiking else run,
                                  images[:64])
    if spiking:
        spikes = res["spikes"]
        nz = sum(int((s != 0).sum()) for s in spikes.values())
        out["ref_fr"] = nz / sum(s.numel() for s in spikes.values())
    out["ref_synops_per_sample"] = acs if spiking else macs
    best = max(out[f"ref_infer_{t}t"] for t in sorted({1, threads}))
    out["ref_synops"] = out["ref_synops_per_sample"] * best


# The layers NeuroBench's SynapticOperations counts, as spikesim does (sim/energy.c: the
# embedding, the linear layers and the head; not the attention's own arithmetic, such as
# Primal's c).
SYNAPTIC = ("embed", "q", "k", "v", "o", "a", "fc1", "fc2", "head")


def synaptic_ops(model, run, images):
    """(ACs, MACs) per sample and run's result, of one inference pass over images, counted as
    spikesim counts them (spec section 6, sim/energy.c): a synaptic layer applied to spikes
    (every input value -1, 0 or 1) costs one AC per nonzero input and output; applied to real
    values, one MAC per input row, input and output. Every F.linear call on a synaptic layer's weights is counted
    (the reference model calls F.linear directly or through nn.Linear; a layer is told by its
    weight's shape, which no other linear of the bench models shares)."""
    counted, others = set(), set()
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear):
            (counted if name.split(".")[-1] in SYNAPTIC else others).add(tuple(mod.weight.shape))
    assert counted and not counted & others, (counted, others)
    total = {"acs": 0, "macs": 0}
    linear = F.linear

    def counting(x, w, b=None):
        if tuple(w.shape) in counted:
            if bool(((x == 0) | (x == 1) | (x == -1)).all()):
                total["acs"] += int((x != 0).sum()) * w.shape[0]
            else:
                total["macs"] += x.numel() // x.shape[-1] * w.shape[0] * w.shape[1]
        return linear(x, w, b)
    F.linear = counting
    try:
        with torch.no_grad():
            res = run(images)
    finally:
        F.linear = linear
    n = images.shape[0]
    return total["acs"] / n, total["macs"] / n, res


def ann_train_step(model, opt, x, y, lr, eta):
    for g in opt.param_groups:
        g["lr"] = lr
    logits, ksvd = B.train_forward(model, x)
    loss = F.cross_entropy(logits, y, label_smoothing=0.1) + eta * ksvd
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss


def phase_train(c, model, images, labels, threads, out):
    bsz = c["batch"]
    x = images[:bsz].float() / 255.0
    y = labels[:bsz]
    model.train()
    for t, (tt, bt) in [(t, c) for t in sorted({1, threads}) for c in thread_configs(t)]:
        set_threads(tt, bt)
        opt = TR.make_optimizer(model, 1e-3, 0.01)
        if c["kind"] in SPIKING:
            step = lambda: TR.train_step(model, opt, x, y, 1e-4)
        else:
            step = lambda: ann_train_step(model, opt, x, y, 1e-4, c["eta"] if c["kind"] == "primal" else 0.0)
        step()  # warm-up
        t0 = time.perf_counter()
        step()
        # as spikesim bench: enough steps for a run of about a second (2 to 40)
        steps = min(TRAIN_MAX_STEPS, max(TRAIN_MIN_STEPS,
                                         math.ceil(TRAIN_RUN_SECONDS / (time.perf_counter() - t0))))

        def train():
            for _ in range(steps):
                step()
        rate = steps * bsz / best_of(train, 3)
        if rate > out.get(f"ref_train_{t}t", 0.0):
            out[f"ref_train_{t}t"] = rate
            out[f"ref_train_steps_{t}t"] = steps
            out[f"ref_train_blas_{t}t"] = bt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", help="a spikesim bench config (configs/bench_<kind>.yaml)")
    ap.add_argument("--attention", choices=SPIKING + ANN, default="bsa")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phase", choices=("infer", "train"), help="run one phase in this process")
    args = ap.parse_args()
    if args.phase is None:
        # each phase in a process of its own, so that each peak RSS is that phase's
        for phase in ("infer", "train"):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), *sys.argv[1:],
                                "--phase", phase], stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                sys.exit(r.returncode)
            sys.stdout.write(r.stdout)
        return
    c = bench_config(args)
    model = build(c)
    images, labels = TR.load_split("t10k")
    out = {}
    if args.phase == "infer":
        phase_infer(c, model, images, args.threads, out)
    else:
        phase_train(c, model, images, labels, args.threads, out)
    out[f"ref_rss_{args.phase}_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    for k, v in out.items():
        if args.threads != 1:
            k = k.replace(f"_{args.threads}t", "_Nt")
        print(f"{k} {v:.4f}" if k == "ref_fr" else f"{k} {v:.1f}")


if __name__ == "__main__":
    main()
