"""Attention figures of Section 5.10: text selector weights per word (Fig. 3)
and fusion weights per frame (Fig. 4), over a whole recording.

Everything here works on plain numpy arrays whose leading axis is time (the
batch axis removed), so any caller that ran a model can draw them:

* :func:`fusion_weights_figure` — heat maps of the fusion weights over time
  (pairwise and top level for the hierarchical strategies, modality weights
  for the self-attention strategies), one labelled row per weight;
* :func:`fusion_frame_figure` — the weights of one frame as a node-link
  diagram (modalities → pairs → fused vector), like Fig. 4;
* :func:`word_weights_html` / :func:`word_weights_png` — sentences with every
  word highlighted by its selector weight, like Fig. 3;
* :func:`sentence_at`, :func:`peaked_frames`, :func:`frames_at` — pick the
  sentences to show.

Running a model to get the weights is inference: :func:`collect_attention`,
:func:`session_attention`, :class:`SessionAttention` and :func:`frame_words`
live in :mod:`mmaffect.inference.attention` and are re-exported here.

Which weight is which: every fusion declares the weights it emits in its
``ATTENTION_LAYOUT`` (:class:`~mmaffect.models.registry.AttentionLayout`:
names, axes, meaning, and the ``kind`` of figure), and :func:`fusion_kind`
reads those declarations. The layouts of src/mmaffect/models/fusion.py: with modalities
(text, audio, visual), the hierarchical fusion's ``pairwise`` is (T, P, 2),
the weights of the two members of each pair in the order of ``pairs``
(default ``(visual, text), (visual, audio), (text, audio)``, Eq. 5), and
``top`` is (T, P), the weight of each pair's output. The cross-modal
hierarchical fusion's ``pairwise`` is (T, M, M−1), for each modality m the
weights of the other modalities in their order, and ``top`` (T, M) weighs the
per-modality vectors v_f^m. The self-attention strategies give ``modality``
(T, heads, M), the α of Eq. 6, and ``self`` (T, heads, M, M), the key weights
of each query row. A modality absent in a frame has weight exactly 0; the
figures draw exact zeros in grey ("absent").
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import LinearSegmentedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.textpath import TextToPath

from mmaffect.errors import ConfigError, DataError
from mmaffect.inference.attention import SessionAttention, collect_attention, frame_words, session_attention
from mmaffect.models.fusion import _default_pairs
from mmaffect.models.registry import AttentionLayout, fusion_specs
from mmaffect.utils.io import atomic_write_text
from mmaffect.viz.common import as_array, save_png

__all__ = [
    "FUSION_KINDS",
    "fusion_kind",
    "fusion_rows",
    "fusion_weights_figure",
    "fusion_frame_figure",
    "weight_colour",
    "word_weights_html",
    "word_weights_png",
    "frame_words",
    "sentence_at",
    "peaked_frames",
    "frames_at",
    "collect_attention",
    "SessionAttention",
    "session_attention",
]

#: The attention layouts (``AttentionLayout.kind``) this module draws.
FUSION_KINDS = ("hierarchical", "crossmodal-hierarchical", "self-attention")
_ABSENT = "#d9d9d9"


# --------------------------------------------------------------------------- fusion weights


def _layouts() -> list[AttentionLayout]:
    """The attention layouts the registered fusions declare (those with weights)."""
    return [spec.layout for spec in fusion_specs() if spec.layout.kind is not None]


def _fusion_keys() -> set[str]:
    return {name for layout in _layouts() for name in layout.names}


def _fusion_arrays(attention: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The fusion entries of an attention dict (names a registered fusion declares), keys without the
    ``fusion.`` prefix."""
    keys = _fusion_keys()
    out: dict[str, np.ndarray] = {}
    for key, value in attention.items():
        name = key[len("fusion."):] if key.startswith("fusion.") else key
        if name in keys and (key.startswith("fusion.") or "." not in key):
            arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            out[name] = arr.astype(np.float64)
    return out


