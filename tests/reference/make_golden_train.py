#!/usr/bin/python3
"""Writes tests/reference/golden_train_{bsa,ssa}.h5: the first 10 training steps of a tiny model
in the PyTorch reference trainer (train_ref.py), for the C trainer's test.

    /usr/bin/python3 tests/reference/make_golden_train.py     # from the repository root

Model: the golden files' tiny model (patch 7: N = 16, D = 32, h = 2, L = 2, mlp_ratio 2, T = 4,
residual ms), attention bsa or ssa, initialised by train_ref.spikformer_init after
torch.manual_seed(0), exactly as train_ref.main does. Data: the first 160 images of the
Fashion-MNIST training split in file order, 16 per step, no shuffling. Each step is
train_ref.train_step (training forward with batch-statistics BatchNorm, running statistics
updated; cross-entropy with label smoothing 0.1; global gradient-norm clip 1.0; AdamW lr 0.01,
weight decay 0.01 on Linear weights only) at the learning rate train_ref.lr_at_step(i, 0.01,
W = 2, S = 10) (linear warm-up over 2 steps, then cosine to 0 over the remaining 8).

Layout (README.md, section "Training golden files"):
    /config                       scalar UTF-8 string: spikesim YAML config (model + train keys)
    /parameters/<name>            float32: the INITIAL parameters (state_dict names, no
                                  num_batches_tracked)
    /batches/images               uint8 [10, 16, 28, 28]   minibatch of each step (channels 1;
                                  rank 4 so that spikesim's snn_h5_read, rank <= 4, reads it)
    /batches/labels               int32 [10, 16]
    /batches/file_index           int64 [10, 16]              position in the training file
    /schedule                     int64 [2]: total_steps 10, warmup_steps 2
    /expected/losses              float32 [10]   loss of each step, before its update
    /expected/grad_norm           float32 [10]   global gradient L2 norm before clipping
    /expected/lr                  float64 [10]   learning rate of each step
    /expected/parameters_after/<name>  float32   parameters after the 10 steps (BN running
                                  statistics included)
    root attributes: generator, torch_version, description

Deterministic (seed 0, one thread, HDF5 object timestamps off, libver 1.10): the script runs
every training twice and asserts identical results, and two runs of the script give
byte-identical files.
"""

import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import spikesim_ref as R  # noqa: E402
import train_ref as TR  # noqa: E402

SEED = 0
STEPS = 10
BATCH = 16
WARMUP = 2
LR = 0.01
WD = 0.01
SMOOTHING = 0.1
CLIP = 1.0

# train.warmup_epochs is chosen so that spikesim's own rule (W = round(warmup_epochs *
# steps_per_epoch), steps_per_epoch = train_limit / batch_size with val_fraction 0) gives W = 2.
TRAIN_YAML = f"""train:
  epochs: 1
  batch_size: {BATCH}
  lr: {LR}
  weight_decay: {WD}
  warmup_epochs: {WARMUP / STEPS}
  label_smoothing: {SMOOTHING}
  grad_clip: {CLIP}
  val_fraction: 0
"""


def model_config(attention):
    return R.ModelConfig(name=f"golden_train_{attention}", patch=7, dim=32, heads=2, blocks=2,
                         mlp_ratio=2, timesteps=4, residual="ms", attention=attention)


def config_text(cfg):
    """Golden-file /config (spikesim_ref.config_to_yaml) plus the training keys; data: the
    training split, first 160 images."""
    lines = R.config_to_yaml(cfg, seed=SEED, limit=STEPS * BATCH).splitlines()
    i = lines.index("  source: idx")
    lines[i + 1:i + 1] = ["  split: train", f"  train_limit: {STEPS * BATCH}"]
    return "\n".join(lines) + "\n" + TRAIN_YAML


def run(attention, images, labels):
    """Initialises the model (seed 0) and runs STEPS training steps with train_ref's own code.
    Returns (initial parameters, final parameters, losses, grad norms, lrs)."""
    torch.manual_seed(SEED)
    model = R.build_model(model_config(attention))
    TR.spikformer_init(model)
    # export_state_dict's arrays share memory with the tensors: copy before training
    init = {k: v.copy() for k, v in R.export_state_dict(model).items()}
    opt = TR.make_optimizer(model, LR, WD)
    losses, norms, lrs = [], [], []
    for i in range(STEPS):
        xb = images[i].unsqueeze(1).float() / 255               # [B, 1, 28, 28]
        yb = labels[i].long()
        lr = TR.lr_at_step(i, LR, WARMUP, STEPS)
        loss, _, norm = TR.train_step(model, opt, xb, yb, lr, SMOOTHING, CLIP)
        losses.append(loss.item())
        norms.append(norm.item())
        lrs.append(lr)
    after = {k: v.copy() for k, v in R.export_state_dict(model).items()}
    return (init, after, np.array(losses, np.float32), np.array(norms, np.float32),
            np.array(lrs, np.float64))


