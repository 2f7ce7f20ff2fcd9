#!/usr/bin/python3
"""Writes the golden files tests/reference/golden_{bsa,ssa,sew}.h5 (see README.md).

    /usr/bin/python3 tests/reference/make_golden.py            # from the repository root

Each file holds a spikesim config, a dyadic-grid parameter set, the first 8 Fashion-MNIST test
images, and what the PyTorch reference (spikesim_ref.py) computes for them: U0, every
population's spikes and the logits. The C suite compares against them spike for spike.

Before writing, the script asserts:
  * the spec's LIF and Shiftmax test vectors;
  * the parameters lie on the dyadic grid and BN denominators are exact powers of two;
  * every multi-term sum after the embedding (Linear+BN, attention kernel, head) of the float32
    run is exact, i.e. equals its float64 evaluation (so summation order cannot matter);
  * the whole graph evaluated in float64 after the embedding gives the same spikes and logits
    (no spike is decided by float32 rounding); membranes of populations not fed by the real-
    valued stream U are bit-identical;
  * firing rates in [2%, 70%] for every population, +1 and -1 spikes in bsa's q_lif/k_lif;
  * spikes depend on the input (the 8 samples give 8 different spike records);
  * save -> load_h5 -> forward reproduces logits and spikes bit for bit.
It is deterministic: running it twice gives byte-identical files.
"""

import copy
import gzip
import hashlib
import os
import sys

import h5py
import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True          # keep tests/reference free of __pycache__
sys.path.insert(0, HERE)
import spikesim_ref as R  # noqa: E402

DATA_DIR = "/usr/share/datasets/fashion-mnist"
SAMPLES = 8
SEED = 0
RATE_MIN, RATE_MAX = 0.02, 0.70
GAMMAS = (0.5, 0.75, 1.0, 1.25, 1.5)
EPS = 1e-5

# ---- parameter ranges (integers k, the value is k / 64), tuned for lively spiking -----------
# w: weights uniform in [-w, w]/64; b: Linear bias range; beta/mean: BN bias / running_mean
# ranges; var: the allowed float32(running_var + eps) values (0.25 -> x2, 1 -> x1, 4 -> x0.5).
_BASE = dict(w=32, b=(-8, 8), beta=(-16, 16), mean=8, var=(0.25, 1.0, 4.0))


def _spec(**over):
    spec = {k: dict(_BASE) for k in ("embed", "q", "k", "v", "o", "fc1", "fc2", "head")}
    spec["pos"] = 32
    for k, v in over.items():
        if k == "pos":
            spec[k] = v
        else:
            spec[k].update(v)
    return spec


_EMBED = dict(w=8, beta=(16, 96))          # U0 around 1 with spread: lively lif_in
VARIANTS = {
    # file stem: (attention, residual, parameter ranges)
    "bsa": ("bsa", "ms", _spec(embed=_EMBED, q=dict(beta=(-96, 96)), k=dict(beta=(-96, 96)),
                               v=dict(beta=(0, 96)), o=dict(beta=(-32, 32)),
                               fc1=dict(beta=(0, 96)), fc2=dict(beta=(-32, 32)))),
    "ssa": ("ssa", "ms", _spec(embed=_EMBED, q=dict(beta=(0, 96)), k=dict(beta=(0, 96)),
                               v=dict(beta=(32, 128)), o=dict(beta=(-32, 32)),
                               fc1=dict(beta=(0, 96)), fc2=dict(beta=(-32, 32)))),
    "sdsa": ("sdsa", "ms", _spec(embed=_EMBED, q=dict(beta=(32, 128)), k=dict(beta=(32, 128)),
                                 v=dict(beta=(32, 128)), o=dict(beta=(-32, 32)),
                                 fc1=dict(beta=(0, 96)), fc2=dict(beta=(-32, 32)))),
    "sew": ("bsa", "sew", _spec(embed=_EMBED, q=dict(beta=(-96, 96)), k=dict(beta=(-96, 96)),
                                v=dict(beta=(0, 96)), o=dict(beta=(0, 96)),
                                fc1=dict(beta=(0, 96)), fc2=dict(beta=(0, 128)))),
}

