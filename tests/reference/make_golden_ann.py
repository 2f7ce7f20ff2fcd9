"""Writes tests/reference/golden_{softmax,cat,primal}.h5: the ANN baselines of spec section 3
evaluated by the PyTorch reference (baselines_ref.py) on the first 8 Fashion-MNIST test images.

Each file holds /config (spikesim YAML), /parameters (spikesim's checkpoint names), /input/images,
/input/labels and /expected/logits (float32, computed in float64 and rounded once, so the golden
value carries no float32 summation-order noise). tests/test_model.c evaluates the same weights
in spikesim and compares the logits with a stated tolerance: unlike the spiking golden files,
these models have real-valued activations everywhere, so float32 results depend on summation
order (BLAS, FFT) in their last bits.

    /usr/bin/python3 tests/reference/make_golden_ann.py        # ~5 s, needs python3-torch, h5py
"""
from __future__ import annotations

import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import baselines_ref as B  # noqa: E402
import make_golden as G    # noqa: E402  (Fashion-MNIST loader)
import spikesim_ref as R   # noqa: E402  (deterministic HDF5 writing)

SEED = 20251125
SAMPLES = 8
KINDS = {
    # N = 16 tokens; primal with s = 3, rank_multi = 4: M = min(16, 12) = 12 sampled tokens, so the
    # golden file exercises the sampling (and its torch.linspace indices)
    "softmax": dict(),
    "cat": dict(activation="gelu"),
    "primal": dict(s=3, rank_multi=4),
}


def make(kind: str, images: np.ndarray, labels: np.ndarray) -> None:
    cfg = B.AnnConfig(name=f"golden_{kind}", attention=kind, **KINDS[kind])
    model = B.AnnRef(cfg)
    B.init_random(model, SEED)
    x = torch.from_numpy(images)
    logits64 = model.double()(x).float()
    logits32 = model.float()(x)
    drift = (logits64 - logits32).abs().max().item()
    assert len({r.numpy().tobytes() for r in logits64}) == SAMPLES, "logits do not depend on input"
    print(f"golden_{kind}: N={cfg.tokens} D={cfg.dim} h={cfg.heads} L={cfg.blocks} "
          f"activation {cfg.activation}; |logits f64 - f32| <= {drift:.2g}; "
          f"predictions {logits64.argmax(1).tolist()}")

    path = os.path.join(HERE, f"golden_{kind}.h5")
    tmp = path + ".tmp"
    utf8 = h5py.string_dtype("utf-8")
    with h5py.File(R.h5_create(tmp)) as f:
        f.attrs.create("generator", "tests/reference/make_golden_ann.py", dtype=utf8)
        f.attrs.create("torch_version", torch.__version__, dtype=utf8)
        f.attrs.create("description", f"spikesim golden file: ANN baseline {kind}; logits of "
                       f"the PyTorch reference (float64, rounded to float32) for the first "
                       f"{SAMPLES} Fashion-MNIST test images", dtype=utf8)
        f.create_dataset("config", data=B.config_to_yaml(cfg, seed=SEED, limit=SAMPLES),
                         dtype=utf8, track_times=False)
        p = R.h5_group(f, "parameters")
        for k, v in B.export_state_dict(model).items():
            R.h5_dataset(p, k, v, np.float32)
        g = R.h5_group(f, "input")
        R.h5_dataset(g, "images", images, np.uint8)
        R.h5_dataset(g, "labels", labels, np.uint8)
        e = R.h5_group(f, "expected")
        R.h5_dataset(e, "logits", logits64.numpy(), np.float32)
    os.replace(tmp, path)
    print(f"  wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")


def main() -> None:
    torch.set_num_threads(1)
    images, labels = G.load_fashion_mnist_test(SAMPLES)
    for kind in sys.argv[1:] or KINDS:
        make(kind, images, labels)


if __name__ == "__main__":
    main()
