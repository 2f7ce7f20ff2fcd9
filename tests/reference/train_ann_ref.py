#!/usr/bin/python3
"""Training of the ANN baselines in PyTorch with spikesim's recipe, to tell a recipe's accuracy
from a trainer's (docs: tests/reference/README.md).

    /usr/bin/python3 tests/reference/train_ann_ref.py --attention softmax --threads 1

The model is baselines_ref.AnnRef with the Fashion-MNIST configs' size (patch 4, D 64, 4 heads,
2 blocks, MLP ratio 4, ReLU; PyTorch's default initialisation) trained as configs/fmnist_*.yaml
train it: the last 6,000 training images held out for validation (spikesim holds out a seeded
10%), the other 54,000 in a seeded permutation per epoch, batches of 64 (the last partial batch
dropped), AdamW (betas 0.9, 0.999, eps 1e-8; weight decay on Linear weights only), linear
warm-up then cosine to 0 (train_ref.lr_at_step), cross-entropy with label smoothing, gradient
norm clipped at 1. The epoch with the best validation accuracy is evaluated on the 10,000 test
images. Prints one line per epoch and `test_accuracy X` at the end.
"""
import argparse
import copy
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import baselines_ref as B  # noqa: E402
import train_ref as TR  # noqa: E402


def accuracy(model, images, labels, bsz=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, images.shape[0], bsz):
            correct += int((model(images[i:i + bsz]).argmax(1) == labels[i:i + bsz]).sum())
    return correct / images.shape[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attention", choices=("softmax", "cat", "primal"), default="softmax")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up length in epochs")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--holdout", type=int, default=6000)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    cfg = B.AnnConfig(attention=args.attention, patch=4, dim=64, heads=4, blocks=2, mlp_ratio=4)
    model = B.AnnRef(cfg)
    images, labels = TR.load_split("train")
    test_x, test_y = TR.load_split("t10k")
    n_train = images.shape[0] - args.holdout
    val_x, val_y = images[n_train:], labels[n_train:]
    opt = TR.make_optimizer(model, args.lr, args.wd)
    steps_per_epoch = n_train // args.batch
    total, warm = steps_per_epoch * args.epochs, max(1, round(args.warmup * steps_per_epoch))
    eta = cfg.eta if args.attention == "primal" else 0.0
    best, best_state, step, t0 = -1.0, None, 0, time.time()
    for ep in range(args.epochs):
        perm = torch.randperm(n_train, generator=torch.Generator().manual_seed(args.seed + ep))
        model.train()
        for i in range(steps_per_epoch):
            idx = perm[i * args.batch:(i + 1) * args.batch]
            for g in opt.param_groups:
                g["lr"] = TR.lr_at_step(step, args.lr, warm, total)
            logits, ksvd = B.train_forward(model, images[idx])
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=args.label_smoothing)
            loss = loss + eta * ksvd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
        val = accuracy(model, val_x, val_y)
        if val > best:
            best, best_state = val, copy.deepcopy(model.state_dict())
        print(f"epoch {ep + 1}: loss {float(loss):.4f}, validation {100 * val:.2f}%, "
              f"{time.time() - t0:.0f} s", flush=True)
    model.load_state_dict(best_state)
    print(f"best validation {100 * best:.2f}%")
    print(f"test_accuracy {100 * accuracy(model, test_x, test_y):.2f}")


if __name__ == "__main__":
    main()
