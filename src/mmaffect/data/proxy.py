"""Category → (valence, arousal) PROXY used for categorical corpora.

EmoDB (acted emotional speech) and FER+ (faces with expression votes) carry
emotion *categories*, not valence/arousal ratings. To train or score the
time-continuous arousal/valence models on them, mmaffect maps each category to
a fixed prototype point of the valence/arousal plane. These coordinates are a
**proxy**, not dimensional ratings: every sample of one category gets the same
point, whatever its intensity. The table is the one in
``shared/data/README.md`` (prototype coordinates in the style of Russell's
1980 circumplex; every category lies in the quadrant of Russell's scaling;
disgust and contempt placed by convention), so that benchmark figures are
comparable across models and baselines.

For a vote distribution (FER+: counts of 10 raters over 8 categories plus
``unknown`` and ``NF`` = not a face), the proxy is the vote-weighted mean of the
category points, ``unknown`` and ``NF`` excluded.

>>> category_to_va("anger")
(-0.6, 0.8)
>>> votes_to_va([2, 2], ["happiness", "sadness"])
(0.05, 0.05)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final

import numpy as np

from mmaffect.errors import DataError

PROXY_VA: Final[Mapping[str, tuple[float, float]]] = MappingProxyType(
    {
    "anger": (-0.6, 0.8),
    "happiness": (0.8, 0.5),
    "sadness": (-0.7, -0.4),
    "fear": (-0.6, 0.6),
    "disgust": (-0.7, 0.3),
    "boredom": (-0.3, -0.7),
    "neutral": (0.0, 0.0),
    "surprise": (0.3, 0.8),
    "contempt": (-0.5, 0.2),
    }
)
"""Category name → (valence, arousal) prototype point in [-1, 1] (a PROXY)."""

EXCLUDED_VOTES: Final[frozenset[str]] = frozenset({"unknown", "nf"})
"""Vote columns (lower case) that carry no affect: ``unknown`` and ``NF`` (not a face)."""

ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
    "happy": "happiness",
    "joy": "happiness",
    "sad": "sadness",
    "angry": "anger",
    "fearful": "fear",
    "disgusted": "disgust",
    "surprised": "surprise",
    "bored": "boredom",
    }
)
"""Common spellings of the categories, accepted by :func:`canonical_category`."""


def canonical_category(name: str) -> str:
    """The table's spelling of a category name (case, whitespace and aliases folded).

    >>> canonical_category(" Happy ")
    'happiness'
    >>> canonical_category("joy")
    'happiness'
    >>> canonical_category("pride")
    Traceback (most recent call last):
    ...
    KeyError: "category 'pride' has no valence/arousal proxy; known: anger, boredom, contempt, disgust, fear, happiness, neutral, sadness, surprise"
    """
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in PROXY_VA:
        known = ", ".join(sorted(PROXY_VA))
        raise KeyError(f"category {name!r} has no valence/arousal proxy; known: {known}")
    return key


def category_to_va(name: str) -> tuple[float, float]:
    """(valence, arousal) proxy of one category (see :data:`PROXY_VA`).

    Raises ``KeyError`` for a category outside the table, including
    ``unknown`` and ``NF``, which carry no affect.

    >>> category_to_va("Sadness")
    (-0.7, -0.4)
    >>> category_to_va("neutral")
    (0.0, 0.0)
    >>> category_to_va("NF")
    Traceback (most recent call last):
    ...
    KeyError: "category 'NF' has no valence/arousal proxy; known: anger, boredom, contempt, disgust, fear, happiness, neutral, sadness, surprise"
    """
    return PROXY_VA[canonical_category(name)]


def votes_to_va(votes: Sequence[float] | np.ndarray, columns: Sequence[str]) -> tuple[float, float]:
    """Vote-weighted mean (valence, arousal) proxy of one vote distribution.

    ``votes[k]`` is the number (or share) of raters that chose ``columns[k]``.
    Columns ``unknown`` and ``NF`` (any case) are ignored; every other column
    must be a category of the table. Raises ``ValueError`` when the votes are
    negative, not finite, of the wrong length, or when no vote falls on a
    category of the table.

    >>> cols = ["neutral", "happiness", "surprise", "sadness", "anger",
    ...         "disgust", "fear", "contempt", "unknown", "NF"]
    >>> votes_to_va([0, 10, 0, 0, 0, 0, 0, 0, 0, 0], cols)
    (0.8, 0.5)
    >>> votes_to_va([5, 5, 0, 0, 0, 0, 0, 0, 3, 1], cols)   # unknown/NF ignored
    (0.4, 0.25)
    >>> votes_to_va([4, 0, 0, 0, 1, 0, 0, 4, 1, 0], cols)
    (-0.288889, 0.177778)
    >>> votes_to_va([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], cols)
    Traceback (most recent call last):
    ...
    ValueError: no votes on a category with a valence/arousal proxy (unknown/NF excluded)
    """
    va = votes_matrix_to_va(np.asarray(votes, dtype=np.float64)[None, :], columns)
    if not np.isfinite(va).all():
        raise ValueError("no votes on a category with a valence/arousal proxy (unknown/NF excluded)")
    return (round(float(va[0, 0]), 6), round(float(va[0, 1]), 6))


def votes_matrix_to_va(votes: np.ndarray, columns: Sequence[str]) -> np.ndarray:
    """(N, 2) float64 valence, arousal proxies of N vote rows (vectorised :func:`votes_to_va`).

    Rows without a vote on a category of the table give NaN (the caller
    decides whether that is an error or a face to drop).

    >>> votes_matrix_to_va(np.array([[1, 1], [0, 0]]), ["anger", "unknown"]).tolist()
    [[-0.6, 0.8], [nan, nan]]
    """
    votes = np.asarray(votes, dtype=np.float64)
    if votes.ndim != 2 or votes.shape[1] != len(columns):
        raise ValueError(f"votes of shape {votes.shape} do not match {len(columns)} columns")
    if not np.isfinite(votes).all() or (votes < 0).any():
        raise ValueError("votes must be finite and non-negative")
    points = np.zeros((len(columns), 2), dtype=np.float64)
    used = np.zeros(len(columns), dtype=bool)
    for k, col in enumerate(columns):
        if str(col).strip().lower() in EXCLUDED_VOTES:
            continue
        points[k] = category_to_va(col)
        used[k] = True
    weights = votes * used[None, :]
    total = weights.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        va = (weights @ points) / total
    va[total[:, 0] <= 0] = np.nan
    return va


def proxy_table_markdown() -> str:
    """The proxy table as a Markdown table (for docs and reports).

    >>> print(proxy_table_markdown().splitlines()[2])
    | anger | -0.6 | 0.8 |
    """
    lines = ["| category | valence | arousal |", "|---|---|---|"]
    lines += [f"| {name} | {v} | {a} |" for name, (v, a) in PROXY_VA.items()]
    return "\n".join(lines)


def check_category(name: str, *, path: str | None = None, row: int | None = None) -> str:
    """:func:`canonical_category`, raising :class:`~mmaffect.errors.DataError` naming the file/row.

    >>> check_category("awe", path="labels.csv", row=4)
    Traceback (most recent call last):
    ...
    mmaffect.errors.DataError: labels.csv: row 4: category 'awe' has no valence/arousal proxy; known: anger, boredom, contempt, disgust, fear, happiness, neutral, sadness, surprise
    """
    try:
        return canonical_category(name)
    except KeyError as exc:
        raise DataError(str(exc.args[0]), path=path, row=row) from None