GRID_TEXT = (
    "Parameters on a dyadic grid so that every sum after the embedding is exact in float32 "
    "whatever the summation order: Linear weights and biases, pos, BN bias and running_mean are "
    "integers/64; BN weight in {0.5, 0.75, 1, 1.25, 1.5}; running_var is a float32 v with "
    "float32(v + 1e-5) exactly 0.25, 1 or 4, so sqrt(var + eps) is a power of two and BN (and "
    "folding it into the Linear) is exact. The embedding is PyTorch's float64 Linear + BatchNorm "
    "(denominator sqrt(double(var) + 1e-5)) cast to float32, then + pos in float32; every U0 "
    "value is checked to lie far enough from a float32 rounding midpoint that any float64 "
    "evaluation (e.g. BN folded into the weights, any summation order) rounds the same way.")


# ---- helpers -------------------------------------------------------------------------------

def running_var_values():
    """float32 v with float32(v + float32(1e-5)) == target, for target 0.25, 1, 4 (the float32
    nearest to target - 1e-5, checked with numpy float32 arithmetic and with torch)."""
    out = {}
    for t in (0.25, 1.0, 4.0):
        v = np.float32(np.float64(t) - EPS)
        assert np.float32(v + np.float32(EPS)) == np.float32(t), t
        tv = torch.tensor([float(v)], dtype=torch.float32)
        assert (tv + EPS).item() == t and (tv + torch.tensor(EPS, dtype=torch.float32)).item() == t
        out[t] = float(v)
    return out


VAR_VALUES = running_var_values()