def _layout_of(fusion: Any) -> AttentionLayout:
    """The declared layout of ``fusion``: a Fusion instance or class, or a registered model name."""
    if isinstance(fusion, str):
        from mmaffect.models.registry import get_fusion

        return get_fusion(fusion).layout
    layout = getattr(fusion, "ATTENTION_LAYOUT", None)
    if not isinstance(layout, AttentionLayout):
        raise ConfigError(f"{fusion!r} declares no ATTENTION_LAYOUT")
    return layout


def fusion_kind(attention: Mapping[str, Any], *, fusion: Any = None) -> str | None:
    """Which layout ``attention`` has (one of :data:`FUSION_KINDS`), None without fusion weights.

    With ``fusion`` (a Fusion, its class or a registered fusion model name) its declared
    ``ATTENTION_LAYOUT`` says; otherwise the layout of the registered fusions that declares every
    fusion weight present, the one declaring the fewest weights first.

    >>> fusion_kind({"fusion.pairwise": np.zeros((1, 3, 2)), "fusion.top": np.zeros((1, 3))})
    'hierarchical'
    >>> fusion_kind({"text.selector": np.zeros((1, 2, 5))}) is None
    True
    """
    if fusion is not None:
        return _layout_of(fusion).kind
    present = set(_fusion_arrays(attention))
    if not present:
        return None
    fits = [layout for layout in _layouts() if present <= set(layout.names)]
    fits.sort(key=lambda layout: len(layout.names))
    return fits[0].kind if fits else None


@dataclass
class _Panel:
    title: str
    values: np.ndarray  # (T, R)
    labels: list[str]
    edges: list[tuple[int, int]] = field(default_factory=list)  # (input row, output row) for frame diagrams


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int, ...]) -> None:
    if arr.shape != shape:
        raise DataError(f"fusion.{name}: expected shape {shape}, got {arr.shape}")


def fusion_rows(
    attention: Mapping[str, Any],
    *,
    modalities: Sequence[str],
    n_frames: int | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
) -> tuple[str, list[tuple[str, np.ndarray, list[str]]]]:
    """Fusion weights as labelled (T, rows) panels: ``(kind, [(title, values, row labels), ...])``.

    ``attention`` holds arrays with time as the leading axis (``"fusion.*"``
    keys, or the same names unprefixed); ``modalities`` names the fusion's
    inputs in order; ``pairs`` the hierarchical pairs (default: those of
    :class:`~mmaffect.models.fusion.HierarchicalAttentionFusion`). Shapes are
    checked against each other, the modality count and ``n_frames``.
    """
    kind, panels = _panels(attention, modalities=modalities, n_frames=n_frames, pairs=pairs)
    return kind, [(p.title, p.values, p.labels) for p in panels]


def _panels(
    attention: Mapping[str, Any],
    *,
    modalities: Sequence[str],
    n_frames: int | None,
    pairs: Sequence[tuple[int, int]] | None,
) -> tuple[str, list[_Panel]]:
    att = _fusion_arrays(attention)
    kind = fusion_kind(att)
    if kind is None:
        raise DataError("no fusion weights to draw (the concatenation fusion and unimodal models have none); "
                        f"got keys {sorted(attention)}")
    if kind not in FUSION_KINDS:
        raise DataError(f"no figure for {kind!r} fusion weights (drawn: {', '.join(FUSION_KINDS)})")
    names = [str(m) for m in modalities]
    if len(names) < 2:
        raise DataError(f"fusion weights need at least two modalities, got {names}")
    first = next(iter(att.values()))
    t = int(first.shape[0]) if first.ndim else 0
    if n_frames is not None and t != n_frames:
        raise DataError(f"fusion weights have {t} frames but there are {n_frames} times")
    if kind == "hierarchical":
        return kind, _hierarchical_panels(att, names, t, pairs)
    if kind == "crossmodal-hierarchical":
        return kind, _crossmodal_panels(att, names, t)
    return kind, _self_attention_panels(att, names, t)


