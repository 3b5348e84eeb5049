"""Concordance correlation coefficient (paper Eq. 10) as a metric and a loss.

Convention: population moments (divide by N) for the means, both variances and
the covariance — Lin (1989), and the convention of our benchmarks. ``ddof=1``
gives unbiased variances *and* covariance (never a mix of the two, a pitfall
of an existing toolkit). AVEC scores a partition by the CCC of the
concatenation of all its recordings, not the mean of per-recording CCCs.
"""

from __future__ import annotations

import numpy as np
import torch

from mmaffect.data.session import DIMENSIONS


def ccc(prediction: np.ndarray, gold: np.ndarray, *, ddof: int = 0) -> float:
    r"""Concordance correlation coefficient of two 1-D sequences.

    .. math::
        \rho_c = \frac{2\sigma_{xy}}{\sigma_x^2 + \sigma_y^2 + (\mu_x - \mu_y)^2}

    Decided edge cases (as ``audmetric.concordance_cc``): an empty input
    raises ``ValueError``; a single value, or two sequences that are constant
    and equal (denominator 0), have no defined coefficient and give ``nan``;
    a constant prediction against a varying gold standard gives 0.

    >>> ccc(np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]))
    1.0
    >>> round(ccc(np.array([2.5, 0.0, 2.0, 8.0]), np.array([3.0, -0.5, 2.0, 7.0])), 4)
    0.9768
    >>> round(ccc(np.array([2.5, 0.0, 2.0, 8.0]), np.array([3.0, -0.5, 2.0, 7.0]), ddof=1), 4)
    0.9777
    >>> ccc(np.zeros(4), np.array([0.0, 1.0, 0.0, 1.0]))
    0.0
    >>> ccc(np.ones(3), np.ones(3))
    nan
    """
    x = np.asarray(prediction, dtype=np.float64).ravel()
    y = np.asarray(gold, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"prediction has {x.size} values but gold has {y.size}")
    if x.size == 0:
        raise ValueError("CCC of an empty sequence is undefined")
    if x.size < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    n = x.size - ddof
    vx = ((x - mx) ** 2).sum() / n
    vy = ((y - my) ** 2).sum() / n
    cov = ((x - mx) * (y - my)).sum() / n
    denom = vx + vy + (mx - my) ** 2
    if denom == 0.0:
        return float("nan")
    return float(2.0 * cov / denom)


def ccc_per_dimension(prediction: np.ndarray, gold: np.ndarray, *, ddof: int = 0,
                      names: tuple[str, ...] = DIMENSIONS) -> dict[str, float]:
    """CCC of each column of (N, D) arrays, keyed by dimension name."""
    return {n: ccc(prediction[:, i], gold[:, i], ddof=ddof) for i, n in enumerate(names)}


def ccc_torch(prediction: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None = None,
              *, eps: float = 1e-8) -> torch.Tensor:
    """Differentiable CCC over all unmasked frames, per output dimension.

    ``prediction``/``gold``: (B, T, D); ``mask``: (B, T) bool (padding False).
    Population moments, as :func:`ccc`; ``eps`` keeps the gradient finite for
    a constant batch. Returns (D,).
    """
    if mask is None:
        mask = torch.ones(prediction.shape[:2], dtype=torch.bool, device=prediction.device)
    w = mask.to(prediction.dtype).unsqueeze(-1)
    n = w.sum(dim=(0, 1)).clamp_min(1.0)
    mx = (prediction * w).sum(dim=(0, 1)) / n
    my = (gold * w).sum(dim=(0, 1)) / n
    dx = (prediction - mx) * w
    dy = (gold - my) * w
    vx = (dx**2).sum(dim=(0, 1)) / n
    vy = (dy**2).sum(dim=(0, 1)) / n
    cov = (dx * dy).sum(dim=(0, 1)) / n
    return 2.0 * cov / (vx + vy + (mx - my) ** 2 + eps)


def ccc_loss(prediction: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Paper's objective J = mean over arousal and valence of (1 − ρ_c)."""
    return (1.0 - ccc_torch(prediction, gold, mask)).mean()
