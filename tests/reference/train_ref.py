#!/usr/bin/python3
"""Surrogate-gradient training of the spikesim reference model (docs: tests/reference/README.md).

    /usr/bin/python3 tests/reference/train_ref.py --attention bsa --lr 1e-2 --threads 1 \
        --out configs/checkpoints/fmnist_bsa_ref.h5          # from the repository root
    /usr/bin/python3 tests/reference/train_ref.py --selftest  # gradient and graph checks
    /usr/bin/python3 tests/reference/train_ref.py --compare RUN.h5   # spikesim run vs reference

Trains spikesim_ref.SpikeSimRef (the inference reference, unchanged) with a separate training
forward that reads and writes the same module's parameters and BN buffers, so the state_dict
names are exactly the checkpoint names of spec section 4. The trained model is then evaluated
with spikesim_ref's own forward (eval mode, running BN statistics: exactly what spikesim's C
engine computes) and written as an HDF5 checkpoint (/parameters, /config, root attributes).
This file is also the reference the C trainer is checked against, so its semantics are pinned
here.

TRAINING SEMANTICS
==================
Data.  Fashion-MNIST IDX files (gzip) under /usr/share/datasets/fashion-mnist; headers of 16
  (images) and 8 (labels) bytes. x = uint8 / 255 in float32, direct encoding: the same image at
  every timestep. The training split (60,000) is used in the order of a seeded permutation per
  epoch (torch.Generator seeded with --seed + epoch; torch.randperm), the first --train-samples
  images of that permutation, in batches of --batch (the last partial batch is dropped).
  Nothing is held out (unless --holdout K: the last K training images are excluded and
  evaluated at the end, for tuning); the test split is never seen during training (accuracy is
  reported once, at the end).

Graph.  Exactly spikesim_ref's (spec section 2), evaluated layer by layer over all T timesteps
  at once ("multi-step", as Spikformer; identical to the per-timestep loop of the reference
  because no population feeds back to an earlier one). Tensors are [T, B, N, width].
      U0 = BN_embed(patches @ embed.weight^T + embed.bias) + pos        (same for every t)
      ms block: S = LIF_in(U); Q,K,V = N(BN(Linear(S))); A = LIF_attn(kernel(Q,K,V));
                U = U + BN_o(o(A)); U = U + BN_fc2(fc2(LIF_hidden(BN_fc1(fc1(LIF_mlp_in(U))))))
      logits = mean_{t,n} LIF_head(U) @ head.weight^T + head.bias
  (residual `sew` is implemented too, following spikesim_ref._block_sew, but has not been
  trained to an accuracy.) q, k and v share their input; their Linear+BN run as one matmul and
  one batch_norm over the concatenated features (BN is per feature: the same as three calls).

BatchNorm in training.  Every BN is F.batch_norm(training=True, momentum=0.1, eps=1e-5) on the
  rows of the flattened [T*B*N, features] tensor: batch mean and biased variance normalise, and
  the running statistics are updated with PyTorch's rule running = 0.9 running + 0.1 batch, the
  running variance from the unbiased batch variance (n / (n - 1), n = T*B*N). The embedding is
  the same at every timestep; it is repeated T times before its BN so that n = T*B*N there too.
  Evaluation uses the running statistics (spikesim_ref, eval mode).

Neurons (MultiStepLIF, a custom autograd Function; checked against autograd through the time
  loop by --selftest). Forward in float32 in the operation order of spikesim_ref.LIFNode:
      H[t] = V[t-1] + (X[t] - (V[t-1] - v_reset)) / tau          (decay_input; V[-1] = v_reset)
      S[t] = H[t] >= th                 bipolar: S = [H >= th] - [H <= -th]
      V[t] = v_reset where S != 0 else H      (hard; bipolar Q/K reset to 0; soft: H - th*S)
  Backward (methods.md 1.4, detach_reset = True: the reset carries no gradient through S):
      psi[t]   = g'(H[t] - th)          bipolar: g'(H[t] - th) + g'(-H[t] - th)
      g'(x)    = alpha * sg(alpha x) * (1 - sg(alpha x))      (sigmoid, alpha = 4; sg = logistic)
      gamma[t] = 1 - |S[t]| (hard reset)  or  1 (soft reset)
      dH[T] = 0;  for t = T-1 .. 0:
          dH[t] = dS[t] * psi[t] + dH[t+1] * (1 - 1/tau) * gamma[t]
          dX[t] = dH[t] / tau   (decay_input; else dH[t])
  Defaults: LIF tau 2, v_th 1, v_reset 0; bsa Q/K bipolar threshold qk_threshold = 1, hard
  reset to 0; attention neuron threshold 0.125 (bsa) / 0.5 (ssa).

Attention (per head, [T, B, h, N, d]).
  ssa: O = (Q K^T * 0.125) V in float32, ordinary autograd.
  bsa: A = Q K^T (float32, exact integers), P = Shiftmax(A), O = P V (float32 matmul, autograd).
       Shiftmax (ShiftmaxSTE, custom Function): forward is exactly spikesim_ref's integer
       Shiftmax (P = 2^(z - m - r), z = floor(A * 2^-k), k = 2 for d = 16, rounding 'round'),
       computed by shiftmax_f32 in float32 where that is exact (else by
       spikesim_ref.shiftmax_exponents) and asserted equal to the reference by --selftest.
       Backward: straight-through for floor (dz/dA = s = 2^-k), the row max m_i and r_i are
       constants, so dP_ij/dA_ij = ln2 * P_ij * s elementwise and no cross terms:
           dL/dA = dL/dP * P * (ln 2 * s).

Initialisation (Spikformer's), in named_modules order from torch.manual_seed(--seed): every
  Linear weight trunc_normal(std 0.02, bounds +-2 absolute, i.e. timm's default), bias 0; BN
  weight 1, bias 0, running mean 0, running var 1; pos trunc_normal(std 0.02).

Optimisation.  Cross-entropy with label smoothing (--label-smoothing, 0.1) on the logits,
  mean over the batch. AdamW (PyTorch's: decoupled decay p -= lr*wd*p, betas 0.9, 0.999,
  eps 1e-8) with weight decay --wd (0.01) on the Linear weights only (biases, BN affine
  parameters and pos: no decay). Gradient clipping at global L2 norm --grad-clip (1.0,
  spikesim's train.grad_clip default; torch.nn.utils.clip_grad_norm_, factor
  clip / (norm + 1e-6) when norm > clip). Learning rate (--lr; the shipped checkpoints use
  1e-2, the best of 2e-3 / 5e-3 / 1e-2 / 2e-2 on 16k-image runs with a 2k holdout) per
  optimiser step i (0-based) of
  S = epochs * steps_per_epoch steps, W = round(--warmup * steps_per_epoch) warm-up steps:
      lr_i = lr * (i + 1) / W                                   for i < W
      lr_i = lr * 0.5 * (1 + cos(pi * (i - W) / (S - W)))       otherwise
  torch.set_num_threads(--threads, default 2; the shipped checkpoints were trained with 1
  thread each, the two side by side). Deterministic for a fixed thread count.

Checkpoint (HDF5, same conventions as make_golden.py: libver 1.10, no timestamps, gzip+shuffle
  on datasets of >= 1024 elements): /parameters/<state_dict name> float32 (no
  num_batches_tracked), /config (scalar UTF-8 spikesim YAML config of the model, data.path set),
  root attributes generator, torch_version, train_command, test_accuracy (full 10,000-image test
  set, spikesim_ref eval forward), test_accuracy_1000, train_seconds, train_samples_seen,
  description. After writing, the file is loaded back with spikesim_ref.load_h5 and must give
  bit-identical logits on the first 1000 test images.

Python: /usr/bin/python3 (Debian, torch 1.13, h5py, numpy, PyYAML).
"""