def _hierarchical_panels(att: Mapping[str, np.ndarray], names: list[str], t: int,
                         pairs: Sequence[tuple[int, int]] | None) -> list[_Panel]:
    """Pairwise and top-level weights of the hierarchical fusion (Eq. 4–5)."""
    m = len(names)
    pair_list = [tuple(int(i) for i in p) for p in (pairs or _default_pairs(m))]
    if any(len(p) != 2 or not all(0 <= i < m for i in p) for p in pair_list):
        raise DataError(f"pairs {pair_list} do not index {m} modalities")
    n_pairs = len(pair_list)
    pair_names = [f"{names[i]}–{names[j]}" for i, j in pair_list]
    if "pairwise" not in att or "top" not in att:
        raise DataError("hierarchical fusion weights need both fusion.pairwise and fusion.top")
    _check_shape("pairwise", att["pairwise"], (t, n_pairs, 2))
    _check_shape("top", att["top"], (t, n_pairs))
    labels = [f"{names[p[j]]} in {pn}" for p, pn in zip(pair_list, pair_names) for j in range(2)]
    edges = [(p[j], k) for k, p in enumerate(pair_list) for j in range(2)]
    return [_Panel("pairwise weights (first layer, one selector per pair, Eq. 4–5)",
                   att["pairwise"].reshape(t, 2 * n_pairs), labels, edges),
            _Panel("top-level weights (second layer: weight of each pair)", att["top"], pair_names,
                   [(k, 0) for k in range(n_pairs)])]


def _crossmodal_panels(att: Mapping[str, np.ndarray], names: list[str], t: int) -> list[_Panel]:
    """Pairwise (each modality over the others) and top-level weights of the cross-modal fusion (Eq. 8–9)."""
    m = len(names)
    if "pairwise" not in att or "top" not in att:
        raise DataError("cross-modal fusion weights need both fusion.pairwise and fusion.top")
    _check_shape("pairwise", att["pairwise"], (t, m, m - 1))
    _check_shape("top", att["top"], (t, m))
    others = [[c for c in range(m) if c != q] for q in range(m)]
    labels = [f"{names[q]} attends {names[c]}" for q in range(m) for c in others[q]]
    edges = [(c, q) for q in range(m) for c in others[q]]
    return [_Panel("pairwise weights (each modality over the others, Eq. 8–9)",
                   att["pairwise"].reshape(t, m * (m - 1)), labels, edges),
            _Panel("top-level weights (per-modality vectors v_f, Eq. 9)", att["top"],
                   [f"v_f of {n}" for n in names], [(q, 0) for q in range(m)])]


def _self_attention_panels(att: Mapping[str, np.ndarray], names: list[str], t: int) -> list[_Panel]:
    """Modality weights α per head (Eq. 6) and, when given, the self-attention key weights."""
    m = len(names)
    if "modality" not in att:
        raise DataError("self-attention fusion weights need fusion.modality")
    alpha = att["modality"]
    if alpha.ndim != 3:
        raise DataError(f"fusion.modality: expected (T, heads, {m}), got {alpha.shape}")
    heads = alpha.shape[1]
    _check_shape("modality", alpha, (t, heads, m))
    labels = [f"head {h + 1}: {n}" for h in range(heads) for n in names]
    edges = [(i, h) for h in range(heads) for i in range(m)]
    panels = [_Panel("modality weights α per head (Eq. 6)", alpha.reshape(t, heads * m), labels, edges)]
    if "self" in att:
        _check_shape("self", att["self"], (t, heads, m, m))
        received = att["self"].mean(axis=(1, 2))
        panels.append(_Panel("self-attention key weights (mean over heads and query rows)", received,
                             list(names)))
    return panels