def load_fashion_mnist_test(n):
    with gzip.open(os.path.join(DATA_DIR, "t10k-images-idx3-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[0:4], "big") == 0x00000803
    count, rows, cols = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    assert (rows, cols) == (28, 28) and count >= n
    images = np.frombuffer(raw, np.uint8, count=n * rows * cols, offset=16).reshape(n, 1, rows, cols)
    with gzip.open(os.path.join(DATA_DIR, "t10k-labels-idx1-ubyte.gz"), "rb") as f:
        raw = f.read()
    assert int.from_bytes(raw[0:4], "big") == 0x00000801
    labels = np.frombuffer(raw, np.uint8, count=n, offset=8)
    return images.copy(), labels.copy()


def dyadic_init(model, seed, spec):
    """Deterministic dyadic parameters (module order of the state_dict)."""
    g = torch.Generator().manual_seed(seed)

    def ints(lo, hi, shape):
        return torch.randint(lo, hi + 1, shape, generator=g).float()

    gam = torch.tensor(GAMMAS)
    with torch.no_grad():
        for name, mod in model.named_modules():
            key = name.split(".")[-1]
            if isinstance(mod, torch.nn.Linear):
                sp = spec[key]
                mod.weight.copy_(ints(-sp["w"], sp["w"], mod.weight.shape) / 64)
                mod.bias.copy_(ints(sp["b"][0], sp["b"][1], mod.bias.shape) / 64)
            elif isinstance(mod, torch.nn.BatchNorm1d):
                sp = spec[key[:-len("_bn")]]
                n = mod.num_features
                mod.weight.copy_(gam[torch.randint(0, len(GAMMAS), (n,), generator=g)])
                mod.bias.copy_(ints(sp["beta"][0], sp["beta"][1], (n,)) / 64)
                mod.running_mean.copy_(ints(-sp["mean"], sp["mean"], (n,)) / 64)
                vs = torch.tensor([VAR_VALUES[v] for v in sp["var"]])
                mod.running_var.copy_(vs[torch.randint(0, len(vs), (n,), generator=g)])
                mod.num_batches_tracked.zero_()
        model.pos.copy_(ints(-spec["pos"], spec["pos"], model.pos.shape) / 64)


def check_grid(model):
    for k, v in R.export_state_dict(model).items():
        v = v.astype(np.float64)
        if k.endswith("_bn.weight"):
            assert np.isin(v, GAMMAS).all(), k
        elif k.endswith("running_var"):
            assert np.isin(v.astype(np.float32), np.float32(list(VAR_VALUES.values()))).all(), k
            ve = v.astype(np.float32) + np.float32(EPS)
            assert np.isin(ve, np.float32([0.25, 1.0, 4.0])).all(), k
        else:
            assert (v * 64 == np.round(v * 64)).all() and np.abs(v * 64).max() <= 128, k


def check_test_vectors():
    # spec 1: LIF tau 2, v_th 1, hard reset 0
    lif = R.LIFNode()
    lif.record = {}
    lif.name = "t"
    for x in (1.5, 0.4, 1.2, 2.5, 0.9):
        lif(torch.tensor([x], dtype=torch.float64))
    h = [t.item() for t in lif.record["t#h"]]
    s = [t.item() for t in lif.record["t"]]
    assert np.allclose(h, [0.75, 0.575, 0.8875, 1.69375, 0.45], rtol=0, atol=1e-12), h
    assert s == [0, 0, 0, 1, 0], s
    # methods 1.6: V_th 0.5, X = [0.5, 0.5, 0.5, 1.0]
    lif = R.LIFNode(v_threshold=0.5)
    lif.record, lif.name = {}, "t"
    for x in (0.5, 0.5, 0.5, 1.0):
        lif(torch.tensor([x]))
    assert [t.item() for t in lif.record["t#h"]] == [0.25, 0.375, 0.4375, 0.71875]
    assert [t.item() for t in lif.record["t"]] == [0, 0, 0, 1]
    # threshold is >=; bipolar fires -1 at H <= -th
    lif = R.LIFNode(bipolar=True)
    assert lif(torch.tensor([2.0, -2.0, 1.9, -1.9])).tolist() == [1, -1, 0, 0]
    # methods 3.2: scores [3, 1, 0, -2], s = 1 -> e = [0, -2, -3, -5], r = 0;  [0, 0, 0] -> r = 2
    e, r = R.shiftmax_exponents(torch.tensor([[3, 1, 0, -2]]), 0)
    assert e.tolist() == [[0, -2, -3, -5]] and r.tolist() == [0]
    e, r = R.shiftmax_exponents(torch.tensor([[3, 1, 0, -2]]), 0, "ceil")
    assert r.tolist() == [1]
    e, r = R.shiftmax_exponents(torch.tensor([[0, 0, 0]]), 0)
    assert e.tolist() == [[-2, -2, -2]] and r.tolist() == [2]
    # true floor of negatives, shift 2: -1 -> -1, -4 -> -1, -5 -> -2, 7 -> 1 (m = 1, so
    # z = e + r + m)
    e, r = R.shiftmax_exponents(torch.tensor([[-1, -4, -5, 7]]), 2)
    assert (e + r.unsqueeze(-1) + 1).tolist() == [[-1, -1, -2, 1]]
    # rounding of log2 S at sqrt(2) = 1.41421...: S = 1.40625 -> r = 0, S = 1.4375 -> r = 1
    e, r = R.shiftmax_exponents(torch.tensor([[0, -2, -3, -5]]), 0)
    assert r.tolist() == [0]
    e, r = R.shiftmax_exponents(torch.tensor([[0, -2, -3, -4]]), 0)
    assert r.tolist() == [1]
    # default shift k = floor((log2 d + 1) / 2)
    assert [R.shiftmax_default_shift(d) for d in (4, 8, 16, 32, 64)] == [1, 2, 2, 3, 3]


def rate_table(out, cfg):
    rows = []
    for name, s in out["spikes"].items():
        s = s.to(torch.int64)
        rows.append((name, s.shape[-1] // cfg.tokens, (s != 0).double().mean().item(),
                     (s > 0).double().mean().item(), (s < 0).double().mean().item()))
    return rows


def exact_threshold_hits(model, out):
    """Number of neuron updates whose pre-reset membrane H is exactly at +threshold (or -threshold
    for bipolar): these exercise the >= of the fire rule."""
    hits = {}
    mods = dict(model.named_modules())
    for name, h in out["h"].items():
        th = mods[name].v_threshold
        n = int((h == th).sum())
        if mods[name].bipolar:
            n += int((h == -th).sum())
        hits[name] = n
    return hits


def folded_embedding(model, x):
    """U0 the way spikesim's C computes it: BN folded into the weights in double
    (a = gamma / sqrt(double(var) + 1e-5)), acc = folded bias, acc += x_k * wt_k for k in
    order (zero pixels skipped), float32(acc) + pos in float32."""
    bn = model.embed_bn
    a = bn.weight.double() / torch.sqrt(bn.running_var.double() + 1e-5)
    wt = model.embed.weight.double().t() * a                       # [K, D]
    bias = (model.embed.bias.double() - bn.running_mean.double()) * a + bn.bias.double()
    p = model._patches(x).double()                                  # [B, N, K]
    acc = bias.expand(p.shape[0], p.shape[1], -1).clone()
    for k in range(p.shape[-1]):
        acc = acc + torch.where(p[..., k:k + 1] != 0, p[..., k:k + 1] * wt[k], torch.zeros(()).double())
    return acc.float() + model.pos.detach()


def shiftmax_coverage(cfg, out):
    """Shiftmax cases the golden bsa data exercises, from the recorded Q and K spikes:
    rows, rows whose log2 S rounds up, rows with r > 0, negative scores, min exponent."""
    T, N, h, d = cfg.timesteps, cfg.tokens, cfg.heads, cfg.head_dim
    rows = up = rpos = neg = 0
    emin = 0
    for l in range(cfg.blocks):
        q = out["spikes"][f"blocks.{l}.attn.q_lif"].double().reshape(-1, T, N, h, d).transpose(2, 3)
        k = out["spikes"][f"blocks.{l}.attn.k_lif"].double().reshape(-1, T, N, h, d).transpose(2, 3)
        a = (q @ k.transpose(-1, -2)).to(torch.int64)
        e, r = R.shiftmax_exponents(a, cfg.resolved_shift(), cfg.rounding)
        z = torch.div(a, 2 ** cfg.resolved_shift(), rounding_mode="floor")
        s = R.pow2(z - z.max(-1, keepdim=True).values).sum(-1)
        _, ex = torch.frexp(s)
        rows += r.numel()
        up += int((r > ex.to(torch.int64) - 1).sum())
        rpos += int((r > 0).sum())
        neg += int((a < 0).sum())
        emin = min(emin, int(e.min()))
    return rows, up, rpos, neg, emin


def stream_fed(cfg, name):
    """Populations whose input current involves the real-valued stream U (not exact dyadic)."""
    if cfg.residual == "ms":
        return name.endswith(".lif_in") or name == "head_lif"
    return name == "blocks.0.lif_in"


# ---- HDF5 writing (deterministic: no timestamps) -------------------------------------------

def write_golden(path, cfg, model, images, labels, out):
    utf8 = h5py.string_dtype("utf-8")
    tmp = path + ".tmp"
    with h5py.File(R.h5_create(tmp)) as f:
        f.attrs.create("generator", "tests/reference/make_golden.py", dtype=utf8)
        f.attrs.create("torch_version", torch.__version__, dtype=utf8)
        f.attrs.create("dyadic_grid", GRID_TEXT, dtype=utf8)
        f.attrs.create("description",
                       f"spikesim golden file {cfg.name}: attention {cfg.attention}, residual "
                       f"{cfg.residual}; PyTorch reference spikes, U0 and logits for the first "
                       f"{images.shape[0]} Fashion-MNIST test images", dtype=utf8)
        f.create_dataset("config", data=R.config_to_yaml(cfg, seed=SEED, limit=SAMPLES),
                         dtype=utf8, track_times=False)
        p = R.h5_group(f, "parameters")
        for k, v in R.export_state_dict(model).items():
            R.h5_dataset(p, k, v, np.float32)
        g = R.h5_group(f, "input")
        R.h5_dataset(g, "images", images, np.uint8)
        R.h5_dataset(g, "labels", labels, np.uint8)
        R.h5_dataset(g, "sample_index", np.arange(images.shape[0]), np.int64)
        e = R.h5_group(f, "expected")
        R.h5_dataset(e, "logits", out["logits"].numpy(), np.float32)
        R.h5_dataset(e, "embed", out["embed"].numpy(), np.float32)
        nodes = R.h5_group(e, "nodes")
        for name, s in out["spikes"].items():
            R.h5_dataset(R.h5_group(nodes, name), "spikes", s.numpy(), np.int8)
    os.replace(tmp, path)


def verify_file(path, cfg, model, images, labels, out):
    """Re-reads the file: layout, dtypes, shapes, and the load_h5 round trip."""
    T, N = cfg.timesteps, cfg.tokens
    with h5py.File(path, "r") as f:
        assert f["config"].shape == () and f["config"].dtype.kind == "O"
        text = f["config"][()].decode("utf-8")
        assert text == R.config_to_yaml(cfg, seed=SEED, limit=SAMPLES)
        assert R.config_from_yaml(text) == cfg
        assert set(f.keys()) == {"config", "parameters", "input", "expected"}
        assert not any(k.endswith("num_batches_tracked") for k in f["parameters"])
        assert f["input/images"].dtype == np.uint8 and f["input/images"].shape == (SAMPLES, 1, 28, 28)
        assert (f["input/images"][()] == images).all() and (f["input/labels"][()] == labels).all()
        assert f["input/sample_index"].dtype == np.int64
        assert f["expected/logits"].dtype == np.float32 and f["expected/logits"].shape == (SAMPLES, cfg.classes)
        assert f["expected/embed"].shape == (SAMPLES, N, cfg.dim)
        sizes = model.population_sizes()
        assert set(f["expected/nodes"].keys()) == set(sizes)
        for name, size in sizes.items():
            ds = f["expected/nodes"][name]["spikes"]
            assert ds.dtype == np.int8 and ds.shape == (SAMPLES, T, size), (name, ds.shape)
            assert (ds[()] == out["spikes"][name].numpy()).all()
    # round trip: a fresh model built from /config, parameters from /parameters
    m2 = R.load_h5(path)
    out2 = m2(torch.from_numpy(images))
    assert torch.equal(out2["logits"], out["logits"]), "round trip changed the logits"
    for name, s in out["spikes"].items():
        assert torch.equal(out2["spikes"][name], s), name
    sd1, sd2 = model.state_dict(), m2.state_dict()
    assert all(torch.equal(sd1[k], sd2[k]) for k in sd1)
    # and load_h5 refuses a misshapen tensor
    bad = R.build_model(copy.deepcopy(cfg))
    bad.head = torch.nn.Linear(cfg.dim, cfg.classes + 1)
    try:
        R.load_h5(path, bad)
        raise AssertionError("load_h5 accepted a misshapen tensor")
    except ValueError as err:
        assert "head.weight has shape [10, 32], the model expects [11, 32]" in str(err), err


# ---- main ------------------------------------------------------------------------------------

def make_variant(stem, images, labels):
    attention, residual, spec = VARIANTS[stem]
    cfg = R.ModelConfig(name=f"golden_{stem}", attention=attention, residual=residual)
    model = R.build_model(copy.deepcopy(cfg))
    dyadic_init(model, SEED, spec)
    check_grid(model)
    x = torch.from_numpy(images)

    out = model(x, mode="f32", check_exact=True)           # the golden run
    margin = model.embedding_margin(x)
    assert margin > 2, f"U0 too close to a float32 rounding midpoint (margin {margin:.3g})"
    assert torch.equal(folded_embedding(model, x), out["embed"]), "folded embedding differs"
    exact = dict(model.exact_stats)
    out64 = model(x, mode="f64")
    assert torch.equal(out64["logits"], out["logits"].double()), "f64 logits differ"
    membrane = {}
    for name, s in out["spikes"].items():
        assert torch.equal(out64["spikes"][name], s), f"{name}: f64 spikes differ"
        d = (out64["h"][name] - out["h"][name].double()).abs().max().item()
        membrane[name] = d
        if not stream_fed(cfg, name):
            assert d == 0, f"{name}: f32 membrane is not exact ({d:g})"
    # every population's membranes are float32-exact where the input is dyadic; report bits
    hbits = {n: R.significant_bits(h) for n, h in out["h"].items()}

    rows = rate_table(out, cfg)
    hits = exact_threshold_hits(model, out)
    print(f"\n{cfg.name}: attention {attention}, residual {residual}, "
          f"T={cfg.timesteps} N={cfg.tokens} D={cfg.dim} h={cfg.heads} L={cfg.blocks}")
    print(f"  {'population':26s} {'width':>5s} {'rate':>7s} {'+1':>7s} {'-1':>7s} "
          f"{'H==th':>6s} {'H bits':>6s} {'|H32-H64|':>9s}")
    for name, w, r, rp, rn in rows:
        print(f"  {name:26s} {w:5d} {r:7.3f} {rp:7.3f} {rn:7.3f} {hits[name]:6d} "
              f"{hbits[name]:6d} {membrane[name]:9.2g}")
    print(f"  U0: float64 embedding rounds to float32 with margin {margin:.3g} (> 2 required)")
    if attention == "bsa":
        nrows, up, rpos, neg, emin = shiftmax_coverage(cfg, out)
        print(f"  shiftmax: {nrows} rows, {up} with log2 S rounded up, {rpos} with r > 0, "
              f"{neg} negative scores, min exponent {emin}")
        assert up > 0 and rpos > 0 and neg > 0
    print("  exact float32 sums (values checked, max significant bits): " +
          ", ".join(f"{k.replace('blocks.', 'b')} {n}/{b}" for k, (n, b) in exact.items()))
    for name, w, r, rp, rn in rows:
        assert RATE_MIN <= r <= RATE_MAX, f"{cfg.name} {name}: firing rate {r:.3f} out of bounds"
        if attention == "bsa" and (name.endswith("q_lif") or name.endswith("k_lif")):
            assert rp > 0 and rn > 0, f"{name}: needs both +1 and -1 spikes"
    assert max(b for _, b in exact.values()) <= 22, "an intermediate needs more than 22 bits"
    # spikes depend on the input: all samples give different records, in every population at
    # least two distinct records, and the logits differ between samples
    recs = torch.cat([s.reshape(SAMPLES, -1) for s in out["spikes"].values()], dim=1)
    assert len({r.numpy().tobytes() for r in recs}) == SAMPLES, "two samples share spike trains"
    for name, s in out["spikes"].items():
        distinct = len({r.numpy().tobytes() for r in s.reshape(SAMPLES, -1)})
        assert distinct >= 2, f"{name}: spikes do not depend on the input"
    assert len({r.numpy().tobytes() for r in out["logits"]}) == SAMPLES
    print("  logits[0] =", [float(v) for v in out["logits"][0]],
          " predictions", out["logits"].argmax(1).tolist(), " labels", labels.tolist())

    path = os.path.join(HERE, f"golden_{stem}.h5")
    write_golden(path, cfg, model, images, labels, out)
    verify_file(path, cfg, model, images, labels, out)
    with open(path, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"  wrote {os.path.relpath(path, os.path.dirname(os.path.dirname(HERE)))} "
          f"({os.path.getsize(path)} bytes, sha256 {digest[:16]})")
    assert os.path.getsize(path) < 256 * 1024


def main():
    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    check_test_vectors()
    images, labels = load_fashion_mnist_test(SAMPLES)
    for stem in sys.argv[1:] or VARIANTS:   # e.g. make_golden.py sdsa: one file only
        make_variant(stem, images, labels)


if __name__ == "__main__":
    main()