import argparse
import gzip
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import spikesim_ref as R  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------

def load_split(split, data_dir=DATA_DIR):
    """(images uint8 [n, 1, 28, 28], labels int64 [n]) of split 'train' or 't10k'."""
    with gzip.open(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[0:4], "big") == 0x00000803
    n, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    images = np.frombuffer(raw, np.uint8, count=n * rows * cols, offset=16).reshape(n, 1, rows, cols)
    with gzip.open(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[0:4], "big") == 0x00000801
    assert int.from_bytes(raw[4:8], "big") == n
    labels = np.frombuffer(raw, np.uint8, count=n, offset=8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


# ----------------------------------------------------------------------------------------------
# surrogate gradients (methods.md 1.3), x = H - threshold
# ----------------------------------------------------------------------------------------------

def surrogate_grad(x, kind="sigmoid", alpha=4.0):
    if kind == "sigmoid":
        sg = torch.sigmoid(alpha * x)
        return (1.0 - sg).mul_(sg).mul_(alpha)        # alpha * sg * (1 - sg)
    if kind == "atan":
        return alpha / (2.0 * (1.0 + (math.pi / 2.0 * alpha * x) ** 2))
    if kind == "triangle":          # SpikingJelly's PiecewiseQuadratic
        return torch.clamp(alpha - alpha * alpha * x.abs(), min=0.0)
    raise ValueError(kind)


class MultiStepLIF(torch.autograd.Function):
    """LIF over the leading time axis: x [T, ...] -> spikes [T, ...] (float32 0/1 or -1/0/1).
    Forward in spikesim_ref.LIFNode's operation order; backward is the BPTT recursion of the
    module docstring (detach_reset = True)."""

    @staticmethod
    def forward(ctx, x, tau, th, v_reset, decay_input, bipolar, surrogate, alpha):
        vr = 0.0 if v_reset is None else v_reset
        v = torch.full_like(x[0], vr)
        H = torch.empty_like(x)
        S = torch.empty_like(x)
        for t in range(x.shape[0]):
            h = H[t]
            # the same IEEE operations as spikesim_ref.LIFNode (a + b == b + a exactly)
            if decay_input:
                if vr == 0.0:
                    torch.sub(x[t], v, out=h)                  # (X - V)
                else:
                    torch.sub(x[t], v - vr, out=h)             # (X - (V - v_reset))
                h.div_(tau).add_(v)                           # V + (...) / tau
            else:
                if vr == 0.0:
                    torch.sub(v, v / tau, out=h)               # V - V / tau
                else:
                    torch.sub(v, (v - vr) / tau, out=h)        # V - (V - v_reset) / tau
                h.add_(x[t])                                  # ... + X
            fp = h >= th
            if bipolar:
                fn = h <= -th
                torch.sub(fp.to(x.dtype), fn.to(x.dtype), out=S[t])
                fired = fp | fn
            else:
                S[t].copy_(fp)
                fired = fp
            if v_reset is None:
                v = h - th * S[t]
            else:
                v = h.masked_fill(fired, v_reset)
        ctx.save_for_backward(H, S)
        ctx.cfg = (tau, th, v_reset, decay_input, bipolar, surrogate, alpha)
        return S

    @staticmethod
    def backward(ctx, gS):
        H, S = ctx.saved_tensors
        tau, th, v_reset, decay_input, bipolar, surrogate, alpha = ctx.cfg
        psi = surrogate_grad(H - th, surrogate, alpha)
        if bipolar:
            psi = psi + surrogate_grad(-H - th, surrogate, alpha)
        decay = 1.0 - 1.0 / tau                       # dH[t+1]/dV[t]
        # (1 - 1/tau) * gamma[t], gamma = dV[t]/dH[t] with the reset detached: 1 - |S| (hard), 1 (soft)
        if v_reset is not None:
            cg = (S.abs() if bipolar else S).mul(-decay).add_(decay)   # exact: S in {0, +-1}
        G = gS * psi                                  # dS[t] * psi[t]
        for t in range(H.shape[0] - 2, -1, -1):       # dH[t] += dH[t+1] * (1 - 1/tau) * gamma[t]
            if v_reset is not None:
                G[t].addcmul_(G[t + 1], cg[t])
            else:
                G[t].add_(G[t + 1], alpha=decay)
        if decay_input:
            G.div_(tau)                               # dX[t] = dH[t] / tau
        return G, None, None, None, None, None, None, None


def lif(node: R.LIFNode, x, surrogate="sigmoid", alpha=4.0):
    """Multi-step LIF with the hyperparameters of a spikesim_ref LIFNode."""
    return MultiStepLIF.apply(x, node.tau, node.v_threshold, node.v_reset, node.decay_input,
                              node.bipolar, surrogate, alpha)


class _Heaviside(torch.autograd.Function):
    """Per-step spike function for the autograd reference of --selftest."""

    @staticmethod
    def forward(ctx, h, th, bipolar, surrogate, alpha):
        ctx.save_for_backward(h)
        ctx.cfg = (th, bipolar, surrogate, alpha)
        s = (h >= th).to(h.dtype)
        return s - (h <= -th).to(h.dtype) if bipolar else s

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        th, bipolar, surrogate, alpha = ctx.cfg
        psi = surrogate_grad(h - th, surrogate, alpha)
        if bipolar:
            psi = psi + surrogate_grad(-h - th, surrogate, alpha)
        return g * psi, None, None, None, None


def lif_autograd(node: R.LIFNode, x, surrogate="sigmoid", alpha=4.0):
    """The same LIF written step by step for autograd (reset detached): the selftest's
    reference for MultiStepLIF.backward."""
    vr = 0.0 if node.v_reset is None else node.v_reset
    v = torch.full_like(x[0], vr)
    out = []
    for t in range(x.shape[0]):
        if node.decay_input:
            h = v + (x[t] - (v - vr)) / node.tau
        else:
            h = v - (v - vr) / node.tau + x[t]
        s = _Heaviside.apply(h, node.v_threshold, node.bipolar, surrogate, alpha)
        sd = s.detach()
        if node.v_reset is None:
            v = h - node.v_threshold * sd
        else:
            v = h * (1.0 - sd.abs()) + node.v_reset * sd.abs()
        out.append(s)
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------
# Shiftmax with a straight-through backward
# ----------------------------------------------------------------------------------------------

def _pow2_f32(e):
    """Exact 2^e in float32 for an int32 tensor e in [-126, 127], from the exponent bits."""
    return ((e + 127) << 23).view(torch.float32)


def shiftmax_f32(a, shift, rounding):
    """spikesim_ref's integer Shiftmax of integer-valued float32 scores a (last axis), computed
    in float32 where that is exact, else by spikesim_ref.shiftmax_exponents. Returns float32 P.
    Exactness: z = floor(a 2^-shift) and z - m are small integers; the row sum of 2^(z - m) is
    exact in float32 when bit_length(n) - min(z - m) <= 24 (else the fallback); r comes from frexp
    as in the reference (x*x in float64); P = 2^(z - m - r) by exponent bits (normal range)."""
    n = a.shape[-1]
    z = torch.floor(a * 2.0 ** -shift)
    m = z.amax(dim=-1, keepdim=True)
    dz = (z - m).to(torch.int32)                       # <= 0
    if n.bit_length() - int(dz.min()) > 24 or int(a.abs().max()) >= 2 ** 24:
        e, _ = R.shiftmax_exponents(a.to(torch.int64), shift, rounding)
        return R.pow2(e).to(a.dtype)
    ssum = _pow2_f32(dz).sum(dim=-1).double()          # exact, in [1, n]
    _, ex = torch.frexp(ssum)
    kk = ex.to(torch.int32) - 1                        # floor(log2 S)
    x = ssum * R.pow2(-kk)                             # S / 2^kk in [1, 2), exact
    if rounding == "round":
        r = kk + (x * x >= 2.0).to(torch.int32)
    elif rounding == "ceil":
        r = kk + (x > 1.0).to(torch.int32)
    else:
        raise ValueError(rounding)
    return _pow2_f32(dz - r.unsqueeze(-1))


class ShiftmaxSTE(torch.autograd.Function):
    """P = spikesim_ref's exact integer Shiftmax of the integer scores A (float32 in, float32
    out; shiftmax_f32, asserted equal to spikesim_ref.shiftmax_exponents by --selftest);
    backward dL/dA = dL/dP * P * ln2 * 2^-shift (floor straight-through, m and r constants)."""

    @staticmethod
    def forward(ctx, a, shift, rounding):
        p = shiftmax_f32(a, shift, rounding)
        ctx.save_for_backward(p)
        ctx.scale = LN2 * 2.0 ** -shift
        return p

    @staticmethod
    def backward(ctx, g):
        (p,) = ctx.saved_tensors
        return g * p * ctx.scale, None, None


def shiftmax_ste_trick(a, shift, rounding):
    """The same estimator with the x + (f(x) - x).detach() trick (selftest reference)."""
    s = 2.0 ** -shift
    with torch.no_grad():
        ai = a.to(torch.int64)
        z = torch.div(ai, 2 ** shift, rounding_mode="floor")
        e, r = R.shiftmax_exponents(ai, shift, rounding)
        const = (z - e).to(a.dtype)                   # m_i + r_i
    zs = a * s
    zs = zs + (z.to(a.dtype) - zs).detach()           # floor, straight through
    return torch.exp2(zs - const)


# ----------------------------------------------------------------------------------------------
# training forward on a spikesim_ref model's parameters
# ----------------------------------------------------------------------------------------------

def bn_train(bn: nn.BatchNorm1d, y2d, training=True):
    return F.batch_norm(y2d, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                        training=training, momentum=0.1, eps=bn.eps)


def linear_bn(lin, bn, x, training=True):
    """BN(Linear(x)) over the last axis, statistics over every leading axis (T, B, N)."""
    shp = x.shape
    y = F.linear(x.reshape(-1, shp[-1]), lin.weight, lin.bias)
    return bn_train(bn, y, training).reshape(*shp[:-1], -1)


def linear_bn_group(pairs, x, training=True):
    """[BN_i(Linear_i(x)) for i] for Linears sharing the input x (q, k, v), as one matmul and one
    batch_norm over the concatenated features. BN is per feature, so this is the same as
    separate calls (up to float rounding of the batch statistics); the running statistics are
    written back to each BN's buffers."""
    shp = x.shape
    lins, bns = zip(*pairs)
    w = torch.cat([l.weight for l in lins])
    b = torch.cat([l.bias for l in lins])
    rm = torch.cat([n.running_mean for n in bns])
    rv = torch.cat([n.running_var for n in bns])
    y = F.linear(x.reshape(-1, shp[-1]), w, b)
    y = F.batch_norm(y, rm, rv, torch.cat([n.weight for n in bns]), torch.cat([n.bias for n in bns]),
                     training=training, momentum=0.1, eps=bns[0].eps)
    out, i = [], 0
    with torch.no_grad():
        for lin, n in pairs:
            f = lin.out_features
            n.running_mean.copy_(rm[i:i + f])
            n.running_var.copy_(rv[i:i + f])
            i += f
    i = 0
    for lin, _ in pairs:
        f = lin.out_features
        out.append(y[:, i:i + f].contiguous().reshape(*shp[:-1], f))
        i += f
    return out


def attention_train(cfg: R.ModelConfig, q, k, v):
    T, B, N, D = q.shape
    h, d = cfg.heads, cfg.head_dim
    qh, kh, vh = (x.reshape(T, B, N, h, d).transpose(2, 3) for x in (q, k, v))   # [T,B,h,N,d]
    if cfg.attention == "bsa":
        a = torch.matmul(qh, kh.transpose(-1, -2))
        p = ShiftmaxSTE.apply(a, cfg.resolved_shift(), cfg.rounding)
        o = torch.matmul(p, vh)
    else:
        o = torch.matmul(torch.matmul(qh, kh.transpose(-1, -2)) * cfg.resolved_ssa_scale(), vh)
    return o.transpose(2, 3).reshape(T, B, N, D)


def train_forward(model: R.SpikeSimRef, x, training=True, lif_fn=lif, stats=None, record=None):
    """Training-mode forward (batch-statistics BN, running statistics updated in place).
    x float32 [B, C, H, W] in [0, 1]. Returns logits [B, classes]. If stats is a dict, the
    firing counts (nonzero spikes, entries) per population are accumulated into it; if record
    is a dict, the spikes [T, B, N, width] are stored in it by population.
    training=False runs the same multi-step graph with running BN statistics and spikesim_ref's
    float64 embedding; --selftest uses it to show that this graph is the reference's (bit for
    bit on the golden files)."""
    c = model.cfg
    T = c.timesteps

    def run(node, inp):
        s = lif_fn(node, inp)
        if stats is not None:
            nz, tot = stats.get(node.name, (0, 0))
            stats[node.name] = (nz + int((s != 0).sum()), tot + s.numel())
        if record is not None:
            record[node.name] = s.detach()
        return s

    def lbn(lin, bn, inp):
        return linear_bn(lin, bn, inp, training)

    if training:
        p = R.patchify(x, c.patch)                                # [B, N, K]
        B, N, _ = p.shape
        y = F.linear(p, model.embed.weight, model.embed.bias)      # [B, N, D]
        y = y.unsqueeze(0).expand(T, B, N, c.dim).reshape(T * B * N, c.dim)
        U = bn_train(model.embed_bn, y).reshape(T, B, N, c.dim) + model.pos
    else:
        U0 = model.embedding(x)                                   # spikesim_ref's U0
        U = U0.unsqueeze(0).expand(T, *U0.shape).contiguous()
    if c.residual == "ms":
        for blk in model.blocks:
            a, m = blk.attn, blk.mlp
            S = run(blk.lif_in, U)
            q, k, v = linear_bn_group([(a.q, a.q_bn), (a.k, a.k_bn), (a.v, a.v_bn)], S, training)
            Q, K, V = run(a.q_lif, q), run(a.k_lif, k), run(a.v_lif, v)
            A = run(a.attn_lif, attention_train(c, Q, K, V))
            U = U + lbn(a.o, a.o_bn, A)
            Hh = run(m.hidden_lif, lbn(m.fc1, m.fc1_bn, run(m.lif_in, U)))
            U = U + lbn(m.fc2, m.fc2_bn, Hh)
        Y = run(model.head_lif, U)
    else:
        X = run(model.blocks[0].lif_in, U)
        for blk in model.blocks:
            a, m = blk.attn, blk.mlp
            q, k, v = linear_bn_group([(a.q, a.q_bn), (a.k, a.k_bn), (a.v, a.v_bn)], X, training)
            Q, K, V = run(a.q_lif, q), run(a.k_lif, k), run(a.v_lif, v)
            A = run(a.attn_lif, attention_train(c, Q, K, V))
            X = X + run(a.o_lif, lbn(a.o, a.o_bn, A))
            Hh = run(m.hidden_lif, lbn(m.fc1, m.fc1_bn, X))
            X = X + run(m.out_lif, lbn(m.fc2, m.fc2_bn, Hh))
        Y = X
    return F.linear(Y.mean(dim=(0, 2)), model.head.weight, model.head.bias)


def spikformer_init(model: R.SpikeSimRef):
    with torch.no_grad():
        for _, mod in model.named_modules():
            if isinstance(mod, nn.Linear):
                nn.init.trunc_normal_(mod.weight, std=0.02, a=-2.0, b=2.0)
                nn.init.zeros_(mod.bias)
            elif isinstance(mod, nn.BatchNorm1d):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
                mod.running_mean.zero_()
                mod.running_var.fill_(1.0)
                mod.num_batches_tracked.zero_()
        nn.init.trunc_normal_(model.pos, std=0.02, a=-2.0, b=2.0)


# ----------------------------------------------------------------------------------------------
# one optimiser step (main's training loop and make_golden_train.py both call these)
# ----------------------------------------------------------------------------------------------

def make_optimizer(model: R.SpikeSimRef, lr, wd):
    """torch.optim.AdamW (betas 0.9, 0.999, eps 1e-8) with weight decay wd on the Linear
    weights only (biases, BN affine parameters and pos: no decay)."""
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        mod = model.get_submodule(n.rsplit(".", 1)[0]) if "." in n else None
        (decay if isinstance(mod, nn.Linear) and n.endswith(".weight") else no_decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.999), eps=1e-8)