def _masked(values: np.ndarray, frame_mask: np.ndarray | None) -> np.ndarray:
    """Exact zeros (absent modalities) and masked frames as NaN."""
    out = np.where(values == 0.0, np.nan, values)
    if frame_mask is not None:
        out[~frame_mask] = np.nan
    return out


def _scale(panels: Sequence[_Panel]) -> tuple[float, float, str]:
    finite = np.concatenate([p.values[np.isfinite(p.values)].ravel() for p in panels] + [np.zeros(0)])
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        return 0.0, 1.0, "viridis"
    bound = float(np.abs(finite).max())
    return -bound, bound, "RdBu_r"


def fusion_weights_figure(
    times: np.ndarray,
    attention: Mapping[str, Any],
    *,
    modalities: Sequence[str],
    path: str | Path,
    frame_mask: np.ndarray | None = None,
    pairs: Sequence[tuple[int, int]] | None = None,
    marks: Sequence[float] = (),
    title: str | None = None,
) -> Path:
    """Write a PNG of the fusion weights of every frame of a recording.

    ``times``: (T,) frame start times (s); ``attention``: arrays with a
    leading time axis (``"fusion.pairwise"``, ``"fusion.top"``, … as the
    models return them, batch axis removed; other keys are ignored);
    ``modalities``: the fusion inputs in order (e.g. ``("text", "audio",
    "visual")``); ``frame_mask``: (T,) bool, False frames (padding) drawn
    grey; ``marks``: times to mark with a vertical line. One heat-map panel per
    attention level, one labelled row per weight, colour = weight (0–1; a
    diverging scale if some weight is outside, e.g. ``alpha="linear"``);
    grey = absent (weight exactly 0) or masked. Returns ``path``.
    """
    t = as_array(times, name="times", ndim=1)
    _, panels = _panels(attention, modalities=modalities, n_frames=len(t), pairs=pairs)
    mask = None
    if frame_mask is not None:
        mask = np.asarray(frame_mask)
        if mask.shape != t.shape:
            raise DataError(f"frame_mask: expected shape {t.shape} like times, got {mask.shape}")
        mask = mask.astype(bool)
    shown = [_Panel(p.title, _masked(p.values, mask), p.labels) for p in panels]
    vmin, vmax, cmap_name = _scale(shown)
    cmap = colormaps[cmap_name].with_extremes(bad=_ABSENT)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.1
    x_edges = np.concatenate([t, [t[-1] + step]]) if len(t) else np.array([0.0, step])
    heights = [max(len(p.labels), 1) * 0.28 + 0.5 for p in shown]
    fig = Figure(figsize=(12, sum(heights) + 1.0), layout="constrained")
    axes = fig.subplots(len(shown), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    mesh = None
    for ax, panel in zip(axes, shown):
        rows = len(panel.labels)
        values = panel.values if len(t) else np.full((1, rows), np.nan)
        mesh = ax.pcolormesh(x_edges, np.arange(rows + 1), np.ma.masked_invalid(values.T), cmap=cmap,
                             vmin=vmin, vmax=vmax, shading="flat")
        ax.set_ylim(rows, 0)
        ax.set_yticks(np.arange(rows) + 0.5, panel.labels, fontsize="small")
        ax.set_title(panel.title, fontsize="medium", loc="left")
        for mark in marks:
            ax.axvline(float(mark), color="white", linewidth=1.5)
            ax.axvline(float(mark), color="black", linewidth=0.7, linestyle="--")
    axes[-1].set_xlabel("time (s)")
    assert mesh is not None
    bar = fig.colorbar(mesh, ax=list(axes), fraction=0.03, pad=0.01)
    bar.set_label("weight (grey: absent / masked)")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def fusion_frame_figure(
    attention: Mapping[str, Any],
    *,
    frame: int,
    modalities: Sequence[str],
    path: str | Path,
    pairs: Sequence[tuple[int, int]] | None = None,
    title: str | None = None,
) -> Path:
    """Write a PNG of one frame's fusion weights as a diagram, like Fig. 4.

    Bottom: the modalities; middle: the first-layer outputs (pairs for the
    hierarchical fusion, v_f^m for the cross-modal one, heads for
    self-attention); top: the fused vector. Each arrow is coloured, sized and
    labelled by its weight; absent inputs (weight exactly 0) are dotted
    grey. ``attention`` as in :func:`fusion_weights_figure` (leading time
    axis), ``frame`` the index to draw. Returns ``path``.
    """
    kind, panels = _panels(attention, modalities=modalities, n_frames=None, pairs=pairs)
    n_frames = panels[0].values.shape[0]
    if not 0 <= frame < n_frames:
        raise DataError(f"frame {frame} is outside the {n_frames} frames of the weights")
    names = list(modalities)
    first = panels[0]
    if kind == "hierarchical":
        middle = panels[1].labels
    elif kind == "crossmodal-hierarchical":
        middle = [f"v_f {n}" for n in names]
    else:
        middle = [f"head {h + 1}" for h in range(first.values.shape[1] // len(names))]
    top_w = panels[1].values[frame] if kind != "self-attention" else None
    cmap = colormaps["viridis"]

    def xs(n: int) -> np.ndarray:
        return np.linspace(0.0, 1.0, n + 2)[1:-1]

    x_bottom, x_middle = xs(len(names)), xs(len(middle))
    fig = Figure(figsize=(max(7.5, 2.2 * max(len(names), len(middle))), 4.5), layout="constrained")
    ax = fig.subplots()
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.25, 2.3)

    def arrow(x0: float, y0: float, x1: float, y1: float, w: float | None, at: float = 0.5) -> None:
        if w is None:
            ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color="#7f7f7f", lw=1.0))
            return
        if w == 0.0:
            ax.annotate("", (x1, y1), (x0, y0),
                        arrowprops=dict(arrowstyle="->", color=_ABSENT, lw=1.0, linestyle=":"))
            return
        c = cmap(float(np.clip(w, 0.0, 1.0)))
        ax.annotate("", (x1, y1), (x0, y0), arrowprops=dict(arrowstyle="->", color=c, lw=1.0 + 5.0 * abs(w)))
        ax.text(x0 + (x1 - x0) * at, y0 + (y1 - y0) * at, f"{w:.2f}", fontsize=8, ha="center", va="center",
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor=c, linewidth=0.8))

    weights = first.values[frame]
    for r, (src, dst) in enumerate(first.edges):
        # Labels near the arrow heads: arrows into one node come from different
        # sources, so their labels sit apart.
        arrow(x_bottom[src], 0.12, x_middle[dst], 0.88, float(weights[r]), at=0.8)
    for k, x in enumerate(x_middle):
        arrow(x, 1.12, 0.5, 1.88, None if top_w is None else float(top_w[k]))
    node = dict(boxstyle="round,pad=0.35", facecolor="#f2f2f2", edgecolor="#4d4d4d")
    for x, n in zip(x_bottom, names):
        ax.text(x, 0.0, n, ha="center", va="center", fontsize=10, bbox=node)
    for x, n in zip(x_middle, middle):
        ax.text(x, 1.0, n, ha="center", va="center", fontsize=9, bbox=node)
    ax.text(0.5, 2.0, "fused" if top_w is not None else "fused (heads concatenated)", ha="center", va="center",
            fontsize=10, bbox=node)
    fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, shrink=0.7, aspect=25, pad=0.01, label="weight")
    ax.set_title(title or f"{kind} fusion, frame {frame}", fontsize="medium")
    return save_png(fig, path)


