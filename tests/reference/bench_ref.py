#!/usr/bin/python3
"""PyTorch side of `make bench`: throughput of the reference model (spikesim_ref +
train_ref) on this machine, measured the way `spikesim bench` measures spikesim.

    /usr/bin/python3 tests/reference/bench_ref.py [--threads N] [--attention bsa|ssa]

Prints one `key value` line per figure (samples/s):
    ref_infer_batch1_1t   inference, one sample at a time, 1 thread
    ref_infer_Nt          inference, batches of 64, N threads
    ref_train_1t          training step (forward, backward, AdamW), batch 64, 1 thread
    ref_train_Nt          the same with N threads
Each is the best of 3 repetitions on Fashion-MNIST test images, after one warm-up run.
"""
import argparse
import os
import sys
import time

import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spikesim_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402


def best_of(fn, reps=3):
    fn()  # warm-up
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--attention", choices=("bsa", "ssa"), default="bsa")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    cfg = R.ModelConfig(name="bench", patch=4, dim=64, heads=4, blocks=2, mlp_ratio=4,
                        timesteps=4, attention=args.attention)
    torch.manual_seed(0)
    model = R.build_model(cfg)
    TR.spikformer_init(model)
    images, labels = TR.load_split("t10k")
    B = args.batch
    x = images[:B].float() / 255.0
    y = labels[:B]
    x1 = images[:200]
    out = {}
    for threads in (1, args.threads):
        torch.set_num_threads(threads)
        model.eval()
        if threads == 1:
            def infer1():
                with torch.no_grad():
                    for i in range(x1.shape[0]):
                        model(x1[i:i + 1])
            out["ref_infer_batch1_1t"] = x1.shape[0] / best_of(infer1, reps=1)

        def infer():
            with torch.no_grad():
                for i in range(0, 512, B):
                    model(images[i:i + B])
        out[f"ref_infer_{threads}t"] = 512 / best_of(infer)
        model.train()
        opt = TR.make_optimizer(model, 1e-3, 0.01)

        def train():
            for _ in range(4):
                TR.train_step(model, opt, x, y, 1e-3)
        out[f"ref_train_{threads}t"] = 4 * B / best_of(train)
    for k, v in out.items():
        print(f"{k.replace(f'_{args.threads}t', '_Nt') if args.threads != 1 else k} {v:.1f}")


if __name__ == "__main__":
    main()
