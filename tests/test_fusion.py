"""Fusion strategies (Section 4.2, Eq. 3-9) against hand-written loop re-computations."""

from __future__ import annotations

import math

import pytest
import torch

from mmaffect.models.fusion import (
    ConcatFusion,
    CrossModalHierarchicalFusion,
    HierarchicalAttentionFusion,
    ResidualSelfAttentionFusion,
    SelfAttentionFusion,
    masked_softmax,
)

DIMS = (5, 7, 6)  # text, audio, visual
TOL = dict(atol=1e-5, rtol=1e-4)


def _inputs(n: int = 12, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    feats = [torch.randn(n, d, generator=g, dtype=torch.float64) for d in DIMS]
    # Every presence pattern of 3 modalities (including none present) appears.
    patterns = torch.tensor([[(i >> m) & 1 for m in range(3)] for i in range(8)], dtype=torch.bool)
    mask = patterns[torch.arange(n) % 8]
    return feats, [mask[:, m].clone() for m in range(3)]


def _softmax(scores: list[float], keep: list[bool]) -> list[float]:
    """Plain masked softmax: absent entries 0, all-absent row all 0."""
    live = [s for s, k in zip(scores, keep) if k]
    if not live:
        return [0.0] * len(scores)
    top = max(live)
    exps = [math.exp(s - top) if k else 0.0 for s, k in zip(scores, keep)]
    total = sum(exps)
    return [e / total for e in exps]


def _dot(a: torch.Tensor, b: torch.Tensor) -> float:
    return sum(float(x) * float(y) for x, y in zip(a.detach(), b.detach()))


def _selector(att, xs: list[torch.Tensor], keep: list[bool]):
    """Eq. 4 by hand: alpha_i = softmax(x_i . q_i / sqrt(D)), sum alpha_i x_i."""
    d = xs[0].shape[0]
    w = _softmax([_dot(x, att.q[i]) / math.sqrt(d) for i, x in enumerate(xs)], keep)
    out = torch.zeros(d, dtype=xs[0].dtype)
    for wi, x in zip(w, xs):
        out = out + wi * x
    return out, w


def _finite_backward(fusion, feats, present):
    feats = [f.detach().clone().requires_grad_(True) for f in feats]
    out, att = fusion(feats, present)
    loss = out.sum() + sum(v.sum() for v in att.values())
    loss.backward()
    assert torch.isfinite(out).all()
    for f in feats:
        assert torch.isfinite(f.grad).all()
    for p in fusion.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_masked_softmax_rows():
    scores = torch.randn(4, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 0, 1], [0, 0, 0]], dtype=torch.bool)
    w = masked_softmax(scores, mask)
    assert (w[~mask] == 0).all()
    assert torch.allclose(w[:3].sum(-1), torch.ones(3, dtype=torch.float64))
    assert (w[3] == 0).all()


def test_concat_zeroes_absent_and_appends_presence():
    feats, present = _inputs()
    fusion = ConcatFusion(in_dims=DIMS)
    out, att = fusion(feats, present)
    assert out.shape == (12, sum(DIMS) + 3) and att == {}
    for b in range(12):
        expected = []
        for x, p in zip(feats, present):
            expected += [float(v) if p[b] else 0.0 for v in x[b]]
        expected += [float(p[b]) for p in present]
        assert torch.allclose(out[b], torch.tensor(expected, dtype=out.dtype))
    _finite_backward(fusion, feats, present)


def test_hierarchical_matches_eq_3_to_5():
    torch.manual_seed(0)
    feats, present = _inputs()
    fusion = HierarchicalAttentionFusion(in_dims=DIMS, d_u=4).double()
    out, att = fusion(feats, present)
    assert att["pairwise"].shape == (12, 3, 2) and att["top"].shape == (12, 3)
    # Eq. 5 order with (t, a, v) = (0, 1, 2): vt, va, ta.
    assert fusion.pairs == ((2, 0), (2, 1), (0, 1))
    for b in range(12):
        proj = [fusion.project.proj[m](feats[m][b]) for m in range(3)]  # Eq. 3
        keep = [bool(present[m][b]) for m in range(3)]
        pair_out, pair_keep = [], []
        for k, (i, j) in enumerate(fusion.pairs):
            o, w = _selector(fusion.pair_attention[k], [proj[i], proj[j]], [keep[i], keep[j]])
            assert torch.allclose(att["pairwise"][b, k], torch.tensor(w, dtype=torch.float64), **TOL)
            pair_out.append(o)
            pair_keep.append(keep[i] or keep[j])
        fused, w = _selector(fusion.top_attention, pair_out, pair_keep)
        assert torch.allclose(att["top"][b], torch.tensor(w, dtype=torch.float64), **TOL)
        assert torch.allclose(out[b], fused, **TOL)
        for k, (i, j) in enumerate(fusion.pairs):
            if not keep[i]:
                assert att["pairwise"][b, k, 0] == 0
            if not keep[j]:
                assert att["pairwise"][b, k, 1] == 0
            if not (keep[i] or keep[j]):
                assert att["top"][b, k] == 0
        if any(keep):
            assert abs(float(att["top"][b].detach().sum()) - 1) < 1e-9
        else:
            assert (out[b] == 0).all()
    _finite_backward(fusion, feats, present)