# --------------------------------------------------------------------------- words (Fig. 3)

_WORD_BASE = np.array([214, 39, 40], dtype=np.float64)  # the colour of the largest weight


def weight_colour(weight: float, *, vmax: float = 1.0) -> str:
    """Background colour of a word with selector weight ``weight`` (``#rrggbb``).

    White for 0, the full colour at ``vmax`` and above; every channel moves
    monotonically, so a larger weight is never lighter.

    >>> weight_colour(0.0), weight_colour(1.0), weight_colour(0.5, vmax=0.5)
    ('#ffffff', '#d62728', '#d62728')
    """
    x = 0.0 if vmax <= 0 else float(np.clip(weight / vmax, 0.0, 1.0))
    rgb = np.rint(255.0 + (_WORD_BASE - 255.0) * x).astype(int)
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _text_colour(weight: float, vmax: float) -> str:
    return "#ffffff" if vmax > 0 and weight / vmax > 0.6 else "#1a1a1a"


def _check_sentences(
    sentences: Sequence[tuple[Sequence[str], np.ndarray]], labels: Sequence[str] | None
) -> list[tuple[list[str], np.ndarray]]:
    out = []
    for i, item in enumerate(sentences):
        if len(item) != 2:
            raise DataError(f"sentence {i + 1}: expected a (words, weights) pair")
        words, weights = item
        w = np.asarray(weights, dtype=np.float64)
        words = [str(x) for x in words]
        if w.ndim != 1 or len(w) != len(words):
            raise DataError(f"sentence {i + 1}: {len(words)} words but weights of shape {w.shape}")
        if not np.isfinite(w).all() or (w < 0).any():
            raise DataError(f"sentence {i + 1}: weights must be finite and non-negative")
        out.append((words, w))
    if labels is not None and len(labels) != len(out):
        raise DataError(f"{len(labels)} labels for {len(out)} sentences")
    return out


