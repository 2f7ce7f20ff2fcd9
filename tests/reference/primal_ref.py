#!/usr/bin/python3
"""primal_ref.py: PyTorch reference of Primal-Attention (official-code form, trace_no_x = True)
with its KSVD loss, and of SDSA's two linear pieces, per head and per layer (spec/model.md
section 3, research/methods.md sections 2.5 and 5). Written to be imported by
tests/reference/spikesim_ref.py; the C kernels are attention/primal.c and attention/sdsa.c.

    /usr/bin/python3 tests/reference/primal_ref.py --selftest   autograd vs the C formulas
    /usr/bin/python3 tests/reference/primal_ref.py --indices    the C table of sampled indices
    /usr/bin/python3 tests/reference/primal_ref.py --check      the C index formula vs torch

Shapes: x [B, N, D] (the block input), q, k [B, N, D] (raw projections, no value projection),
E, R [h, M, s], lam [h, s], cw [d, 2s], cb [d] (one c for all heads).
"""
import argparse
import sys

import torch

# The (N, M) pairs of the C test's index table (tests/test_attention_primal.c).
INDEX_PAIRS = [(1, 1), (2, 1), (2, 2), (5, 3), (7, 7), (9, 8), (12, 9), (17, 16), (25, 10),
               (49, 20), (64, 20), (64, 64), (100, 30), (197, 96), (1024, 200)]


def sample_indices(N, M):
    """The official code's sampling: torch.linspace(0, N - 1, M, dtype=int) (int64 linspace;
    in torch 1.13 that is not trunc(i (N-1)/(M-1)), see attention/primal.h)."""
    return torch.linspace(0, N - 1, M, dtype=int)


def sample_indices_formula(N, M, width=4):
    """attention/primal.c's snn_primal_sample_indices, in Python (same double arithmetic)."""
    if M == 1:
        return [0]
    end = float(N - 1)
    step = end / (M - 1)
    half, V = M // 2, M // (2 * width) * (2 * width)
    out = [0] * M
    for c0 in range(0, V, width):
        b = step * c0 if c0 < half else end - step * (M - 1 - c0)
        base = int(b)
        for j in range(width):
            out[c0 + j] = int(base + j * step)
    for i in range(V, M):
        out[i] = int(step * i if i < half else end - step * (M - 1 - i))
    return out


def num_samples(N, s, rank_multi=10):
    return min(N, s * rank_multi)


def primal_layer(q, k, x, E, R, cw, cb, h):
    """Primal attention of one layer. Returns o [B, N, D], e, r [B, h, N, s]."""
    B, N, D = x.shape
    d = D // h
    M = E.shape[1]
    idx = sample_indices(N, M)
    qh = q.reshape(B, N, h, d).transpose(1, 2)                       # [B, h, N, d]
    kh = k.reshape(B, N, h, d).transpose(1, 2)
    xs = x.transpose(-2, -1).reshape(B, h, d, N)[:, :, :, idx]       # X~ [B, h, d, M]
    we = torch.einsum('bhdm,hms->bhds', xs, E)
    wr = torch.einsum('bhdm,hms->bhds', xs, R)
    qn = torch.nn.functional.normalize(qh, p=2, dim=-1)
    kn = torch.nn.functional.normalize(kh, p=2, dim=-1)
    e = torch.einsum('bhnd,bhds->bhns', qn, we)
    r = torch.einsum('bhnd,bhds->bhns', kn, wr)
    oh = torch.nn.functional.linear(torch.cat((e, r), dim=-1), cw, cb)  # [B, h, N, d]
    return oh.transpose(1, 2).reshape(B, N, D), e, r


