"""Helpers shared by the figure modules: atomic PNG output, array checks, colours.

Figures are built on :class:`matplotlib.figure.Figure` objects (no pyplot
global state, no GUI backend needed) and written with the Agg renderer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mmaffect.errors import DataError
from mmaffect.utils.io import atomic_path

__all__ = ["MODALITY_COLOURS", "save_png", "as_array", "true_runs"]

# One colour per modality, used by every figure (tab10 entries).
MODALITY_COLOURS: dict[str, str] = {"text": "#2ca02c", "audio": "#1f77b4", "visual": "#d62728"}


def save_png(fig: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` as PNG atomically and release its memory."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    fig.clear()
    return path


def as_array(value: object, *, name: str, ndim: int | Sequence[int], dtype: type = np.float64) -> np.ndarray:
    """``value`` as a numpy array of ``dtype`` with ``ndim`` axes, else :class:`DataError`.

    >>> as_array([1, 2], name="times", ndim=1).tolist()
    [1.0, 2.0]
    """
    arr = np.asarray(value, dtype=dtype)
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if arr.ndim not in allowed:
        raise DataError(f"{name}: expected {' or '.join(map(str, allowed))} axes, got shape {arr.shape}")
    return arr


def true_runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` index ranges of the runs of True in a 1-D bool array.

    >>> true_runs(np.array([True, True, False, True]))
    [(0, 2), (3, 4)]
    """
    f = np.concatenate([[False], np.asarray(flags, dtype=bool), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(f))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