def _vmax(weights: np.ndarray, scale: str) -> float:
    if scale == "sentence":
        return float(weights.max()) if weights.size else 1.0
    if scale == "absolute":
        return 1.0
    raise ConfigError(f"scale must be 'sentence' or 'absolute', got {scale!r}")


_CSS = """body { font-family: sans-serif; margin: 2em; max-width: 60em; }
.sentence { margin: 0.8em 0; line-height: 2.1; }
.label { color: #555; font-size: 0.85em; margin-bottom: -0.4em; }
.w { padding: 0.15em 0.3em; margin: 0 0.08em; border-radius: 0.25em; }
.legend { margin-top: 1.5em; font-size: 0.85em; color: #555; }
.bar { display: inline-block; width: 12em; height: 0.9em; vertical-align: middle;
       background: linear-gradient(to right, #ffffff, %s); border: 1px solid #ccc; }"""


def word_weights_html(
    sentences: Sequence[tuple[Sequence[str], np.ndarray]],
    *,
    path: str | Path,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    scale: str = "sentence",
) -> Path:
    """Write an HTML page with each word highlighted by its selector weight (Fig. 3).

    ``sentences``: ``(words, weights)`` pairs, ``weights`` (n_words,) —
    e.g. from :func:`sentence_at`. ``scale="sentence"`` colours relative to
    the sentence's largest weight (the most attended word gets the full
    colour); ``"absolute"`` maps weight 1 to the full colour. Each word is one
    ``<span>`` whose ``title`` (hover) gives its weight; words and labels are
    HTML-escaped. Written atomically; returns ``path``.
    """
    checked = _check_sentences(sentences, labels)
    heading = title or "Text selector weights"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(heading)}</title>",
        f"<style>\n{_CSS % weight_colour(1.0)}\n</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(heading)}</h1>",
    ]
    for i, (words, w) in enumerate(checked):
        vmax = _vmax(w, scale)
        parts.append('<div class="sentence">')
        if labels is not None:
            parts.append(f'<div class="label">{html.escape(str(labels[i]))}</div>')
        spans = [
            f'<span class="w" style="background-color:{weight_colour(x, vmax=vmax)};'
            f'color:{_text_colour(x, vmax)}" title="weight {x:.3f}">{html.escape(word)}</span>'
            for word, x in zip(words, w)
        ]
        parts.append("<p>" + " ".join(spans) + "</p>")
        parts.append("</div>")
    what = ("relative to the largest weight of its sentence" if scale == "sentence" else "absolute, 0 to 1")
    parts.append(f'<p class="legend">weight ({html.escape(what)}): 0 <span class="bar"></span> max; '
                 "hover a word to see its weight.</p>")
    parts += ["</body>", "</html>", ""]
    atomic_write_text(path, "\n".join(parts))
    return Path(path)


