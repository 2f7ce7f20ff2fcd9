"""PyTorch reference implementation of the spikesim model (docs: tests/reference/README.md).

This module is the executable form of the model contract (/work/shared/spec/model.md): the C
simulator must reproduce its spikes bit for bit on the golden files written by make_golden.py.
It is deliberately literal: one explicit loop over timesteps, every neuron update written in the
operation order of the spec, every float32 cast where the spec puts one.

    cfg   = ModelConfig(attention="bsa", residual="ms")      # or config_from_yaml(text)
    model = build_model(cfg)
    out   = model(images_uint8)            # dict: logits, embed, spikes{population: [S,T,N*w]}
    model = load_h5("tests/reference/golden_bsa.h5")          # /config + /parameters

Numerics (what makes spike-for-spike comparison with C possible):
  * embedding: patches @ embed.weight^T + embed.bias and embed_bn by PyTorch's float64 ops
    (BN denominator sqrt(double(var) + 1e-5)), cast to float32, then + pos in float32. spikesim's
    C folds the BN into the embedding in double and accumulates in double; the two agree after
    the float32 cast unless a value lies within float64 noise of a float32 rounding midpoint,
    which embedding_margin() measures and make_golden.py excludes for the golden data;
  * everything after the embedding in float32 (module mode "f32", the reference); Linear + BN
    by ordinary PyTorch ops, whose BN denominator is sqrt(float32(running_var + eps)) (an exact
    power of two with the golden files' running_var); neurons elementwise in the literal order
    of the spec;
  * mode "f64" runs everything after the embedding in float64 (BN with the same float32
    denominator, i.e. the BN the float32 run and spikesim's float32 fold implement); make_golden.py
    uses it to show that the golden spikes do not depend on rounding, and check_exact=True
    asserts that every multi-term sum (Linear+BN, attention, head) of the float32 run is exact.

Python: /usr/bin/python3 (Debian, torch 1.13, h5py, numpy, PyYAML).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ModelConfig", "config_from_yaml", "config_from_dict", "config_to_yaml", "build_model",
    "load_h5", "save_parameters", "export_state_dict", "SpikeSimRef", "LIFNode",
    "shiftmax_exponents", "shiftmax_default_shift", "bsa_head", "ssa_head", "patchify",
    "POW2_MIN", "pow2", "significant_bits",
]


# ----------------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------------

@dataclass
class ModelConfig:
    """The model.* keys of a spikesim YAML config that the reference understands."""
    name: str = "model"
    image_size: int = 28
    channels: int = 1
    classes: int = 10
    patch: int = 7
    dim: int = 32
    heads: int = 2
    blocks: int = 2
    mlp_ratio: int = 2
    timesteps: int = 4
    residual: str = "ms"              # ms | sew
    attention: str = "bsa"            # bsa | ssa | sdsa
    scale: float = 0.0                # ssa: score scale (0 = auto 0.125); bsa: Shiftmax s (0 = auto)
    attn_threshold: float = 0.0       # 0 = auto: bsa 0.125, ssa 0.5
    qk_threshold: float = 1.0         # bsa bipolar Q/K threshold
    qk_reset: str = "hard"            # hard | soft
    rounding: str = "round"           # round | ceil
    tau: float = 2.0
    v_threshold: float = 1.0
    v_reset: Optional[float] = 0.0    # None = soft reset
    decay_input: bool = True

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def hidden(self) -> int:
        return self.dim * self.mlp_ratio

    def resolved_attn_threshold(self) -> float:
        if self.attn_threshold:
            return float(self.attn_threshold)
        return 0.125 if self.attention == "bsa" else 0.5

    def resolved_shift(self) -> int:
        """bsa: k with s = 2^-k."""
        if self.scale:
            k = -math.log2(self.scale)
            if k != int(k):
                raise ValueError(f"bsa scale {self.scale} is not a power of two")
            return int(k)
        return shiftmax_default_shift(self.head_dim)

    def resolved_ssa_scale(self) -> float:
        return float(self.scale) if self.scale else 0.125

    def validate(self) -> None:
        if self.image_size % self.patch:
            raise ValueError("image_size must be a multiple of patch")
        if self.dim % self.heads:
            raise ValueError("dim must be a multiple of heads")
        if self.residual not in ("ms", "sew"):
            raise ValueError(f"residual {self.residual!r}: expected ms or sew")
        if self.attention not in ("bsa", "ssa", "sdsa"):
            raise ValueError(f"attention kind {self.attention!r}: this reference has bsa, ssa and "
                             "sdsa (ANN baselines: baselines_ref.py)")
        if self.rounding not in ("round", "ceil"):
            raise ValueError(f"rounding {self.rounding!r}: expected round or ceil")
        if self.qk_reset not in ("hard", "soft"):
            raise ValueError(f"qk_reset {self.qk_reset!r}: expected hard or soft")
        if not self.tau > 1:
            raise ValueError("tau must be > 1")


def config_from_dict(d: dict) -> ModelConfig:
    """Builds a ModelConfig from a parsed spikesim YAML document (top-level dict)."""
    m = dict(d.get("model", {}) or {})
    att = dict(m.pop("attention", {}) or {})
    neu = dict(m.pop("neuron", {}) or {})
    kw = {"name": str(d.get("name", "model"))}
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    for k, v in m.items():
        if k in fields:
            kw[k] = v
        # other model keys (weights, init_std, ...) do not change the forward pass
    if "kind" in att:
        kw["attention"] = att["kind"]
    for k in ("scale", "attn_threshold", "qk_threshold", "qk_reset", "rounding"):
        if k in att:
            v = att[k]
            kw[k] = 0.0 if v == "auto" else v
    if neu:
        kind = neu.get("kind", "lif")
        if kind not in ("lif", "plif"):
            raise ValueError(f"neuron kind {kind!r} not supported by the reference")
        for k in ("tau", "v_threshold", "v_reset", "decay_input"):
            if k in neu:
                kw[k] = neu[k]
    cfg = ModelConfig(**kw)
    for k in ("scale", "attn_threshold", "qk_threshold", "tau", "v_threshold"):
        setattr(cfg, k, float(getattr(cfg, k)))
    if cfg.v_reset is not None:
        cfg.v_reset = float(cfg.v_reset)
    cfg.validate()
    return cfg


def config_from_yaml(text: str) -> ModelConfig:
    import yaml  # PyYAML (python3-yaml); only needed to read a config text
    return config_from_dict(yaml.safe_load(text))


def config_to_yaml(cfg: ModelConfig, seed: int = 0, limit: int = 8) -> str:
    """The /config text of a golden file: only what differs from spikesim's defaults, in the
    fixed form the golden files use. Non-default neuron/attention knobs are written too."""
    lines = [
        f"name: {cfg.name}",
        f"seed: {seed}",
        "data:",
        "  source: idx",
        f"  limit: {limit}",
        "model:",
        f"  image_size: {cfg.image_size}",
        f"  channels: {cfg.channels}",
        f"  classes: {cfg.classes}",
        f"  patch: {cfg.patch}",
        f"  dim: {cfg.dim}",
        f"  heads: {cfg.heads}",
        f"  blocks: {cfg.blocks}",
        f"  mlp_ratio: {cfg.mlp_ratio}",
        f"  timesteps: {cfg.timesteps}",
        f"  residual: {cfg.residual}",
    ]
    default = ModelConfig()
    neu = [k for k in ("tau", "v_threshold", "v_reset", "decay_input")
           if getattr(cfg, k) != getattr(default, k)]
    if neu:
        lines.append("  neuron:")
        for k in neu:
            v = getattr(cfg, k)
            v = "null" if v is None else ("true" if v is True else "false" if v is False else v)
            lines.append(f"    {k}: {v}")
    lines += ["  attention:", f"    kind: {cfg.attention}"]
    for k in ("scale", "attn_threshold", "qk_threshold", "qk_reset", "rounding"):
        if getattr(cfg, k) != getattr(default, k):
            lines.append(f"    {k}: {getattr(cfg, k)}")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# neurons
# ----------------------------------------------------------------------------------------------

class LIFNode(nn.Module):
    """SpikingJelly LIF (multi-step use: call once per timestep), spec section 1.

    No parameters and no buffers (so the state_dict holds only the checkpoint tensors). The
    membrane `v` lives in the working dtype of the input (float32 in the reference run).
    The population name (its module path) is set by SpikeSimRef.
    """

    def __init__(self, tau: float = 2.0, v_threshold: float = 1.0, v_reset: Optional[float] = 0.0,
                 decay_input: bool = True, bipolar: bool = False):
        super().__init__()
        self.tau = float(tau)
        self.v_threshold = float(v_threshold)
        self.v_reset = None if v_reset is None else float(v_reset)
        self.decay_input = bool(decay_input)
        self.bipolar = bool(bipolar)
        self.name = ""
        self.v: Optional[torch.Tensor] = None
        self.record: Optional[Dict[str, List[torch.Tensor]]] = None  # name -> list over t

    def extra_repr(self) -> str:
        return (f"tau={self.tau}, v_threshold={self.v_threshold}, v_reset={self.v_reset}, "
                f"decay_input={self.decay_input}, bipolar={self.bipolar}")

    def reset(self) -> None:
        self.v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.v is None:  # start of a sample: v_reset (hard reset) or 0 (soft reset)
            self.v = torch.full_like(x, 0.0 if self.v_reset is None else self.v_reset)
        v = self.v
        vr = 0.0 if self.v_reset is None else self.v_reset  # soft reset charges with v_reset = 0
        # charge (SpikingJelly LIFNode.neuronal_charge, same branches)
        if self.decay_input:
            if vr == 0.0:
                h = v + (x - v) / self.tau
            else:
                h = v + (x - (v - vr)) / self.tau
        else:
            if vr == 0.0:
                h = v - v / self.tau + x
            else:
                h = v - (v - vr) / self.tau + x
        # fire (note >=)
        th = self.v_threshold
        if self.bipolar:
            s = (h >= th).to(x.dtype) - (h <= -th).to(x.dtype)
        else:
            s = (h >= th).to(x.dtype)
        # reset
        if self.v_reset is None:
            self.v = h - th * s
        else:
            self.v = torch.where(s != 0, torch.full_like(h, self.v_reset), h)
        if self.record is not None:
            self.record.setdefault(self.name, []).append(s)
            self.record.setdefault(self.name + "#h", []).append(h)
        return s


# ----------------------------------------------------------------------------------------------
# attention kernels (per head; tensors [..., N, d])
# ----------------------------------------------------------------------------------------------

POW2_MIN = -1074  # smallest exponent of the exact power-of-two table (float64 subnormals)
_POW2 = torch.tensor([math.ldexp(1.0, e) for e in range(POW2_MIN, 1024)], dtype=torch.float64)


def pow2(e: torch.Tensor) -> torch.Tensor:
    """Exact 2**e (float64) for an integer tensor e, by table lookup (no exp2/pow rounding)."""
    e = e.to(torch.int64)
    if e.numel() and (int(e.min()) < POW2_MIN or int(e.max()) > 1023):
        raise ValueError("pow2 exponent out of range")
    return _POW2[e - POW2_MIN]


def significant_bits(x: torch.Tensor) -> int:
    """Largest number of significant binary digits of the (float64) values in x: a value
    m * 2^e with odd integer m needs bit_length(|m|) bits; 0 needs 0."""
    a = np.abs(x.detach().double().cpu().numpy().ravel())
    a = a[a != 0]
    if a.size == 0:
        return 0
    mant, _ = np.frexp(a)                                   # a = mant * 2^e, mant in [0.5, 1)
    m = (mant * 2.0 ** 53).astype(np.int64)                 # exact: 53-bit integer mantissa
    tz = np.log2((m & -m).astype(np.float64)).astype(np.int64)   # trailing zero bits
    return int((53 - tz).max())


def shiftmax_default_shift(d: int) -> int:
    """k = floor((log2(d) + 1) / 2) with integers: the largest k with 4^k <= 2d.
    d = 8 or 16 -> 2 (s = 1/4); d = 32 or 64 -> 3 (s = 1/8)."""
    return ((2 * d).bit_length() - 1) // 2


def shiftmax_exponents(a: torch.Tensor, shift: int, rounding: str = "round"):
    """Shiftmax over the last axis of integer scores a (int64): returns (e, r) with
    e_ij = z_ij - m_i - r_i and P_ij = 2^e_ij, where
      z = floor(a / 2^shift) (true floor), m = rowmax z, S = sum_j 2^(z_j - m) (float64, exact),
      r = round(log2 S) = floor(log2 S) + [S >= sqrt(2) 2^floor(log2 S)]   (rounding 'round')
        = ceil(log2 S)                                                     (rounding 'ceil')."""
    a = a.to(torch.int64)
    z = torch.div(a, 2 ** shift, rounding_mode="floor")
    m = z.max(dim=-1, keepdim=True).values
    s = pow2(z - m).sum(dim=-1)                       # in [1, n], exact in float64
    _, ex = torch.frexp(s)                            # s = f * 2^ex, f in [0.5, 1)
    kk = ex.to(torch.int64) - 1                       # floor(log2 s), exact
    x = s * pow2(-kk)                                 # in [1, 2), exact
    if rounding == "round":
        r = kk + (x * x >= 2.0).to(torch.int64)       # x*x is exact (x has few bits)
    elif rounding == "ceil":
        r = kk + (x > 1.0).to(torch.int64)
    else:
        raise ValueError(rounding)
    e = z - m - r.unsqueeze(-1)
    return e, r


def bsa_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, shift: int,
             rounding: str = "round") -> torch.Tensor:
    """BSA kernel: ternary q, k, binary v ([..., N, d]). A = q k^T (integers in [-d, d]),
    P = Shiftmax(A), O = P v computed in float64 (exact: sums of powers of two). Returns float64."""
    a = torch.matmul(q.double(), k.double().transpose(-1, -2))
    ai = a.to(torch.int64)
    assert torch.equal(ai.double(), a), "bsa scores are not integers"
    e, _ = shiftmax_exponents(ai, shift, rounding)
    p = pow2(e)
    return torch.matmul(p, v.double())


def ssa_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float = 0.125) -> torch.Tensor:
    """SSA kernel (Spikformer, CIFAR order): O = (q k^T * scale) v, in the dtype of q."""
    return torch.matmul(torch.matmul(q, k.transpose(-1, -2)) * scale, v)


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------

def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """x [B, C, H, W] -> [B, N, C*P*P]; row-major patch grid, channel-major then row then column
    inside a patch (spec section 2)."""
    b, c = x.shape[:2]
    p = x.unfold(2, patch, patch).unfold(3, patch, patch)      # [B, C, gh, gw, P, P]
    return p.permute(0, 2, 3, 1, 4, 5).reshape(b, -1, c * patch * patch)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        D = cfg.dim
        for n in ("q", "k", "v", "o"):
            setattr(self, n, nn.Linear(D, D))
            setattr(self, n + "_bn", nn.BatchNorm1d(D))
        if cfg.attention == "bsa":
            # bipolar LIF, threshold qk_threshold (+/-), hard reset to 0 unless qk_reset: soft
            qk_reset = 0.0 if cfg.qk_reset == "hard" else None
            self.q_lif = LIFNode(cfg.tau, cfg.qk_threshold, qk_reset, cfg.decay_input, bipolar=True)
            self.k_lif = LIFNode(cfg.tau, cfg.qk_threshold, qk_reset, cfg.decay_input, bipolar=True)
        else:
            self.q_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
            self.k_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        self.v_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        if cfg.attention == "sdsa":
            # Spike-driven Transformer: LIF_0.5 on sum_n K*V, one neuron per channel
            self.kv_lif = LIFNode(cfg.tau, 0.5, cfg.v_reset, cfg.decay_input)
        self.attn_lif = LIFNode(cfg.tau, cfg.resolved_attn_threshold(), cfg.v_reset, cfg.decay_input)
        if cfg.residual == "sew":
            self.o_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        D, Hd = cfg.dim, cfg.hidden
        if cfg.residual == "ms":
            self.lif_in = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        self.fc1 = nn.Linear(D, Hd)
        self.fc1_bn = nn.BatchNorm1d(Hd)
        self.hidden_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        self.fc2 = nn.Linear(Hd, D)
        self.fc2_bn = nn.BatchNorm1d(D)
        if cfg.residual == "sew":
            self.out_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        if cfg.residual == "ms" or layer == 0:
            self.lif_in = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        self.attn = Attention(cfg, layer)
        self.mlp = MLP(cfg, layer)


class SpikeSimRef(nn.Module):
    """spikesim's model (spec sections 2-5). Always evaluated in eval mode (BN running stats).

    forward(images) with images uint8 [B, C, H, W] (or float in [0, 1]) returns a dict:
      logits  [B, classes]  (float32 in mode f32)
      embed   [B, N, D]     U0, float32
      spikes  {population: int8 [B, T, N*width]} (token-major)
      h       {population: [B, T, N*width]} pre-reset membranes H (working dtype)
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        D, N = cfg.dim, cfg.tokens
        self.embed = nn.Linear(cfg.channels * cfg.patch * cfg.patch, D)
        self.embed_bn = nn.BatchNorm1d(D)
        self.pos = nn.Parameter(torch.zeros(N, D))
        self.blocks = nn.ModuleList([Block(cfg, l) for l in range(cfg.blocks)])
        if cfg.residual == "ms":
            self.head_lif = LIFNode(cfg.tau, cfg.v_threshold, cfg.v_reset, cfg.decay_input)
        self.head = nn.Linear(D, cfg.classes)
        for name, mod in self.named_modules():
            if isinstance(mod, LIFNode):
                mod.name = name
        self.eval()
        # set by forward
        self._mode = "f32"
        self._check = False
        self.exact_stats: Dict[str, tuple] = {}

    # -- populations ------------------------------------------------------------------------
    def populations(self) -> List[str]:
        """Neuron populations in forward order (spec section 5 names)."""
        return [n for n, m in self.named_modules() if isinstance(m, LIFNode)]

    def population_widths(self) -> Dict[str, int]:
        c = self.cfg
        w = {}
        for n in self.populations():
            w[n] = c.hidden if n.endswith("hidden_lif") else c.dim
        return w

    def population_sizes(self) -> Dict[str, int]:
        """Neurons per sample: N * width, except sdsa's kv_lif (one neuron per channel)."""
        return {n: w if n.endswith("kv_lif") else self.cfg.tokens * w
                for n, w in self.population_widths().items()}

    def neurons(self):
        return [m for m in self.modules() if isinstance(m, LIFNode)]

    def train(self, mode: bool = True):
        # the reference is inference-only: BatchNorm always uses running statistics
        return super().train(False)

    # -- building blocks ----------------------------------------------------------------------
    @staticmethod
    def _bn_denominator(bn: nn.BatchNorm1d) -> torch.Tensor:
        """sqrt(float32(running_var + eps)) as float64 (see module docstring)."""
        ve = bn.running_var.float() + torch.tensor(bn.eps, dtype=torch.float32)
        return torch.sqrt(ve.double())

    @classmethod
    def _linear_bn64(cls, lin: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        """Linear + eval BN in float64 (x cast to float64)."""
        y = F.linear(x.double(), lin.weight.double(), lin.bias.double())
        a = bn.weight.double() / cls._bn_denominator(bn)
        return (y - bn.running_mean.double()) * a + bn.bias.double()

    def _linear_bn(self, lin: nn.Linear, bn: nn.BatchNorm1d, x: torch.Tensor, what: str) -> torch.Tensor:
        """BN(Linear(x)) over the feature (last) axis; x [B, N, in]."""
        if self._mode == "f64":
            return self._linear_bn64(lin, bn, x)
        b, n, _ = x.shape
        y = bn(lin(x).reshape(b * n, -1)).reshape(b, n, -1)   # float32, ordinary PyTorch ops
        if self._check:
            self._assert_exact(y, self._linear_bn64(lin, bn, x), what)
        return y

    def _assert_exact(self, y32: torch.Tensor, y64: torch.Tensor, what: str) -> None:
        """Asserts that a float32 multi-term result equals its float64 evaluation, i.e. that it
        is exact whatever the summation order; keeps (values checked, max significant bits)."""
        if not torch.equal(y32.double(), y64):
            bad = (y32.double() - y64).abs().max().item()
            raise AssertionError(f"{what}: float32 result is not exact (max |f32 - f64| = {bad:g})")
        n, b = self.exact_stats.get(what, (0, 0))
        self.exact_stats[what] = (n + y32.numel(), max(b, significant_bits(y64)))

    def _patches(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            x = images.float() / 255          # float32 division
        else:
            x = images.float()
        return patchify(x, self.cfg.patch)

    def embedding_f64(self, images: torch.Tensor) -> torch.Tensor:
        """BN_embed(patches @ W^T + b) [B, N, D] in float64: PyTorch's own float64 Linear and
        eval BatchNorm (denominator sqrt(double(var) + 1e-5), as spikesim's C embedding)."""
        patches = self._patches(images)
        b, n, k = patches.shape
        bn = self.embed_bn
        y = F.linear(patches.double(), self.embed.weight.double(), self.embed.bias.double())
        y = F.batch_norm(y.reshape(b * n, -1), bn.running_mean.double(), bn.running_var.double(),
                         bn.weight.double(), bn.bias.double(), False, 0.0, bn.eps)
        return y.reshape(b, n, -1)

    def embedding(self, images: torch.Tensor) -> torch.Tensor:
        """U0 [B, N, D] float32 = float32(BN_embed(patches @ W^T + b) in float64) + pos."""
        return self.embedding_f64(images).float() + self.pos      # cast, then float32 add

    def embedding_margin(self, images: torch.Tensor) -> float:
        """How robustly the float64 embedding rounds to float32: min over all values of
        (distance to the nearest float32 rounding midpoint) / (error bound of a float64
        evaluation). The bound, 2 (K + 8) 2^-53 (sum_k |x_k W_ok a_o| + |(b_o - mean_o) a_o| +
        |beta_o|) with a_o = gamma_o / sqrt(var_o + eps), covers any summation order and
        folding the BN into the weights. A margin > 2 means every faithful float64 evaluation
        (PyTorch's, spikesim's folded one) gives the same float32 U0."""
        with torch.no_grad():
            y = self.embedding_f64(images)
            patches = self._patches(images).double()
            bn = self.embed_bn
            a = (bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)).abs()
            terms = patches.abs() @ self.embed.weight.double().abs().t() * a \
                + ((self.embed.bias.double() - bn.running_mean.double()) * a).abs() \
                + bn.bias.double().abs()
            k = patches.shape[-1]
            bound = 2.0 * (k + 8) * 2.0 ** -53 * terms
            f = y.float()
            up = torch.nextafter(f, torch.tensor(float("inf"))).double()
            dn = torch.nextafter(f, torch.tensor(float("-inf"))).double()
            fd = f.double()
            dist = torch.minimum((y - (fd + up) / 2).abs(), (y - (fd + dn) / 2).abs())
            return float((dist / bound).min())

    def attention_kernel(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Per-head kernel on [B, N, D] spike tensors; heads split the feature axis."""
        c = self.cfg
        b, n, D = q.shape
        h, d = c.heads, c.head_dim
        qh, kh, vh = (t.reshape(b, n, h, d).transpose(1, 2) for t in (q, k, v))   # [B, h, N, d]
        if c.attention == "bsa":
            o64 = bsa_head(qh, kh, vh, c.resolved_shift(), c.rounding)           # float64, exact
            o = o64.to(q.dtype)                                                 # float32 cast
            if self._check and self._mode == "f32":
                self._assert_exact(o, o64, "bsa kernel")
        else:
            o = ssa_head(qh, kh, vh, c.resolved_ssa_scale())
            if self._check and self._mode == "f32":
                self._assert_exact(o, ssa_head(qh.double(), kh.double(), vh.double(),
                                               c.resolved_ssa_scale()), "ssa kernel")
        return o.transpose(1, 2).reshape(b, n, D)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, mode: str = "f32", check_exact: bool = False,
                record: bool = True) -> dict:
        """mode 'f32': the reference (float32 after the embedding). mode 'f64': the same graph
        in float64 after the (float32) embedding, for robustness checks."""
        if mode not in ("f32", "f64"):
            raise ValueError(mode)
        c = self.cfg
        self._mode, self._check = mode, check_exact
        if check_exact:
            self.exact_stats = {}
        wdt = torch.float32 if mode == "f32" else torch.float64
        rec: Optional[Dict[str, List[torch.Tensor]]] = {} if record else None
        for m in self.neurons():
            m.reset()
            m.record = rec
        with torch.no_grad():
            U0 = self.embedding(images)                         # [B, N, D] float32
            Uw = U0.to(wdt)
            B, N = U0.shape[:2]
            count = torch.zeros(B, c.dim, dtype=wdt)            # sum over t, n of head input
            for t in range(c.timesteps):
                if c.residual == "ms":
                    U = Uw.clone()
                    for l, blk in enumerate(self.blocks):
                        U = self._block_ms(blk, U, l)
                    Y = self.head_lif(U)
                    count = count + Y.sum(dim=1)                # exact integers
                else:
                    X = self.blocks[0].lif_in(Uw.clone())        # binary spikes
                    for l, blk in enumerate(self.blocks):
                        X = self._block_sew(blk, X, l)
                    count = count + X.sum(dim=1)                # exact integers
            mean = count / torch.tensor(float(c.timesteps * N), dtype=wdt)
            logits = F.linear(mean, self.head.weight.to(wdt), self.head.bias.to(wdt))
            if self._check and mode == "f32":
                self._assert_exact(logits, F.linear(mean.double(), self.head.weight.double(),
                                                    self.head.bias.double()), "head")
        for m in self.neurons():
            m.record = None
        out = {"logits": logits, "embed": U0, "spikes": {}, "h": {}}
        if rec is not None:
            for name in self.populations():
                if name not in rec:
                    continue
                s = torch.stack(rec[name], dim=1)               # [B, T, N, w]
                h = torch.stack(rec[name + "#h"], dim=1)
                out["spikes"][name] = s.reshape(B, c.timesteps, -1).to(torch.int8)
                out["h"][name] = h.reshape(B, c.timesteps, -1)
        return out

    def _block_ms(self, blk: Block, U: torch.Tensor, l: int) -> torch.Tensor:
        a, m = blk.attn, blk.mlp
        S = blk.lif_in(U)
        Q = a.q_lif(self._linear_bn(a.q, a.q_bn, S, f"blocks.{l}.attn.q"))
        K = a.k_lif(self._linear_bn(a.k, a.k_bn, S, f"blocks.{l}.attn.k"))
        V = a.v_lif(self._linear_bn(a.v, a.v_bn, S, f"blocks.{l}.attn.v"))
        if self.cfg.attention == "sdsa":
            O = Q * a.kv_lif((K * V).sum(dim=1, keepdim=True))   # [B, 1, D] kv: exact counts
        else:
            O = self.attention_kernel(Q, K, V)
        A = a.attn_lif(O)
        U = U + self._linear_bn(a.o, a.o_bn, A, f"blocks.{l}.attn.o")
        S2 = m.lif_in(U)
        Hh = m.hidden_lif(self._linear_bn(m.fc1, m.fc1_bn, S2, f"blocks.{l}.mlp.fc1"))
        U = U + self._linear_bn(m.fc2, m.fc2_bn, Hh, f"blocks.{l}.mlp.fc2")
        return U

    def _block_sew(self, blk: Block, X: torch.Tensor, l: int) -> torch.Tensor:
        a, m = blk.attn, blk.mlp
        Q = a.q_lif(self._linear_bn(a.q, a.q_bn, X, f"blocks.{l}.attn.q"))
        K = a.k_lif(self._linear_bn(a.k, a.k_bn, X, f"blocks.{l}.attn.k"))
        V = a.v_lif(self._linear_bn(a.v, a.v_bn, X, f"blocks.{l}.attn.v"))
        A = a.attn_lif(self.attention_kernel(Q, K, V))
        Y = a.o_lif(self._linear_bn(a.o, a.o_bn, A, f"blocks.{l}.attn.o"))
        X = X + Y
        Hh = m.hidden_lif(self._linear_bn(m.fc1, m.fc1_bn, X, f"blocks.{l}.mlp.fc1"))
        Y2 = m.out_lif(self._linear_bn(m.fc2, m.fc2_bn, Hh, f"blocks.{l}.mlp.fc2"))
        return X + Y2


def build_model(cfg) -> SpikeSimRef:
    """Model from a ModelConfig, a parsed config dict, or YAML text."""
    if isinstance(cfg, str):
        cfg = config_from_yaml(cfg)
    elif isinstance(cfg, dict):
        cfg = config_from_dict(cfg)
    return SpikeSimRef(cfg)


# ----------------------------------------------------------------------------------------------
# HDF5 checkpoints (/parameters/<name>, float32, PyTorch shapes)
# ----------------------------------------------------------------------------------------------

def export_state_dict(model: nn.Module) -> Dict[str, np.ndarray]:
    """state_dict without BatchNorm's num_batches_tracked, as float32 numpy arrays."""
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            continue
        out[k] = v.detach().cpu().float().numpy()
    return out


def h5_create(path: str):
    """Creates the HDF5 file path (ACC_TRUNC) for h5py.File so that the same content gives the
    same bytes: HDF5 1.10 file format (single-chunk index: small files; readable by HDF5 >=
    1.10), and no object timestamps anywhere, the root group included (it takes them from the
    fcpl). Returns the h5py FileID."""
    import h5py
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_V110)
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    return h5py.h5f.create(path.encode("utf-8"), h5py.h5f.ACC_TRUNC, fapl=fapl, fcpl=fcpl)


def h5_group(parent, name):
    """parent[name], created without timestamps when missing."""
    import h5py
    if name in parent:
        return parent[name]
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl)
    return parent[name]