def _self_attention_reference(fusion, feats, present, b):
    """Eq. 6 by hand for frame b; returns per-head (A, key weights, alpha, v) and X^c."""
    h, ds = fusion.heads, fusion.d_s
    xc = [fusion.project.proj[m](feats[m][b]) for m in range(3)]
    keep = [bool(present[m][b]) for m in range(3)]
    w = fusion.qkv.weight  # rows: (j, head, s)
    heads = []
    for i in range(h):
        z = {}
        for j in range(3):
            rows = w[(j * h + i) * ds:(j * h + i + 1) * ds]
            z[j] = [rows @ xc[k] for k in range(3)]  # Z_i^j[k] = X^c[k] W_i^j
        a_rows, key_rows = [], []
        for k in range(3):
            kw = _softmax([_dot(z[0][k], z[1][n]) / math.sqrt(ds) for n in range(3)], keep)
            key_rows.append(kw)
            a_rows.append(sum(kw[n] * z[2][n] for n in range(3)))
        raw = [_dot(a_rows[k], fusion.q[i]) for k in range(3)]
        if fusion.alpha == "softmax":
            alpha = _softmax([r / math.sqrt(ds) for r in raw], keep)
        else:
            alpha = [r if kk else 0.0 for r, kk in zip(raw, keep)]
        v = sum(alpha[k] * a_rows[k] for k in range(3))
        heads.append((a_rows, key_rows, alpha, v))
    return heads, xc, keep


@pytest.mark.parametrize("alpha", ["softmax", "linear"])
def test_self_attention_matches_eq_6(alpha):
    torch.manual_seed(1)
    feats, present = _inputs()
    fusion = SelfAttentionFusion(in_dims=DIMS, d_u=4, heads=2, d_s=3, alpha=alpha).double()
    out, att = fusion(feats, present)
    assert out.shape == (12, 6)
    assert att["self"].shape == (12, 2, 3, 3) and att["modality"].shape == (12, 2, 3)
    for b in range(12):
        heads, _, keep = _self_attention_reference(fusion, feats, present, b)
        expected = torch.cat([v for *_, v in heads])
        assert torch.allclose(out[b], expected, **TOL)
        for i, (_, key_rows, al, _) in enumerate(heads):
            assert torch.allclose(att["self"][b, i], torch.tensor(key_rows, dtype=torch.float64), **TOL)
            assert torch.allclose(att["modality"][b, i], torch.tensor(al, dtype=torch.float64), **TOL)
            for m in range(3):
                if not keep[m]:
                    assert (att["self"][b, i, :, m] == 0).all() and att["modality"][b, i, m] == 0
            if alpha == "softmax" and any(keep):
                assert abs(float(att["modality"][b, i].detach().sum()) - 1) < 1e-9
    _finite_backward(fusion, feats, present)


def test_residual_self_attention_matches_eq_7():
    torch.manual_seed(2)
    feats, present = _inputs()
    fusion = ResidualSelfAttentionFusion(in_dims=DIMS, d_u=4, heads=2, d_s=3).double()
    out, att = fusion(feats, present)
    assert out.shape == (12, 2 * 4)
    for b in range(12):
        heads, xc, _ = _self_attention_reference(fusion, feats, present, b)
        parts = []
        for a_rows, _, alpha, _ in heads:
            # Non-local residual per modality row, then the Eq. 6 alpha pooling.
            rows = [fusion.w_z.weight @ a_rows[k] + xc[k] for k in range(3)]
            parts.append(sum(alpha[k] * rows[k] for k in range(3)))
        assert torch.allclose(out[b], torch.cat(parts), **TOL)
    _finite_backward(fusion, feats, present)