def word_weights_png(
    sentences: Sequence[tuple[Sequence[str], np.ndarray]],
    *,
    path: str | Path,
    title: str | None = None,
    labels: Sequence[str] | None = None,
    scale: str = "sentence",
    width: float = 9.0,
    fontsize: float = 12.0,
) -> Path:
    """Write a PNG of the sentences with each word on a background coloured by its weight (Fig. 3).

    Arguments as :func:`word_weights_html`; ``width`` in inches (lines wrap),
    ``fontsize`` in points. A colour bar shows the scale. Returns ``path``.
    """
    checked = _check_sentences(sentences, labels)
    font = FontProperties(size=fontsize)
    small = FontProperties(size=fontsize * 0.8)
    measure = TextToPath()
    space = measure.get_text_width_height_descent(" ", font, ismath=False)[0] + fontsize * 0.55
    margin, line_h = 0.3 * 72, fontsize * 2.0
    usable = width * 72 - 2 * margin
    # Lay out in points from the top-left corner: (x, y, text, weight, vmax, is_label).
    items: list[tuple[float, float, str, float, float, bool]] = []
    y = margin + (line_h * 1.3 if title else 0.0)
    for i, (words, w) in enumerate(checked):
        vmax = _vmax(w, scale)
        if labels is not None:
            y += line_h * 0.75
            items.append((margin, y, str(labels[i]), 0.0, vmax, True))
        y += line_h
        x = margin
        for word, weight in zip(words, w):
            wd = measure.get_text_width_height_descent(word, font, ismath=False)[0] + fontsize * 0.5
            if x > margin and x + wd > margin + usable:
                x, y = margin, y + line_h
            items.append((x, y, word, float(weight), vmax, False))
            x += wd + space - fontsize * 0.5
        y += line_h * 0.4
    bar_h = 0.45 * 72
    height_pt = y + margin + bar_h + fontsize * 2
    fig = Figure(figsize=(width, height_pt / 72))
    w_pt, h_pt = width * 72, height_pt
    if title:
        fig.text(margin / w_pt, 1 - (margin + line_h * 0.6) / h_pt, title, fontsize=fontsize * 1.15,
                 weight="bold", va="center")
    for x, y_pt, text, weight, vmax, is_label in items:
        if is_label:
            fig.text(x / w_pt, 1 - y_pt / h_pt, text, fontproperties=small, color="#555555", va="center")
            continue
        fig.text(x / w_pt, 1 - y_pt / h_pt, text, fontproperties=font, va="center", ha="left",
                 color=_text_colour(weight, vmax),
                 bbox=dict(boxstyle="round,pad=0.25", facecolor=weight_colour(weight, vmax=vmax), edgecolor="#cccccc",
                           linewidth=0.5))
    cmap = LinearSegmentedColormap.from_list("word", ["#ffffff", weight_colour(1.0)])
    cax = fig.add_axes((margin / w_pt, (margin + fontsize) / h_pt, 0.35, (bar_h * 0.5) / h_pt))
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), cax=cax, orientation="horizontal")
    bar.set_label("weight / sentence maximum" if scale == "sentence" else "weight", fontsize=fontsize * 0.7)
    bar.ax.tick_params(labelsize=fontsize * 0.6)
    return save_png(fig, path, dpi=150)


# --------------------------------------------------------------------------- picking sentences


