"""CCC against a plain reference formula, audmetric, and the torch loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmaffect.training.metrics import ccc, ccc_loss, ccc_per_dimension, ccc_torch, masked_mse


def reference_ccc(x: list[float], y: list[float]) -> float:
    """Lin (1989) written out with plain Python sums, population moments."""
    n = len(x)
    mx = sum(x) / n
    my = sum(y) / n
    vx = sum((a - mx) ** 2 for a in x) / n
    vy = sum((b - my) ** 2 for b in y) / n
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y)) / n
    return 2 * cov / (vx + vy + (mx - my) ** 2)


finite = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 40).flatmap(lambda n: st.tuples(arrays(np.float64, n, elements=finite),
                                                       arrays(np.float64, n, elements=finite))))
def test_ccc_matches_reference_formula(xy):
    x, y = xy
    ref_den = np.var(x) + np.var(y) + (x.mean() - y.mean()) ** 2
    if ref_den < 1e-9:
        return
    assert ccc(x, y) == pytest.approx(reference_ccc(list(x), list(y)), rel=1e-9, abs=1e-9)


def test_ccc_matches_audmetric():
    audmetric = pytest.importorskip("audmetric")
    rng = np.random.default_rng(0)
    for _ in range(10):
        x, y = rng.normal(size=50), rng.normal(size=50) * 2 + 0.3
        assert ccc(x, y) == pytest.approx(audmetric.concordance_cc(x, y), abs=1e-12)


def test_ccc_edge_cases():
    assert ccc(np.ones(5), np.arange(5.0)) == 0.0  # constant prediction
    assert math.isnan(ccc(np.ones(5), np.ones(5)))  # 0/0
    assert math.isnan(ccc(np.array([1.0]), np.array([2.0])))  # length 1
    with pytest.raises(ValueError):
        ccc(np.array([]), np.array([]))
    with pytest.raises(ValueError):
        ccc(np.ones(3), np.ones(4))
    assert ccc(np.arange(5.0), np.arange(5.0)) == 1.0
    assert ccc(np.arange(5.0) - 2, 2 - np.arange(5.0)) == pytest.approx(-1.0)
    # a shift lowers CCC but not Pearson correlation
    assert ccc(np.arange(5.0) + 1, np.arange(5.0)) < 1.0


def test_unbiased_variant_uses_unbiased_everything():
    x, y = np.array([2.5, 0.0, 2.0, 8.0]), np.array([3.0, -0.5, 2.0, 7.0])
    vx, vy = np.var(x, ddof=1), np.var(y, ddof=1)
    cov = np.cov(x, y, ddof=1)[0, 1]
    assert ccc(x, y, ddof=1) == pytest.approx(2 * cov / (vx + vy + (x.mean() - y.mean()) ** 2))


def test_torch_ccc_equals_numpy_on_unmasked_frames():
    rng = np.random.default_rng(1)
    pred = torch.tensor(rng.normal(size=(3, 7, 2)), dtype=torch.float64)
    gold = torch.tensor(rng.normal(size=(3, 7, 2)), dtype=torch.float64)
    mask = torch.tensor(rng.random((3, 7)) > 0.3)
    got = ccc_torch(pred, gold, mask, eps=0.0)
    p, g = pred[mask].numpy(), gold[mask].numpy()
    want = ccc_per_dimension(p, g)
    assert got[0].item() == pytest.approx(want["arousal"])
    assert got[1].item() == pytest.approx(want["valence"])
    assert ccc_loss(pred, gold, mask).item() == pytest.approx(1 - (want["arousal"] + want["valence"]) / 2, abs=1e-6)
    mse = float(np.mean((p - g) ** 2))  # the unmasked frames, both dimensions
    assert masked_mse(pred, gold, mask).item() == pytest.approx(mse)
    assert ccc_loss(pred, gold, mask, mse_weight=0.5).item() == pytest.approx(
        1 - (want["arousal"] + want["valence"]) / 2 + 0.5 * mse, abs=1e-6)


def test_stretched_prediction_and_mse_edge_cases():
    """A prediction with the labels' mean and 1.5 x their spread: the CCC loss of Lin's formula
    (2s / (1 + s^2) for a stretch s) and the plain MSE; an empty mask gives an MSE of 0, not NaN."""
    gold = torch.tensor([[[0.0], [0.2], [0.4], [0.6]]])
    stretched = (gold - gold.mean()) * 1.5 + gold.mean()  # same mean, 1.5 x the spread
    assert ccc_loss(stretched, gold).item() == pytest.approx(1 - 2 * 1.5 / (1 + 1.5 ** 2), abs=1e-6)
    assert masked_mse(stretched, gold).item() == pytest.approx(float(((stretched - gold) ** 2).mean()))
    assert masked_mse(gold, gold, torch.zeros(1, 4, dtype=torch.bool)).item() == 0.0  # no frame: 0, not NaN


def test_loss_gradient_finite_for_constant_batch():
    pred = torch.zeros(2, 5, 2, requires_grad=True)
    gold = torch.zeros(2, 5, 2)
    loss = ccc_loss(pred, gold)
    loss.backward()
    assert torch.isfinite(pred.grad).all()
