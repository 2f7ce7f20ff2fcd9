"""Per-head PyTorch references of the ANN attention baselines (spec/model.md section 3 `softmax`
and `cat`; research/methods.md sections 4 and 6), mirroring attention/softmax.c and attention/cat.c.

    softmax_head(q, k, v)   O = softmax_rows(q k^T / sqrt(d)) v          q, k, v [..., N, d]
    cat_head(g, v)          z = softmax_N(g); O[i] = sum_j z[(i - j) mod N] v[j]
                            g [..., N] (the head's column of X a^T), v [..., N, d]; by
                            torch.fft.rfft / irfft of length exactly n = N (no padding)
    cat_head_circulant(g, v)  the same with the explicit circulant matrix C[i, j] = z[(i - j) mod N]
    cat_mix(z, v), cat_mix_circulant(z, v)   the mixing step alone, from z

All functions are differentiable (autograd) and work in the dtype of their inputs. The C kernels
compute in double and round to float once; use float64 inputs to compare with them.

    /usr/bin/python3 tests/reference/ann_attention_ref.py --selftest

checks the FFT form against the circulant form, the convention test vector of methods.md 4.1, and
autograd against the closed-form backward formulas the C kernels implement.
"""

from __future__ import annotations

import math
import sys

import torch


def softmax_head(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention, one head: softmax over keys of q k^T / sqrt(d), times v."""
    s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return torch.matmul(torch.softmax(s, dim=-1), v)


def cat_mix(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """O[..., i, c] = sum_j z[..., (i - j) mod N] v[..., j, c], by real FFTs of length N."""
    n = v.shape[-2]
    zf = torch.fft.rfft(z, n=n, dim=-1)                  # [..., N/2 + 1]
    vf = torch.fft.rfft(v, n=n, dim=-2)                  # [..., N/2 + 1, d]
    return torch.fft.irfft(zf.unsqueeze(-1) * vf, n=n, dim=-2)


def circulant(z: torch.Tensor) -> torch.Tensor:
    """C[..., i, j] = z[..., (i - j) mod N]."""
    n = z.shape[-1]
    i = torch.arange(n).unsqueeze(1)
    j = torch.arange(n).unsqueeze(0)
    return z[..., (i - j) % n]


def cat_mix_circulant(z: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.matmul(circulant(z), v)


def cat_head(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """CAT, one head: z = softmax over the N tokens of g [..., N]; circular convolution with v."""
    return cat_mix(torch.softmax(g, dim=-1), v)


def cat_head_circulant(g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return cat_mix_circulant(torch.softmax(g, dim=-1), v)


# ---- the closed-form backwards of the C kernels (for the self-test) ---------------------------

def softmax_head_backward(q, k, v, dout):
    """attention/softmax.c: dV = P^T dO; dP = dO V^T; dS = P (dP - rowsum(dP P)); dA = dS / sqrt(d);
    dQ = dA K; dK = dA^T Q."""
    s = 1.0 / math.sqrt(q.shape[-1])
    p = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * s, dim=-1)
    dv = torch.matmul(p.transpose(-1, -2), dout)
    dp = torch.matmul(dout, v.transpose(-1, -2))
    da = s * p * (dp - (dp * p).sum(-1, keepdim=True))
    return torch.matmul(da, k), torch.matmul(da.transpose(-1, -2), q), dv


def cat_head_backward(g, v, dout):
    """attention/cat.c: dV[j] = sum_i z[(i - j) mod N] dO[i] (correlation: irfft(conj(Z) DO));
    dz[m] = sum_i sum_c dO[i, c] V[(i - m) mod N, c] (irfft(sum_c DO_c conj(V_c)));
    dg = z (dz - sum(z dz))."""
    n = v.shape[-2]
    z = torch.softmax(g, dim=-1)
    zf = torch.fft.rfft(z, n=n, dim=-1).unsqueeze(-1)
    vf = torch.fft.rfft(v, n=n, dim=-2)
    df = torch.fft.rfft(dout, n=n, dim=-2)
    dv = torch.fft.irfft(zf.conj() * df, n=n, dim=-2)
    dz = torch.fft.irfft((df * vf.conj()).sum(-1), n=n, dim=-1)
    dg = z * (dz - (z * dz).sum(-1, keepdim=True))
    return dg, dv


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> float:
    err = (a - b).abs().max().item() / max(b.abs().max().item(), 1e-30)
    assert err <= tol, f"{what}: relative error {err:.3e} > {tol:g}"
    return err


def selftest() -> None:
    torch.manual_seed(0)
    dt = torch.float64
    # methods.md 4.1 convention vector: convolution, not ccatten's correlation
    z = torch.tensor([0.5, 0.25, 0.125, 0.125], dtype=dt)
    v = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=dt)
    want = torch.tensor([[2.125], [2.125], [2.625], [3.125]], dtype=dt)
    _close(cat_mix(z, v), want, 1e-14, "convention vector (fft)")
    assert torch.equal(cat_mix_circulant(z, v), want), "convention vector (circulant)"
    worst = {}
    for n, d in [(1, 3), (2, 4), (7, 6), (49, 5), (64, 16), (3, 1)]:
        g = torch.randn(2, n, dtype=dt, requires_grad=True)  # batch of 2 heads
        v = torch.randn(2, n, d, dtype=dt, requires_grad=True)
        dout = torch.randn(2, n, d, dtype=dt)
        o_fft, o_circ = cat_head(g, v), cat_head_circulant(g, v)
        worst["cat fft vs circulant"] = max(worst.get("cat fft vs circulant", 0.0),
                                            _close(o_fft, o_circ, 1e-12, f"cat N={n}"))
        gg, gv = torch.autograd.grad(o_circ, (g, v), dout)
        dg, dv = cat_head_backward(g.detach(), v.detach(), dout)
        _close(dv, gv, 1e-12, f"cat dV N={n}")
        if n > 1:
            _close(dg, gg, 1e-12, f"cat dg N={n}")
        else:
            assert dg.abs().max().item() == 0.0 and gg.abs().max().item() == 0.0
        q = torch.randn(n, d, dtype=dt, requires_grad=True)
        k = torch.randn(n, d, dtype=dt, requires_grad=True)
        vv = torch.randn(n, d, dtype=dt, requires_grad=True)
        o = softmax_head(q, k, vv)
        p = torch.softmax(q @ k.T / math.sqrt(d), -1)
        _close(p.sum(-1), torch.ones(n, dtype=dt), 1e-15, "softmax rows")
        aq, ak, av = torch.autograd.grad(o, (q, k, vv), dout[0])
        fq, fk, fv = softmax_head_backward(q.detach(), k.detach(), vv.detach(), dout[0])
        _close(fv, av, 1e-12, f"softmax dV N={n}")
        if n > 1:
            _close(fq, aq, 1e-12, f"softmax dQ N={n}")
            _close(fk, ak, 1e-12, f"softmax dK N={n}")
    # the FFT length is exactly N: padding to a power of two would not be circular
    z = torch.softmax(torch.randn(49, dtype=dt), -1)
    v = torch.randn(49, 3, dtype=dt)
    zf = torch.fft.rfft(z, n=64)
    padded = torch.fft.irfft(zf.unsqueeze(-1) * torch.fft.rfft(v, n=64, dim=0), n=64, dim=0)[:49]
    assert (padded - cat_mix_circulant(z, v)).abs().max().item() > 1e-3, "padding check vacuous"
    print("ann_attention_ref selftest: ok " +
          ", ".join(f"{k} {e:.1e}" for k, e in worst.items()))


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
    else:
        print(__doc__)
        sys.exit(2)
