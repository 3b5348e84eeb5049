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


def masked_mse(prediction: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    r"""Mean squared error over all unmasked frames and every output dimension.

    .. math:: \mathrm{MSE} = \frac{1}{N D} \sum_{b,t:\,m_{bt}} \sum_d (\hat y_{btd} - y_{btd})^2

    ``prediction``/``gold``: (B, T, D); ``mask``: (B, T) bool. 0 when no frame is unmasked.

    >>> pred, mask = torch.tensor([[[0.5], [1.0]]]), torch.tensor([[True, False]])
    >>> round(masked_mse(pred, torch.zeros(1, 2, 1), mask).item(), 4)
    0.25
    """
    if mask is None:
        mask = torch.ones(prediction.shape[:2], dtype=torch.bool, device=prediction.device)
    w = mask.to(prediction.dtype).unsqueeze(-1)
    n = (w.sum() * prediction.shape[-1]).clamp_min(1.0)
    return (((prediction - gold.to(prediction.dtype)) ** 2) * w).sum() / n


def ccc_loss(prediction: torch.Tensor, gold: torch.Tensor, mask: torch.Tensor | None = None,
             *, mse_weight: float = 0.0) -> torch.Tensor:
    r"""Paper's objective J = mean over arousal and valence of (1 − ρ_c), plus ``mse_weight`` · MSE.

    .. math:: J = \frac{1}{D} \sum_d (1 - \rho_{c,d}) + w \cdot \mathrm{MSE}

    ``mse_weight`` = 0 (the paper) by default. Why the option: ρ_c only asks the predictions of a
    batch to share the labels' mean and variance, so a CCC-trained network may read an input that
    lies between its training classes at any level, stretched out to the labels' spread; the
    squared error ties every frame's value to its label (``optim.mse_weight``; docs/results.md,
    "A neutral face and the CCC loss").

    >>> x = torch.tensor([[[0.2], [0.4]]])
    >>> [round(v.item(), 4) for v in (ccc_loss(x, x), ccc_loss(x + 0.1, x), ccc_loss(x + 0.1, x, mse_weight=1.0))]
    [0.0, 0.3333, 0.3433]
    """
    loss = (1.0 - ccc_torch(prediction, gold, mask)).mean()
    return loss + mse_weight * masked_mse(prediction, gold, mask) if mse_weight else loss
