"""PyTorch reference of spikesim's ANN baselines (spec/model.md sections 2-4): the spiking
transformer's graph with T = 1 and its neuron slots replaced (LIF_in, Nq/Nk/Nv, LIF_attn and
LIF_mlp_in become identities; LIF_hidden and LIF_head the activation), with the attention kernels
`softmax`, `cat` and `primal`. Parameter names are spikesim's checkpoint names (spec section 4),
so `export_state_dict` writes a file spikesim loads and `load_h5` reads one spikesim wrote.

Evaluation (`AnnRef.forward`, BatchNorm with running statistics), float32 unless the caller
passes float64 inputs and converts the module (`model.double()`); `train_forward` is the same
graph with autograd for training (BatchNorm in the module's mode, Primal's KSVD loss). The per-head kernels come from
ann_attention_ref.py (softmax, CAT) and primal_ref.py (Primal-Attention, official-code form).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

import ann_attention_ref as A
import primal_ref as P


@dataclass
class AnnConfig:
    name: str = "ann"
    image_size: int = 28
    channels: int = 1
    classes: int = 10
    patch: int = 7
    dim: int = 32
    heads: int = 2
    blocks: int = 2
    mlp_ratio: int = 2
    attention: str = "softmax"        # softmax | cat | primal
    activation: str = "relu"          # relu | gelu
    s: int = 20                       # primal: rank
    rank_multi: int = 10              # primal: M = min(N, s * rank_multi)
    eta: float = 0.05                 # primal: KSVD weight (training only)

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def samples(self) -> int:
        return P.num_samples(self.tokens, self.s, self.rank_multi)


def _linear_bn(module: nn.Module, name: str, d_in: int, d_out: int) -> None:
    setattr(module, name, nn.Linear(d_in, d_out))
    setattr(module, name + "_bn", nn.BatchNorm1d(d_out))


class Attention(nn.Module):
    def __init__(self, cfg: AnnConfig):
        super().__init__()
        D, h, d = cfg.dim, cfg.heads, cfg.head_dim
        if cfg.attention != "cat":
            _linear_bn(self, "q", D, D)
            _linear_bn(self, "k", D, D)
        if cfg.attention != "primal":
            _linear_bn(self, "v", D, D)
        _linear_bn(self, "o", D, D)
        if cfg.attention == "cat":
            self.a = nn.Linear(D, h, bias=False)
        if cfg.attention == "primal":
            M, s = cfg.samples, cfg.s
            self.E = nn.Parameter(torch.zeros(h, M, s))
            self.R = nn.Parameter(torch.zeros(h, M, s))
            self.register_parameter("lambda", nn.Parameter(torch.zeros(h, s)))
            self.c = nn.Linear(2 * s, d)


class MLP(nn.Module):
    def __init__(self, cfg: AnnConfig):
        super().__init__()
        _linear_bn(self, "fc1", cfg.dim, cfg.dim * cfg.mlp_ratio)
        _linear_bn(self, "fc2", cfg.dim * cfg.mlp_ratio, cfg.dim)


class Block(nn.Module):
    def __init__(self, cfg: AnnConfig):
        super().__init__()
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)


class AnnRef(nn.Module):
    def __init__(self, cfg: AnnConfig):
        super().__init__()
        if cfg.attention not in ("softmax", "cat", "primal"):
            raise ValueError(f"attention {cfg.attention!r}: expected softmax, cat or primal")
        self.cfg = cfg
        D, N = cfg.dim, cfg.tokens
        self.embed = nn.Linear(cfg.channels * cfg.patch * cfg.patch, D)
        self.embed_bn = nn.BatchNorm1d(D)
        self.pos = nn.Parameter(torch.zeros(N, D))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.blocks)])
        self.head = nn.Linear(D, cfg.classes)
        self.eval()

    def act(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x) if self.cfg.activation == "gelu" else F.relu(x)

    @staticmethod
    def lbn(lin: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return bn(lin(x).reshape(b * n, -1)).reshape(b, n, -1)

    def kernel(self, a: Attention, x: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        b, n, D = x.shape
        h, d = c.heads, c.head_dim
        split = lambda t: t.reshape(b, n, h, d).transpose(1, 2)            # [B, h, N, d]
        merge = lambda t: t.transpose(1, 2).reshape(b, n, D)
        if c.attention == "softmax":
            q, k, v = (split(self.lbn(getattr(a, m), getattr(a, m + "_bn"), x)) for m in "qkv")
            return merge(A.softmax_head(q, k, v))
        if c.attention == "cat":
            v = split(self.lbn(a.v, a.v_bn, x))
            g = a.a(x).transpose(1, 2)                                     # [B, h, N]
            return merge(A.cat_head(g, v))
        q = self.lbn(a.q, a.q_bn, x)
        k = self.lbn(a.k, a.k_bn, x)
        o, _, _ = P.primal_layer(q, k, x, a.E, a.R, a.c.weight, a.c.bias, h)
        return o

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images uint8 [B, C, H, W] (or float in [0, 1]) -> logits [B, classes]."""
        c = self.cfg
        x = images.float() / 255 if images.dtype == torch.uint8 else images
        x = x.to(self.pos.dtype)
        p = x.unfold(2, c.patch, c.patch).unfold(3, c.patch, c.patch)
        p = p.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], -1, c.channels * c.patch * c.patch)
        with torch.no_grad():
            U = self.lbn(self.embed, self.embed_bn, p) + self.pos
            for blk in self.blocks:
                a, m = blk.attn, blk.mlp
                U = U + self.lbn(a.o, a.o_bn, self.kernel(a, U))
                U = U + self.lbn(m.fc2, m.fc2_bn, self.act(self.lbn(m.fc1, m.fc1_bn, U)))
            return self.head(self.act(U).mean(dim=1))