def h5_dataset(parent, name, data, dtype):
    """A dataset without timestamps; from 1024 elements one chunk, shuffled and gzip-9."""
    data = np.asarray(data, dtype=dtype)
    kw = dict(track_times=False)
    if data.size >= 1024:
        kw.update(chunks=data.shape, compression="gzip", compression_opts=9, shuffle=True)
    return parent.create_dataset(name, data=data, dtype=dtype, **kw)


def save_parameters(group, model: nn.Module, **dataset_kw) -> None:
    """Writes every checkpoint tensor of model into an h5py group (usually f['parameters'])."""
    for k, v in export_state_dict(model).items():
        group.create_dataset(k, data=v, dtype=np.float32, **dataset_kw)


def load_h5(path: str, model: Optional[SpikeSimRef] = None) -> SpikeSimRef:
    """Loads /parameters of an HDF5 checkpoint into model (built from the file's /config when
    model is None). Refuses missing, extra or misshapen tensors and non-float32 data, naming
    the tensor and both shapes."""
    import h5py
    with h5py.File(path, "r") as f:
        if model is None:
            text = f["config"][()]
            text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
            model = build_model(text)
        g = f["parameters"]
        names = set()
        g.visititems(lambda n, o: names.add(n) if isinstance(o, h5py.Dataset) else None)
        expected = {k: v for k, v in model.state_dict().items()
                    if not k.endswith("num_batches_tracked")}
        missing = sorted(set(expected) - names)
        extra = sorted(names - set(expected))
        if missing:
            raise ValueError(f"{path}: missing tensor {missing[0]} (and {len(missing) - 1} more)")
        if extra:
            raise ValueError(f"{path}: unexpected tensor {extra[0]} (and {len(extra) - 1} more)")
        new = {}
        for k, ref in expected.items():
            ds = g[k]
            if tuple(ds.shape) != tuple(ref.shape):
                raise ValueError(f"{path}: {k} has shape {list(ds.shape)}, the model expects "
                                 f"{list(ref.shape)}")
            if ds.dtype != np.float32:
                raise ValueError(f"{path}: {k} has dtype {ds.dtype}, expected float32")
            a = ds[()]
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{path}: {k} holds non-finite values")
            new[k] = torch.from_numpy(np.array(a, dtype=np.float32))
    sd = model.state_dict()
    sd.update(new)
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model