def lr_at_step(i, lr, warm, total):
    """Learning rate of optimiser step i (0-based) of total steps with warm warm-up steps:
    linear warm-up lr * (i + 1) / warm, then cosine to 0 (module docstring)."""
    if i < warm:
        return lr * (i + 1) / warm
    return lr * 0.5 * (1.0 + math.cos(math.pi * (i - warm) / max(1, total - warm)))


def train_step(model: R.SpikeSimRef, opt, xb, yb, lr, label_smoothing=0.1, grad_clip=1.0):
    """One training step: training forward (batch-statistics BN, running statistics updated),
    cross-entropy with label smoothing (mean over the batch), backward, global gradient-norm
    clipping at grad_clip (0: off), AdamW step at learning rate lr. xb float32 [B, C, H, W] in
    [0, 1], yb int64 [B]. Returns (loss, logits, grad_norm): the loss and logits computed before
    the update, and the global L2 gradient norm before clipping (a float32 tensor; None when
    grad_clip is 0)."""
    for gr in opt.param_groups:
        gr["lr"] = lr
    logits = train_forward(model, xb)
    loss = F.cross_entropy(logits, yb, label_smoothing=label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = None
    if grad_clip > 0:
        norm = nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss, logits, norm


# ----------------------------------------------------------------------------------------------
# evaluation with the reference's inference forward
# ----------------------------------------------------------------------------------------------

def evaluate(model: R.SpikeSimRef, images, labels, batch=500, rates=False):
    """spikesim_ref eval forward (running BN stats, exact inference numerics). Returns
    (accuracy, logits float32 [n, C], rates {population: (rate, rate_plus, rate_minus)})."""
    logits = []
    counts = {}
    total = {}
    with torch.no_grad():
        for i in range(0, images.shape[0], batch):
            out = model(images[i:i + batch], record=rates)
            logits.append(out["logits"])
            for name, s in out["spikes"].items():
                s = s.to(torch.int64)
                c = counts.get(name, np.zeros(3, np.int64))
                c += np.array([int((s != 0).sum()), int((s > 0).sum()), int((s < 0).sum())])
                counts[name] = c
                total[name] = total.get(name, 0) + s.numel()
    logits = torch.cat(logits)
    acc = (logits.argmax(1) == labels).double().mean().item()
    rt = {n: tuple(counts[n] / total[n]) for n in counts}
    return acc, logits, rt


# ----------------------------------------------------------------------------------------------
# checkpoint
# ----------------------------------------------------------------------------------------------

def checkpoint_config(cfg: R.ModelConfig, seed: int) -> str:
    """A spikesim YAML config for the checkpoint's model (golden-file style, data.path set)."""
    text = R.config_to_yaml(cfg, seed=seed, limit=10000)
    lines = text.splitlines()
    i = lines.index("  source: idx")
    lines[i + 1:i + 1] = [f"  path: {DATA_DIR}", "  split: test"]
    return "\n".join(lines) + "\n"


def write_checkpoint(path, model, cfg_text, attrs):
    import h5py
    utf8 = h5py.string_dtype("utf-8")
    tmp = path + ".tmp"
    with h5py.File(R.h5_create(tmp)) as f:
        for k, v in attrs.items():
            if isinstance(v, str):
                f.attrs.create(k, v, dtype=utf8)
            else:
                f.attrs[k] = v
        f.create_dataset("config", data=cfg_text, dtype=utf8, track_times=False)
        g = R.h5_group(f, "parameters")
        for k, v in R.export_state_dict(model).items():
            R.h5_dataset(g, k, v, np.float32)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# selftest: the custom Functions against autograd references
# ----------------------------------------------------------------------------------------------

def selftest():
    torch.manual_seed(0)
    # LIF: spec test vector through the training forward
    node = R.LIFNode()
    x = torch.tensor([1.5, 0.4, 1.2, 2.5, 0.9]).reshape(5, 1)
    assert MultiStepLIF.apply(x, 2.0, 1.0, 0.0, True, False, "sigmoid", 4.0).flatten().tolist() \
        == [0, 0, 0, 1, 0]
    # gradients: fused BPTT == autograd through the loop, every neuron flavour
    flavours = [R.LIFNode(), R.LIFNode(bipolar=True), R.LIFNode(v_threshold=0.125),
                R.LIFNode(v_reset=None), R.LIFNode(decay_input=False), R.LIFNode(v_reset=0.25),
                R.LIFNode(tau=3.0, v_threshold=0.5, bipolar=True, v_reset=None)]
    for node in flavours:
        for sur in ("sigmoid", "atan", "triangle"):
            x = (torch.randn(6, 300, dtype=torch.float64) * 1.5 + 0.8).requires_grad_()
            w = torch.randn(6, 300, dtype=torch.float64)
            s1 = lif(node, x, sur, 4.0)
            g1, = torch.autograd.grad((s1 * w).sum(), x)
            s2 = lif_autograd(node, x, sur, 4.0)
            g2, = torch.autograd.grad((s2 * w).sum(), x)
            assert torch.equal(s1, s2), node
            assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-12), (node, sur)
            # the forward equals spikesim_ref.LIFNode step by step
            ref = R.LIFNode(node.tau, node.v_threshold, node.v_reset, node.decay_input, node.bipolar)
            s3 = torch.stack([ref(x[t].detach()) for t in range(x.shape[0])])
            assert torch.equal(s1, s3), node
    # Shiftmax: forward == spikesim_ref, backward == the detach trick
    def ternary(shape, p0):                           # P(0) = p0, +1 and -1 equally likely
        u = torch.rand(shape)
        return (u > (1 + p0) / 2).float() - (u < (1 - p0) / 2).float()
    q = torch.cat([ternary((4, 2, 49, 16), p0) for p0 in (0.0, 0.5, 0.9, 1.0)])
    k = torch.cat([ternary((4, 2, 49, 16), p0) for p0 in (0.9, 0.0, 0.5, 0.8)])
    a = torch.matmul(q, k.transpose(-1, -2)).requires_grad_()
    w = torch.randn(a.shape)
    for shift in (0, 1, 2, 3):                        # shift 0 takes the int64 fallback
        for rnd in ("round", "ceil"):
            p1 = ShiftmaxSTE.apply(a, shift, rnd)
            e, _ = R.shiftmax_exponents(a.detach().to(torch.int64), shift, rnd)
            assert torch.equal(p1, R.pow2(e).float())
            p2 = shiftmax_ste_trick(a, shift, rnd)
            assert torch.equal(p1, p2)
            g1, = torch.autograd.grad((p1 * w).sum(), a)
            g2, = torch.autograd.grad((p2 * w).sum(), a)
            assert torch.allclose(g1, g2, rtol=1e-6, atol=0), shift
    # the multi-step layer-wise graph with running BN statistics is spikesim_ref's inference:
    # bit-identical logits and spikes on the three golden files
    import h5py
    for stem in ("bsa", "ssa", "sew"):
        path = os.path.join(HERE, f"golden_{stem}.h5")
        model = R.load_h5(path)
        with h5py.File(path, "r") as f:
            images = torch.from_numpy(f["input/images"][()])
            want = torch.from_numpy(f["expected/logits"][()])
            spikes = {n: torch.from_numpy(f["expected/nodes"][n]["spikes"][()])
                      for n in f["expected/nodes"]}
        rec = {}
        with torch.no_grad():
            got = train_forward(model, images.float() / 255, training=False, record=rec)
        assert torch.equal(got, want), f"golden_{stem}: multi-step eval logits differ"
        assert set(rec) == set(spikes), stem
        for n, s in rec.items():
            s = s.permute(1, 0, 2, 3).reshape(s.shape[1], s.shape[0], -1).to(torch.int8)
            assert torch.equal(s, spikes[n]), f"golden_{stem}: {n} spikes differ"
    # training forward and backward run for every attention x residual, reaching every parameter;
    # BN statistics: the flattened [T*B*N] rows (checked on the embedding BN)
    cfg = R.ModelConfig(patch=7, dim=32, heads=2, blocks=2, mlp_ratio=2)
    for att in ("bsa", "ssa"):
        for res in ("ms", "sew"):
            cfg.attention, cfg.residual = att, res
            model = R.build_model(R.ModelConfig(**cfg.__dict__))
            spikformer_init(model)
            xb = torch.rand(4, 1, 28, 28)
            logits = train_forward(model, xb)
            logits.sum().backward()
            missing = [n for n, p in model.named_parameters() if p.grad is None]
            assert not missing, (att, res, missing)
            y = F.linear(R.patchify(xb, cfg.patch), model.embed.weight, model.embed.bias)
            y = y.detach().reshape(-1, cfg.dim).double()
            n = y.shape[0] * cfg.timesteps                # T*B*N rows, embedding repeated T times
            want_rv = 0.9 + 0.1 * y.var(dim=0, unbiased=False) * n / (n - 1)
            assert torch.allclose(model.embed_bn.running_mean.double(), 0.1 * y.mean(0), atol=1e-7)
            assert torch.allclose(model.embed_bn.running_var.double(), want_rv, atol=1e-7)
    print("selftest ok: MultiStepLIF == autograd BPTT (7 neuron flavours x 3 surrogates); "
          "ShiftmaxSTE forward == spikesim_ref, backward == detach trick; multi-step eval graph "
          "== golden_{bsa,ssa,sew}.h5 logits and spikes bit for bit; bsa/ssa x ms/sew backward "
          "reaches every parameter; embedding BN running stats over T*B*N rows")