def write(path, cfg_text, init, after, images, labels, index, losses, norms, lrs, attention):
    import h5py
    utf8 = h5py.string_dtype("utf-8")
    tmp = path + ".tmp"
    group, dataset = R.h5_group, R.h5_dataset
    with h5py.File(R.h5_create(tmp)) as f:
        attrs = {
            "generator": "tests/reference/make_golden_train.py",
            "torch_version": torch.__version__,
            "description": (
                f"first {STEPS} training steps of the tiny {attention} model in the PyTorch "
                f"reference trainer (train_ref.train_step): initial parameters (seed {SEED}, "
                f"Spikformer init), the minibatches (first {STEPS * BATCH} Fashion-MNIST "
                f"training images in file order, {BATCH} per step), the schedule (total, "
                f"warm-up steps), the loss of each step before its update and the gradient "
                f"norm before clipping (cross-entropy with label smoothing {SMOOTHING}, "
                f"batch-statistics BatchNorm, clip {CLIP}, AdamW lr {LR} weight decay {WD} on "
                f"Linear weights), and the parameters after the last step"),
        }
        for k, v in attrs.items():
            f.attrs.create(k, v, dtype=utf8)
        f.create_dataset("config", data=cfg_text, dtype=utf8, track_times=False)
        g = group(f, "parameters")
        for k, v in init.items():
            dataset(g, k, v, np.float32)
        g = group(f, "batches")
        dataset(g, "images", images, np.uint8)
        dataset(g, "labels", labels, np.int32)
        dataset(g, "file_index", index, np.int64)
        dataset(f, "schedule", [STEPS, WARMUP], np.int64)
        g = group(f, "expected")
        dataset(g, "losses", losses, np.float32)
        dataset(g, "grad_norm", norms, np.float32)
        dataset(g, "lr", lrs, np.float64)
        ga = group(g, "parameters_after")
        for k, v in after.items():
            dataset(ga, k, v, np.float32)
    os.replace(tmp, path)


def check_file(path, attention, init, after, images, losses, norms):
    """Reads the file back: layout, shapes, config loads in spikesim_ref, load_h5 gives the
    initial parameters."""
    import h5py
    import yaml
    with h5py.File(path, "r") as f:
        conf = yaml.safe_load(f["config"][()].decode("utf-8"))
        assert conf["model"]["attention"]["kind"] == attention
        assert f["batches/images"].shape == (STEPS, BATCH, 28, 28)
        assert f["batches/images"].dtype == np.uint8
        assert f["batches/labels"].shape == (STEPS, BATCH) and f["batches/labels"].dtype == np.int32
        assert f["batches/file_index"].dtype == np.int64
        assert np.array_equal(f["batches/file_index"][()].ravel(), np.arange(STEPS * BATCH))
        assert np.array_equal(f["batches/images"][()], images)
        assert f["schedule"][()].tolist() == [STEPS, WARMUP]
        assert np.array_equal(f["expected/losses"][()], losses)
        assert np.array_equal(f["expected/grad_norm"][()], norms)
        for k, v in after.items():
            assert np.array_equal(f["expected/parameters_after"][k][()], v), k
    model = R.load_h5(path)
    for k, v in R.export_state_dict(model).items():
        assert np.array_equal(v, init[k]), k


def main():
    torch.set_num_threads(1)
    xtr, ytr = TR.load_split("train")
    n = STEPS * BATCH
    assert xtr.shape[1:] == (1, 28, 28)
    images = xtr[:n].reshape(STEPS, BATCH, 28, 28)             # file order, no shuffling
    labels = ytr[:n].reshape(STEPS, BATCH)
    index = torch.arange(n, dtype=torch.int64).reshape(STEPS, BATCH)
    for attention in ("bsa", "ssa"):
        cfg = model_config(attention)
        text = config_text(cfg)
        assert R.config_from_yaml(text).__dict__ == cfg.__dict__, "config round trip"
        res = run(attention, images, labels)
        res2 = run(attention, images, labels)                  # determinism
        init, after, losses, norms, lrs = res
        assert all(np.array_equal(a, b) for a, b in zip(res[2:], res2[2:])), "not deterministic"
        assert all(np.array_equal(res[1][k], res2[1][k]) for k in res[1]), "not deterministic"
        assert np.all(np.isfinite(losses)) and np.all(np.isfinite(norms))
        assert lrs[0] == LR / WARMUP and lrs[WARMUP] == LR and lrs[-1] < LR / 10
        changed = [k for k in init if not np.array_equal(init[k], after[k])]
        assert len(changed) == len(init), sorted(set(init) - set(changed))
        path = os.path.join(HERE, f"golden_train_{attention}.h5")
        write(path, text, init, after, images.numpy(), labels.numpy().astype(np.int32),
              index.numpy(), losses, norms, lrs, attention)
        check_file(path, attention, init, after, images.numpy(), losses, norms)
        print(f"{path}: {os.path.getsize(path)} bytes, "
              f"{sum(v.size for v in init.values())} parameter values")
        print("  step   lr          loss         grad_norm   (clipped when > 1)")
        for i in range(STEPS):
            print(f"  {i:4d}   {lrs[i]:.4e}  {losses[i]:.7f}  {norms[i]:.7f}")


if __name__ == "__main__":
    main()