def test_crossmodal_matches_eq_8_9():
    torch.manual_seed(3)
    feats, present = _inputs()
    tokens, ds = 2, 6
    e = ds // tokens
    fusion = CrossModalHierarchicalFusion(in_dims=DIMS, d_s=ds, tokens=tokens).double()
    out, att = fusion(feats, present)
    assert att["pairwise"].shape == (12, 3, 2) and att["top"].shape == (12, 3)
    assert att["cross"].shape == (12, 3, 2, tokens, tokens)
    for b in range(12):
        keep = [bool(present[m][b]) for m in range(3)]
        x1 = [fusion.key.proj[m](feats[m][b]) for m in range(3)]
        x2 = [fusion.query.proj[m](feats[m][b]) for m in range(3)]
        vf = []
        for m in range(3):
            others = [c for c in range(3) if c != m]
            a_list, a_keep = [], []
            for ci, c in enumerate(others):
                ok = keep[m] and keep[c]
                a = torch.zeros(ds, dtype=torch.float64)
                for t in range(tokens):  # Eq. 8: query token t of m over c's tokens
                    qt = x2[m][t * e:(t + 1) * e]
                    w = _softmax([_dot(qt, x1[c][u * e:(u + 1) * e]) / math.sqrt(e) for u in range(tokens)],
                                 [ok] * tokens)
                    assert torch.allclose(att["cross"][b, m, ci, t], torch.tensor(w, dtype=torch.float64), **TOL)
                    for u in range(tokens):
                        a[t * e:(t + 1) * e] += w[u] * x1[c][u * e:(u + 1) * e]
                a_list.append(a)
                a_keep.append(ok)
            v, w = _selector(fusion.pair_attention[m], a_list, a_keep)
            assert torch.allclose(att["pairwise"][b, m], torch.tensor(w, dtype=torch.float64), **TOL)
            if keep[m] and not any(a_keep):
                v = x1[m]  # a lone modality passes its own projection
            vf.append(v)
        fused, w = _selector(fusion.top_attention, vf, keep)
        assert torch.allclose(att["top"][b], torch.tensor(w, dtype=torch.float64), **TOL)
        assert torch.allclose(out[b], fused, **TOL)
        if sum(keep) == 1:
            m = keep.index(True)
            assert torch.allclose(out[b], x1[m], **TOL)
    _finite_backward(fusion, feats, present)


@pytest.mark.parametrize(
    "cls", [ConcatFusion, HierarchicalAttentionFusion, SelfAttentionFusion,
            ResidualSelfAttentionFusion, CrossModalHierarchicalFusion]
)
def test_all_absent_frames_are_finite_float32(cls):
    fusion = cls(in_dims=DIMS)
    feats = [torch.randn(4, d, requires_grad=True) for d in DIMS]
    present = [torch.zeros(4, dtype=torch.bool) for _ in DIMS]
    out, att = fusion(feats, present)
    assert out.shape == (4, fusion.out_dim)
    (out.sum() + sum(v.sum() for v in att.values())).backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(f.grad).all() for f in feats)
    for v in att.values():
        assert (v == 0).all()


def test_absent_features_do_not_leak():
    """Changing an absent modality's features leaves every fused output unchanged."""
    torch.manual_seed(4)
    feats, present = _inputs()
    for fusion in (HierarchicalAttentionFusion(in_dims=DIMS, d_u=4), SelfAttentionFusion(in_dims=DIMS, d_u=4),
                   ResidualSelfAttentionFusion(in_dims=DIMS, d_u=4), CrossModalHierarchicalFusion(in_dims=DIMS, d_s=8),
                   ConcatFusion(in_dims=DIMS)):
        fusion = fusion.double()
        out, _ = fusion(feats, present)
        noisy = [torch.where(p[:, None], f, f + 100 * torch.randn_like(f)) for f, p in zip(feats, present)]
        out2, _ = fusion(noisy, present)
        assert torch.allclose(out, out2, **TOL), type(fusion).__name__


# ------------------------------------------------------------------- the declared attention layout, every fusion

from mmaffect.models.registry import fusion_specs  # noqa: E402
from mmaffect.viz.attention import FUSION_KINDS, fusion_kind  # noqa: E402


@pytest.mark.parametrize("name", [s.name for s in fusion_specs()])
def test_attention_matches_declared_layout(name):
    """What a registered fusion emits is what its ATTENTION_LAYOUT declares (names, one axis per declared
    axis after the frame axis), and the figures recognise it as that layout's kind."""
    spec = next(s for s in fusion_specs() if s.name == name)
    fusion = spec.cls(in_dims=DIMS, **{**spec.options, **spec.tiny}).double()
    feats, present = _inputs()
    _, att = fusion(feats, present)
    layout = spec.layout
    assert set(layout.required) <= set(att) <= set(layout.names)
    for w in layout.weights:
        if w.name in att:
            assert att[w.name].dim() == 1 + len(w.axes), w.name
            assert att[w.name].shape[0] == feats[0].shape[0]
    assert (layout.kind is None) == (not att)
    if att:
        assert layout.kind in FUSION_KINDS
        assert fusion_kind({f"fusion.{k}": v[None] for k, v in att.items()}) == layout.kind
        assert fusion_kind({}, fusion=spec.cls) == fusion_kind({}, fusion=name) == layout.kind