def _head_weights(selector: np.ndarray, head: int | None) -> np.ndarray:
    """(T, P, L) or (T, L) selector weights → (T, L) of one head or the mean over heads."""
    sel = np.asarray(selector, dtype=np.float64)
    if sel.ndim == 2:
        return sel
    if sel.ndim != 3:
        raise DataError(f"text.selector: expected (T, heads, L), got shape {sel.shape}")
    if head is None:
        return sel.mean(axis=1)
    if not 0 <= head < sel.shape[1]:
        raise DataError(f"head {head} is outside the {sel.shape[1]} selector heads")
    return sel[:, head]


def sentence_at(
    frame: int,
    *,
    word_tokens: Sequence[str],
    word_index: np.ndarray,
    selector: np.ndarray,
    head: int | None = None,
) -> tuple[list[str], np.ndarray]:
    """The words of ``frame`` and their selector weights (``head``, or the mean over heads).

    ``selector``: (T, heads, L) (``attention["text.selector"]``, batch axis
    removed); ``word_index``: (T, L) of the cache's text stream.
    """
    index = np.asarray(word_index)
    weights = _head_weights(selector, head)
    if weights.shape != index.shape:
        raise DataError(f"text.selector has {weights.shape} (frames, words) but word_index has {index.shape}")
    if not 0 <= frame < len(index):
        raise DataError(f"frame {frame} is outside the {len(index)} frames")
    slots = np.flatnonzero(index[frame] >= 0)
    tokens = list(word_tokens)
    return [str(tokens[i]) for i in index[frame, slots]], weights[frame, slots]


def peaked_frames(
    selector: np.ndarray,
    word_mask: np.ndarray,
    *,
    n: int = 3,
    head: int | None = None,
    words: Sequence[Sequence[str]] | None = None,
    min_words: int = 2,
) -> list[int]:
    """The ``n`` frames whose selector weights are most peaked, most peaked first.

    Peakedness is ``1 − H(w) / log(k)`` (1: all weight on one word, 0:
    uniform) over the k ≥ ``min_words`` real words of a frame. With
    ``words`` (the words per frame), frames repeating a word list already
    chosen are skipped (a turn spans many frames).
    """
    weights = _head_weights(selector, head)
    mask = np.asarray(word_mask, dtype=bool)
    if mask.shape != weights.shape:
        raise DataError(f"word_mask has shape {mask.shape} but the selector weights {weights.shape}")
    if words is not None and len(words) != len(mask):
        raise DataError(f"{len(words)} word lists for {len(mask)} frames")
    scores = np.full(len(mask), -np.inf)
    for t in range(len(mask)):
        w = weights[t, mask[t]]
        k = len(w)
        if k < max(min_words, 2) or w.sum() <= 0:
            continue
        p = w / w.sum()
        entropy = -float(np.sum(p[p > 0] * np.log(p[p > 0])))
        scores[t] = 1.0 - entropy / math.log(k)
    order = [int(t) for t in np.argsort(-scores, kind="stable") if np.isfinite(scores[t])]
    chosen: list[int] = []
    seen: set[tuple[str, ...]] = set()
    for t in order:
        if words is not None:
            key = tuple(words[t])
            if key in seen:
                continue
            seen.add(key)
        chosen.append(t)
        if len(chosen) == n:
            break
    return chosen


def frames_at(times: np.ndarray, query: Sequence[float]) -> list[int]:
    """Index of the frame holding each query time (frame i covers ``[times[i], times[i+1])``).

    >>> frames_at(np.arange(5) / 10.0, [0.0, 0.25, 0.49])
    [0, 2, 4]
    """
    t = as_array(times, name="times", ndim=1)
    if len(t) == 0:
        raise DataError("the recording has no frames")
    step = float(np.median(np.diff(t))) if len(t) > 1 else 0.1
    out = []
    for q in query:
        if not t[0] <= q < t[-1] + step:
            raise DataError(f"time {q:g} s is outside the recording ({t[0]:g} to {t[-1] + step:g} s)")
        out.append(int(np.searchsorted(t, q, side="right") - 1))
    return out