def ksvd_J(e, r, lam, E, R):
    """J of one layer, exactly the official code's expression (model_wrapper.py, trace_no_x)."""
    diag = torch.diag_embed(lam)                                     # [h, s, s]
    le = torch.einsum('bhns,hst->bhnt', e, diag)
    lr = torch.einsum('bhns,hst->bhnt', r, diag)
    loss_e = torch.mean(le.norm(dim=-1, p=2) ** 2) / 2
    loss_r = torch.mean(lr.norm(dim=-1, p=2) ** 2) / 2
    trace = torch.einsum('hps,hpd->hsd', E, R).mean(dim=0).trace()
    return loss_e + loss_r - trace


def ksvd_loss(Js):
    return sum(J ** 2 for J in Js) / len(Js)


def sdsa_kv(k, v):
    """k, v [T, N, d] -> kv [T, d] = sum_n k v."""
    return (k * v).sum(dim=1)


def sdsa_mask(q, s):
    """q [T, N, d], s [T, d] -> o = q s (broadcast over tokens)."""
    return q * s[:, None, :]


# ---- self-test: autograd against the formulas the C backward implements ----------------------

def _c_formulas(q, k, x, E, R, cw, cb, lam, h, dout, eta, P_layers):
    """Gradients by the formulas of attention/primal.h (per head, then summed), float64."""
    B, N, D = x.shape
    d = D // h
    M, s = E.shape[1], E.shape[2]
    idx = sample_indices(N, M)
    with torch.no_grad():
        o, e, r = primal_layer(q, k, x, E, R, cw, cb, h)
        S = (e ** 2 + r ** 2).sum(dim=(0, 2))                          # [h, s]
        trace = (E * R).sum()
        J = (lam ** 2 * S).sum() / (2 * B * h * N) - trace / h
        g = 2 * eta * J / P_layers
        coef = g / (B * h * N)
        G = {n: torch.zeros_like(t) for n, t in
             dict(q=q, k=k, x=x, E=E, R=R, cw=cw, cb=cb, lam=lam).items()}
        for b in range(B):
            for hh in range(h):
                sl = slice(hh * d, (hh + 1) * d)
                qb, kb, xb, do = q[b, :, sl], k[b, :, sl], x[b, :, sl], dout[b, :, sl]
                nq = qb.norm(dim=-1).clamp_min(1e-12)
                nk = kb.norm(dim=-1).clamp_min(1e-12)
                phq, phk = qb / nq[:, None], kb / nk[:, None]
                Xt = xb[idx].T                                        # [d, M]
                We, Wr = Xt @ E[hh], Xt @ R[hh]
                eb, rb = phq @ We, phk @ Wr
                G['cb'] += do.sum(0)
                G['cw'][:, :s] += do.T @ eb
                G['cw'][:, s:] += do.T @ rb
                de = do @ cw[:, :s] + coef * lam[hh] ** 2 * eb
                dr = do @ cw[:, s:] + coef * lam[hh] ** 2 * rb
                dWe, dWr = phq.T @ de, phk.T @ dr
                for (ph, nn_, W, dY, key) in ((phq, nq, We, de, 'q'), (phk, nk, Wr, dr, 'k')):
                    dph = dY @ W.T
                    pd = (ph * dph).sum(-1, keepdim=True)
                    G[key][b, :, sl] += (dph - ph * pd) / nn_[:, None]
                for m in range(M):
                    G['E'][hh, m] += xb[idx[m]] @ dWe
                    G['R'][hh, m] += xb[idx[m]] @ dWr
                    G['x'][b, idx[m], sl] += dWe @ E[hh, m] + dWr @ R[hh, m]
        G['lam'] += coef * lam * S
        G['E'] += -g / h * R
        G['R'] += -g / h * E
    return G


