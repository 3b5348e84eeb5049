"""Statistics for comparing runs: mean ± std of seed repeats, Wilcoxon signed-rank tests.

Section 5.8 of the paper reports a Wilcoxon test (significance level 0.05)
without saying what was paired. We pair **recordings** by default: for each
recording of the partition, the CCC of system A and of system B (per
dimension and for their mean). Frames are strongly autocorrelated (10 Hz
labels smoothed over seconds), so a per-frame test treats tens of thousands
of dependent values as independent and gives far too small p-values;
recordings are the largest units that are close to independent. With few
recordings (SEWA devel: 14) the test has little power, so ``unit="block"``
offers non-overlapping blocks of ``block`` frames (default 100 = 10 s) scored
by their mean squared error — more pairs, but only approximately independent;
report which unit you used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats as sps

from mmaffect.data.session import DIMENSIONS

__all__ = ["WilcoxonResult", "wilcoxon_test", "compare_predictions", "mean_std", "format_mean_std",
           "block_squared_errors"]


@dataclass(frozen=True)
class WilcoxonResult:
    """A paired two-sided (by default) Wilcoxon signed-rank test of A against B.

    ``better`` names the system with the better median paired difference
    (``"A"``, ``"B"`` or ``"tie"``) given ``higher_is_better``.
    """

    statistic: float
    p_value: float
    n: int
    median_difference: float
    mean_a: float
    mean_b: float
    unit: str
    higher_is_better: bool

    @property
    def better(self) -> str:
        if self.median_difference == 0:
            return "tie"
        a_wins = (self.median_difference > 0) == self.higher_is_better
        return "A" if a_wins else "B"

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    @property
    def min_p_value(self) -> float:
        """The smallest p-value the exact two-sided test can give with ``n`` pairs (every pair favouring
        one side): ``2 / 2**n``. With 2 pairs it is 0.5, with 5 pairs 0.0625 — no difference can then be
        significant at 0.05, whatever the scores."""
        return min(1.0, 2.0 * 0.5 ** self.n) if self.n > 0 else 1.0


def wilcoxon_test(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    unit: str = "recording",
    higher_is_better: bool = True,
    alternative: Literal["two-sided", "greater", "less"] = "two-sided",
) -> WilcoxonResult:
    """Paired Wilcoxon signed-rank test on ``a - b`` (``scipy.stats.wilcoxon``).

    Pairs where either value is NaN are dropped. scipy chooses the exact null
    distribution for small samples without ties or zeros.

    >>> r = wilcoxon_test([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.1, 0.2, 0.3, 0.35, 0.45, 0.05])
    >>> r.n, round(r.p_value, 5), r.better
    (6, 0.03125, 'A')
    """
    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"paired samples differ in size: {x.size} vs {y.size}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    diff = x - y
    if x.size == 0 or not np.any(diff != 0):
        raise ValueError("the Wilcoxon test needs at least one pair with a non-zero difference "
                         "(the two systems' scores are identical)")
    res = sps.wilcoxon(x, y, alternative=alternative)
    return WilcoxonResult(
        statistic=float(res.statistic), p_value=float(res.pvalue), n=int(x.size),
        median_difference=float(np.median(diff)), mean_a=float(x.mean()), mean_b=float(y.mean()),
        unit=unit, higher_is_better=higher_is_better,
    )


def block_squared_errors(pred: np.ndarray, gold: np.ndarray, *, block: int = 100) -> np.ndarray:
    """Mean squared error of each non-overlapping block of ``block`` frames, (n_blocks, D).

    A trailing partial block is kept if it has at least half a block.

    >>> block_squared_errors(np.zeros((5, 1)), np.ones((5, 1)), block=2).ravel().tolist()
    [1.0, 1.0, 1.0]
    """
    n = len(pred)
    out = []
    for start in range(0, n, block):
        stop = min(n, start + block)
        if stop - start < max(1, block // 2) and start > 0:
            break
        out.append(((pred[start:stop] - gold[start:stop]) ** 2).mean(axis=0))
    return np.asarray(out).reshape(len(out), pred.shape[1])


def compare_predictions(
    preds_a: Sequence,
    preds_b: Sequence,
    *,
    unit: Literal["recording", "block"] = "recording",
    block: int = 100,
) -> dict[str, WilcoxonResult]:
    """Wilcoxon tests of two systems' predictions of the same recordings, per dimension.

    ``preds_a``/``preds_b``: :class:`mmaffect.training.evaluate.RecordingPrediction`
    lists, paired by recording name (recordings of only one side are an
    error). ``unit="recording"`` tests per-recording CCC (higher is better;
    also ``"mean"`` of arousal and valence); ``unit="block"`` tests per-block
    mean squared errors (lower is better).
    """
    from mmaffect.training.metrics import ccc

    a_by = {p.name: p for p in preds_a if p.gold is not None}
    b_by = {p.name: p for p in preds_b if p.gold is not None}
    if set(a_by) != set(b_by):
        raise ValueError(f"the runs scored different recordings: {sorted(set(a_by) ^ set(b_by))}")
    names = sorted(a_by)
    results: dict[str, WilcoxonResult] = {}
    if unit == "recording":
        def per_rec(by: dict, i: int | None) -> np.ndarray:
            vals = []
            for n in names:
                p = by[n]
                dims = range(len(DIMENSIONS)) if i is None else [i]
                vals.append(np.mean([ccc(p.pred[:, j], p.gold[:, j]) for j in dims]))
            return np.asarray(vals)

        for i, d in [*enumerate(DIMENSIONS), (None, "mean")]:
            results[d] = wilcoxon_test(per_rec(a_by, i), per_rec(b_by, i), unit="recording CCC",
                                       higher_is_better=True)
    elif unit == "block":
        ea = np.concatenate([block_squared_errors(a_by[n].pred, a_by[n].gold, block=block) for n in names])
        eb = np.concatenate([block_squared_errors(b_by[n].pred, b_by[n].gold, block=block) for n in names])
        for i, d in enumerate(DIMENSIONS):
            results[d] = wilcoxon_test(ea[:, i], eb[:, i], unit=f"{block}-frame block MSE", higher_is_better=False)
        results["mean"] = wilcoxon_test(ea.mean(1), eb.mean(1), unit=f"{block}-frame block MSE",
                                        higher_is_better=False)
    else:
        raise ValueError(f"unknown unit {unit!r}; use 'recording' or 'block'")
    return results


def mean_std(values: Sequence[float], *, ddof: int = 1) -> tuple[float, float]:
    """Mean and standard deviation (sample std, ``ddof=1``; 0 for a single value).

    >>> mean_std([0.7, 0.8, 0.9])
    (0.8, 0.1)
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return float("nan"), float("nan")
    m = float(x.mean())
    s = float(x.std(ddof=ddof)) if x.size > ddof else 0.0
    return round(m, 12), round(s, 12)


def format_mean_std(mean: float, std: float, *, digits: int = 3) -> str:
    """``.765 ± .030`` (the paper's style: no leading zero).

    >>> format_mean_std(0.7651, 0.0304)
    '.765 ± .030'
    >>> format_mean_std(-0.25, 0.5)
    '-.250 ± .500'
    """
    def f(x: float) -> str:
        if math.isnan(x):
            return "nan"
        s = f"{x:.{digits}f}"
        return s.replace("0.", ".", 1) if s.startswith(("0.", "-0.")) else s

    return f"{f(mean)} ± {f(std)}"