def train_forward(model: AnnRef, images: torch.Tensor):
    """AnnRef's graph with autograd, for training (tests/reference/bench_ref.py times it):
    BatchNorm follows the module's mode (model.train(): batch statistics, running statistics
    updated, as spikesim's trainer). Returns (logits [B, classes], ksvd), ksvd being Primal's
    KSVD loss mean over the layers of J^2 (primal_ref.ksvd_loss; the training loss adds
    eta * ksvd) and 0 for softmax and cat."""
    c = model.cfg
    x = images.float() / 255 if images.dtype == torch.uint8 else images
    p = x.unfold(2, c.patch, c.patch).unfold(3, c.patch, c.patch)
    p = p.permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], -1, c.channels * c.patch * c.patch)
    U = model.lbn(model.embed, model.embed_bn, p) + model.pos
    Js = []
    for blk in model.blocks:
        a, m = blk.attn, blk.mlp
        if c.attention == "primal":
            q = model.lbn(a.q, a.q_bn, U)
            k = model.lbn(a.k, a.k_bn, U)
            o, e, r = P.primal_layer(q, k, U, a.E, a.R, a.c.weight, a.c.bias, c.heads)
            Js.append(P.ksvd_J(e, r, getattr(a, "lambda"), a.E, a.R))
        else:
            o = model.kernel(a, U)
        U = U + model.lbn(a.o, a.o_bn, o)
        U = U + model.lbn(m.fc2, m.fc2_bn, model.act(model.lbn(m.fc1, m.fc1_bn, U)))
    logits = model.head(model.act(U).mean(dim=1))
    return logits, (P.ksvd_loss(Js) if Js else torch.zeros(()))


def export_state_dict(model: AnnRef) -> dict:
    """spikesim's /parameters: the state_dict without num_batches_tracked, as float32 numpy."""
    return {k: v.detach().float().numpy() for k, v in model.state_dict().items()
            if not k.endswith("num_batches_tracked")}


def config_to_yaml(cfg: AnnConfig, seed: int = 0, limit: int = 8) -> str:
    return "\n".join([
        f"name: {cfg.name}", f"seed: {seed}", "data:", "  source: idx", f"  limit: {limit}",
        "model:", f"  image_size: {cfg.image_size}", f"  channels: {cfg.channels}",
        f"  classes: {cfg.classes}", f"  patch: {cfg.patch}", f"  dim: {cfg.dim}",
        f"  heads: {cfg.heads}", f"  blocks: {cfg.blocks}", f"  mlp_ratio: {cfg.mlp_ratio}",
        "  timesteps: 1", f"  activation: {cfg.activation}", "  attention:",
        f"    kind: {cfg.attention}", f"    s: {cfg.s}", f"    rank_multi: {cfg.rank_multi}",
        f"    eta: {cfg.eta}", ""])


def init_random(model: AnnRef, seed: int) -> None:
    """Lively random parameters for golden files: weights ~ N(0, 1/fan_in), BN affine and running
    statistics spread, primal E, R orthonormal columns and lambda ~ U(0, 1), as spikesim's init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("_bn.weight"):
                t.copy_(0.75 + 0.5 * torch.rand(t.shape, generator=g))
            elif name.endswith(".E") or name.endswith(".R"):
                for h in range(t.shape[0]):
                    qm, _ = torch.linalg.qr(torch.randn(t.shape[1], t.shape[2], generator=g))
                    t[h].copy_(qm[:, :t.shape[2]] if qm.shape[1] >= t.shape[2] else
                               F.pad(qm, (0, t.shape[2] - qm.shape[1])))
            elif name.endswith("lambda"):
                t.copy_(torch.rand(t.shape, generator=g))
            elif t.dim() >= 2:
                t.copy_(torch.randn(t.shape, generator=g) / math.sqrt(t.shape[-1]))
            else:
                t.copy_(0.2 * torch.randn(t.shape, generator=g))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.2 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