def selftest(seed=0):
    torch.manual_seed(seed)
    dt = torch.float64
    worst = 0.0
    for (B, N, h, d, s, rank_multi, P_layers, eta) in ((2, 7, 2, 3, 2, 2, 1, 0.1),
                                                        (3, 9, 3, 4, 3, 2, 2, 0.05),
                                                        (1, 5, 1, 6, 4, 10, 1, 0.2)):
        D, M = h * d, num_samples(N, s, rank_multi)
        t = lambda *sh: torch.randn(*sh, dtype=dt).requires_grad_()
        q, k, x = t(B, N, D), t(B, N, D), t(B, N, D)
        E, R, cw, cb = t(h, M, s), t(h, M, s), t(d, 2 * s), t(d)
        lam = torch.rand(h, s, dtype=dt).requires_grad_()
        dout = torch.randn(B, N, D, dtype=dt)
        o, e, r = primal_layer(q, k, x, E, R, cw, cb, h)
        J = ksvd_J(e, r, lam, E, R)
        # P_layers copies of the same J stand for P layers (only this layer's J is differentiated
        # by the formulas: the others' gradients are zero here because they are constants)
        Js = [J] + [J.detach()] * (P_layers - 1)
        L = (o * dout).sum() + eta * ksvd_loss(Js)
        L.backward()
        Gc = _c_formulas(q.detach(), k.detach(), x.detach(), E.detach(), R.detach(),
                         cw.detach(), cb.detach(), lam.detach(), h, dout, eta, P_layers)
        for name, ten in dict(q=q, k=k, x=x, E=E, R=R, cw=cw, cb=cb, lam=lam).items():
            err = (ten.grad - Gc[name]).abs().max().item() / max(1.0, ten.grad.abs().max().item())
            worst = max(worst, err)
            assert err < 1e-10, (name, err)
    # SDSA pieces: kv and mask backward formulas
    T, N, d = 3, 5, 4
    q, k, v = (torch.randn(T, N, d, dtype=dt).requires_grad_() for _ in range(3))
    s = torch.randn(T, d, dtype=dt).requires_grad_()
    gkv, go = torch.randn(T, d, dtype=dt), torch.randn(T, N, d, dtype=dt)
    ((sdsa_kv(k, v) * gkv).sum() + (sdsa_mask(q, s) * go).sum()).backward()
    for got, want in ((k.grad, gkv[:, None, :] * v), (v.grad, gkv[:, None, :] * k),
                      (q.grad, go * s[:, None, :]), (s.grad, (go * q).sum(1))):
        err = (got - want.detach()).abs().max().item()
        worst = max(worst, err)
        assert err < 1e-12, err
    print("selftest ok: max relative error %.2e (autograd vs attention/primal.h, sdsa.h formulas)"
          % worst)


def print_index_table():
    print("/* generated by tests/reference/primal_ref.py --indices (torch %s):\n"
          " * torch.linspace(0, N - 1, M, dtype=int), as the official code samples */"
          % torch.__version__)
    for N, M in INDEX_PAIRS:
        idx = sample_indices(N, M).tolist()
        assert idx == sample_indices_formula(N, M), (N, M)
        rows = [", ".join(map(str, idx[i:i + 16])) for i in range(0, M, 16)]
        body = ("{" + rows[0] + "}") if M <= 16 else \
            ("{\n    " + ",\n    ".join(rows) + "}")
        print("static const int IDX_%d_%d[%d] = %s;" % (N, M, M, body))
    print("static const index_case INDEX_CASES[] = {")
    for N, M in INDEX_PAIRS:
        print("    {%d, %d, IDX_%d_%d}," % (N, M, N, M))
    print("};")


def check_formula(nmax=600):
    bad = [(N, M) for N in range(1, nmax) for M in range(1, N + 1)
           if sample_indices(N, M).tolist() != sample_indices_formula(N, M)]
    print("index formula vs torch.linspace(dtype=int), 1 <= M <= N < %d: %d mismatches %s"
          % (nmax, len(bad), bad[:5]))
    return not bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--indices", action="store_true")
    ap.add_argument("--check", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(1)
    ok = True
    if a.selftest:
        selftest()
    if a.indices:
        print_index_table()
    if a.check:
        ok = check_formula()
    if not (a.selftest or a.indices or a.check):
        ap.print_help()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