# ----------------------------------------------------------------------------------------------
# comparison with a spikesim run file
# ----------------------------------------------------------------------------------------------

def compare_run(run_path, checkpoint=None, batch=500):
    """Recomputes a `spikesim run` output file with spikesim_ref: the model is built from the
    run's /config and /parameters (a run file is a checkpoint), optionally asserted equal to
    `checkpoint`; the samples are /outputs/sample_index of the run's split. Prints prediction
    agreement, logit differences, the accuracy of both, and per-population spike mismatches on
    the recorded samples (/nodes/<population>/observables/spikes/data). Returns the agreement."""
    import h5py
    import yaml
    model = R.load_h5(run_path)
    if checkpoint:
        ck = R.load_h5(checkpoint)
        a, b = model.state_dict(), ck.state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{run_path}: parameters differ from {checkpoint}"
    with h5py.File(run_path, "r") as f:
        conf = yaml.safe_load(f["config"][()].decode("utf-8"))
        idx = torch.from_numpy(f["outputs/sample_index"][()])
        c_logits = torch.from_numpy(f["outputs/logits"][()])
        c_pred = torch.from_numpy(f["outputs/predictions"][()]).long()
        c_labels = torch.from_numpy(f["outputs/labels"][()]).long()
        c_acc = float(f["summary"].attrs["accuracy"])
        rec = {}
        for name in model.populations():
            ds = f.get(f"nodes/{name}/observables/spikes/data")
            if ds is not None and ds.shape[0]:
                rec[name] = torch.from_numpy(ds[()])
    data = conf.get("data", {})
    assert data.get("source", "idx") == "idx" and data.get("encoding", "direct") == "direct"
    split = "t10k" if data.get("split", "test") == "test" else "train"
    images, labels = load_split(split, data.get("path", DATA_DIR))
    images, labels = images[idx], labels[idx]
    assert torch.equal(labels, c_labels), "labels differ: not the same samples"
    _, r_logits, _ = evaluate(model, images, labels, batch)
    r_pred = r_logits.argmax(1)
    r_acc = (r_pred == labels).double().mean().item()
    agree = (r_pred == c_pred).double().mean().item()
    diff = (r_logits - c_logits).abs()
    print(f"{run_path} ({model.cfg.attention}, {len(idx)} samples of {split}):")
    print(f"  accuracy: spikesim {c_acc:.4f}, spikesim_ref {r_acc:.4f}; predictions agree on "
          f"{int((r_pred == c_pred).sum())}/{len(idx)} ({agree:.4f})")
    print(f"  logits: bit-identical on {int((diff.amax(1) == 0).sum())}/{len(idx)} samples; max "
          f"|difference| {diff.max().item():.3g}, mean {diff.mean().item():.3g}")
    bad = torch.nonzero(r_pred != c_pred).flatten().tolist()
    for i in bad[:10]:
        print(f"    sample {int(idx[i])}: spikesim {int(c_pred[i])} ref {int(r_pred[i])} label "
              f"{int(labels[i])}; logits ref {[round(v, 4) for v in r_logits[i].tolist()]}")
    if rec:
        n = next(iter(rec.values())).shape[0]
        total = mism = 0
        per_pop = {}
        bad_samples = set()
        for i in range(0, n, 100):
            with torch.no_grad():
                out = model(images[i:i + 100])
            for name, cs in rec.items():
                rs = out["spikes"][name]
                d = rs != cs[i:i + 100]
                total += rs.numel()
                mism += int(d.sum())
                per_pop[name] = per_pop.get(name, 0) + int(d.sum())
                bad_samples.update((i + torch.nonzero(d.flatten(1).any(1)).flatten()).tolist())
        worst = [(k, v) for k, v in per_pop.items() if v]
        print(f"  spikes of the {n} recorded samples: {mism} of {total} differ, in "
              f"{len(bad_samples)} samples"
              + (": " + ", ".join(f"{k} {v}" for k, v in worst) if worst else " (identical)"))
    return agree


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attention", choices=("bsa", "ssa"), default="bsa")
    ap.add_argument("--residual", choices=("ms", "sew"), default="ms")
    ap.add_argument("--name", default=None, help="config name (default fmnist_<attention>_ref)")
    ap.add_argument("--out", default=None, help="checkpoint path (.h5); none: no file")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--train-samples", type=int, default=60000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--wd", type=float, default=0.01)
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up length in epochs")
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (timing)")
    ap.add_argument("--eval-samples", type=int, default=10000, help="test images evaluated (0: none)")
    ap.add_argument("--holdout", type=int, default=0,
                    help="hold out the last HOLDOUT training images (not trained on) and report "
                         "their accuracy (for tuning without the test set)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--compare", metavar="RUN.h5",
                    help="compare a `spikesim run` output file with spikesim_ref and exit")
    ap.add_argument("--checkpoint", help="with --compare: assert the run used these parameters")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.selftest:
        selftest()
        return
    if args.compare:
        compare_run(args.compare, args.checkpoint)
        return
    cmd = "/usr/bin/python3 " + " ".join([os.path.relpath(__file__, os.getcwd())] +
                                         (sys.argv[1:] if argv is None else list(argv)))
    name = args.name or f"fmnist_{args.attention}_ref"
    cfg = R.ModelConfig(name=name, patch=4, dim=64, heads=4, blocks=2, mlp_ratio=4, timesteps=4,
                        residual=args.residual, attention=args.attention)
    torch.manual_seed(args.seed)
    model = R.build_model(R.ModelConfig(**cfg.__dict__))
    spikformer_init(model)
    print(f"{name}: attention {cfg.attention} residual {cfg.residual}, patch {cfg.patch} "
          f"(N={cfg.tokens}) D={cfg.dim} h={cfg.heads} d={cfg.head_dim} L={cfg.blocks} "
          f"hidden={cfg.hidden} T={cfg.timesteps}; "
          f"{sum(p.numel() for p in model.parameters())} parameters; threads {args.threads}")
    if cfg.attention == "bsa":
        print(f"  shiftmax shift k={cfg.resolved_shift()} rounding {cfg.rounding}, "
              f"attn threshold {cfg.resolved_attn_threshold()}, qk threshold {cfg.qk_threshold}")

    xtr, ytr = load_split("train")
    xte, yte = load_split("t10k")
    opt = make_optimizer(model, args.lr, args.wd)
    if args.holdout:
        xho, yho = xtr[-args.holdout:], ytr[-args.holdout:]
        xtr, ytr = xtr[:-args.holdout], ytr[:-args.holdout]
    n_train = min(args.train_samples, xtr.shape[0])
    spe = n_train // args.batch
    total = spe * args.epochs
    warm = max(1, round(args.warmup * spe))

    def lr_at(i):
        return lr_at_step(i, args.lr, warm, total)

    print(f"  training: {n_train} images x {args.epochs} epoch(s), batch {args.batch}, "
          f"{total} steps ({warm} warm-up), AdamW lr {args.lr} wd {args.wd}, label smoothing "
          f"{args.label_smoothing}, grad clip {args.grad_clip}")
    t0 = time.time()
    step = 0
    seen = 0
    run_loss = run_acc = 0.0
    run_n = 0
    stop = False
    for ep in range(args.epochs):
        perm = torch.randperm(xtr.shape[0], generator=torch.Generator().manual_seed(args.seed + ep))
        perm = perm[:n_train]
        for b in range(spe):
            idx = perm[b * args.batch:(b + 1) * args.batch]
            xb = xtr[idx].float() / 255
            yb = ytr[idx]
            loss, logits, _ = train_step(model, opt, xb, yb, lr_at(step), args.label_smoothing,
                                         args.grad_clip)
            step += 1
            seen += xb.shape[0]
            run_loss += loss.item()
            run_acc += (logits.argmax(1) == yb).double().mean().item()
            run_n += 1
            if step % args.log_every == 0 or step == total:
                el = time.time() - t0
                print(f"  step {step:5d}/{total} ep {seen / n_train:5.2f} loss {run_loss / run_n:.4f} "
                      f"train-acc {run_acc / run_n:.4f} lr {lr_at(step - 1):.2e} "
                      f"{el:6.0f}s {seen / el:5.0f} img/s", flush=True)
                run_loss = run_acc = 0.0
                run_n = 0
            if args.max_steps and step >= args.max_steps:
                stop = True
                break
        if stop:
            break
    train_seconds = time.time() - t0
    print(f"  trained {step} steps, {seen} images in {train_seconds:.0f} s")

    # evaluation: spikesim_ref's inference forward, eval mode
    model.eval()
    if args.holdout:
        acc_ho, _, _ = evaluate(model, xho, yho)
        print(f"  holdout accuracy (last {args.holdout} training images, eval forward): {acc_ho:.4f}")
    if not args.eval_samples:
        return
    t1 = time.time()
    ne = min(args.eval_samples, xte.shape[0])
    acc, logits, rates = evaluate(model, xte[:ne], yte[:ne], rates=True)
    acc1000 = (logits[:1000].argmax(1) == yte[:1000]).double().mean().item()
    print(f"  test accuracy (spikesim_ref eval forward, running BN stats): {acc:.4f} on {ne} "
          f"images; first 1000: {acc1000:.4f}  ({time.time() - t1:.0f} s)")
    print(f"  firing rates on {ne} test images (nonzero spikes / (samples*T*neurons)):")
    for n, (r, rp, rn) in rates.items():
        extra = f"  (+1 {rp:.4f} / -1 {rn:.4f})" if rn > 0 else ""
        print(f"    {n:26s} {r:.4f}{extra}")
    allnz = sum(rates[n][0] * model.population_widths()[n] for n in rates)
    allw = sum(model.population_widths()[n] for n in rates)
    print(f"    {'mean over all neurons':26s} {allnz / allw:.4f}")

    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        cfg_text = checkpoint_config(cfg, args.seed)
        attrs = {
            "generator": "tests/reference/train_ref.py",
            "torch_version": torch.__version__,
            "train_command": cmd,
            "test_accuracy": float(acc),
            "test_samples": int(ne),
            "test_accuracy_1000": float(acc1000),
            "train_seconds": float(round(train_seconds, 1)),
            "train_samples_seen": int(seen),
            "description": (f"spikesim {cfg.attention} ({cfg.residual}) model trained on "
                            f"Fashion-MNIST with surrogate gradients in the PyTorch reference "
                            f"(tests/reference/train_ref.py); test_accuracy is the spikesim_ref "
                            f"eval forward on the first {ne} test images"),
        }
        write_checkpoint(args.out, model, cfg_text, attrs)
        m2 = R.load_h5(args.out)
        acc2, logits2, _ = evaluate(m2, xte[:1000], yte[:1000])
        assert torch.equal(logits2, logits[:1000]), "load_h5 round trip changed the logits"
        assert acc2 == acc1000
        print(f"  wrote {args.out} ({os.path.getsize(args.out)} bytes); load_h5 round trip: "
              f"identical logits on 1000 test images, accuracy {acc2:.4f}")


if __name__ == "__main__":
    main()
