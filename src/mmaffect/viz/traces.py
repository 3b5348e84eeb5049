"""Prediction vs. gold traces of arousal and valence over a recording.

:func:`plot_traces` draws one recording from numpy arrays (what
``mmaffect predict`` or :func:`mmaffect.inference.attention.session_attention`
produce); :func:`plot_run_traces` draws every recording that ``mmaffect
evaluate RUN`` wrote under ``RUN/eval/predictions-<checkpoint>/``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mmaffect.data.session import DIMENSIONS
from mmaffect.errors import DataError
from mmaffect.training.metrics import ccc
from mmaffect.viz.common import MODALITY_COLOURS, as_array, save_png, true_runs

__all__ = ["trace_ccc", "plot_traces", "plot_run_traces"]

_FALLBACK_COLOURS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def trace_ccc(pred: np.ndarray, gold: np.ndarray) -> float:
    """CCC of one dimension on the frames where both values are finite (NaN if < 2 such frames).

    >>> trace_ccc(np.array([0.0, 1.0, 2.0, 5.0]), np.array([0.0, 1.0, 2.0, np.nan]))
    1.0
    """
    ok = np.isfinite(pred) & np.isfinite(gold)
    if ok.sum() < 2:
        return float("nan")
    return float(ccc(pred[ok], gold[ok]))


def _frame_step(times: np.ndarray) -> float:
    steps = np.diff(times)
    steps = steps[np.isfinite(steps) & (steps > 0)]
    return float(np.median(steps)) if steps.size else 0.1


def plot_traces(
    times: np.ndarray,
    pred: np.ndarray,
    *,
    gold: np.ndarray | None = None,
    presence: Mapping[str, np.ndarray] | None = None,
    title: str | None = None,
    path: str | Path,
    dimensions: Sequence[str] = DIMENSIONS,
) -> Path:
    """Write a PNG of predicted (solid) and gold (dashed) arousal and valence over time.

    ``times``: (T,) frame start times in seconds; ``pred``: (T, 2) arousal,
    valence; ``gold``: (T, 2) or None (NaN entries are unlabelled frames).
    With gold, each panel's legend gives the CCC of the recording (frames with
    both values finite). ``presence`` maps a modality name to a (T,) bool
    array; frames where it is False are shaded in the modality's colour
    ("no text", "no visual", ...). Returns ``path``.
    """
    t = as_array(times, name="times", ndim=1)
    p = as_array(pred, name="pred", ndim=2)
    n_dim = len(dimensions)
    if p.shape != (len(t), n_dim):
        raise DataError(f"pred: expected shape ({len(t)}, {n_dim}) to match {len(t)} times, got {p.shape}")
    g = None
    if gold is not None:
        g = as_array(gold, name="gold", ndim=2)
        if g.shape != p.shape:
            raise DataError(f"gold: expected shape {p.shape} like pred, got {g.shape}")
    bands: dict[str, np.ndarray] = {}
    for name, flags in (presence or {}).items():
        f = np.asarray(flags)
        if f.shape != t.shape:
            raise DataError(f"presence[{name!r}]: expected shape {t.shape} like times, got {f.shape}")
        bands[name] = f.astype(bool)

    step = _frame_step(t)
    fig = Figure(figsize=(12, 2.4 * n_dim + 0.6), layout="constrained")
    axes = fig.subplots(n_dim, 1, sharex=True, squeeze=False)[:, 0]
    for i, (ax, dim) in enumerate(zip(axes, dimensions)):
        handles = []
        for k, (name, flags) in enumerate(bands.items()):
            colour = MODALITY_COLOURS.get(name, _FALLBACK_COLOURS[k % len(_FALLBACK_COLOURS)])
            for a, b in true_runs(~flags):
                ax.axvspan(t[a], t[b - 1] + step, color=colour, alpha=0.12, linewidth=0)
            if (~flags).any():
                handles.append(Patch(color=colour, alpha=0.25, label=f"no {name}"))
        label = "prediction"
        if g is not None:
            score = trace_ccc(p[:, i], g[:, i])
            label += f" (CCC {score:.3f})" if np.isfinite(score) else " (CCC n/a)"
        (line,) = ax.plot(t, p[:, i], color="#1f1f1f", linewidth=1.2, label=label)
        handles.insert(0, line)
        if g is not None:
            (gl,) = ax.plot(t, g[:, i], color="#ff7f0e", linewidth=1.2, linestyle="--", label="gold")
            handles.insert(1, gl)
        values = np.concatenate([p[:, i], g[:, i] if g is not None else []])
        values = values[np.isfinite(values)]
        if values.size and np.abs(values).max() <= 1.0:
            ax.set_ylim(-1.05, 1.05)
        ax.axhline(0.0, color="#999999", linewidth=0.6, zorder=0)
        ax.set_ylabel(dim)
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize="small", frameon=False)
        ax.grid(True, axis="x", alpha=0.3)
    if len(t):
        axes[-1].set_xlim(t[0], t[-1] + step)
    axes[-1].set_xlabel("time (s)")
    if title:
        fig.suptitle(title)
    return save_png(fig, path)


def plot_run_traces(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    partition: str | None = None,
    out: str | Path | None = None,
) -> list[Path]:
    """One trace PNG per recording evaluated by ``mmaffect evaluate RUN``.

    Reads ``RUN/eval/predictions-<checkpoint>/<partition>/<recording>.csv``
    (every partition there when ``partition`` is None) and writes
    ``OUT/<partition>/<recording>.png``; ``out`` defaults to
    ``RUN/eval/traces-<checkpoint>``. Returns the written paths.
    """
    from mmaffect.training.evaluate import read_predictions

    run = Path(run_dir)
    folder = run / "eval" / f"predictions-{checkpoint}"
    if not folder.is_dir():
        raise DataError(f"no predictions of {checkpoint}.pt; run `mmaffect evaluate {run}` first", path=folder)
    available = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if partition is not None:
        if partition not in available:
            raise DataError(f"no predictions for partition {partition!r} (evaluated: {available or 'none'}); "
                            f"run `mmaffect evaluate {run} --partition {partition}`", path=folder)
        parts = [partition]
    else:
        parts = available
    target = Path(out) if out is not None else run / "eval" / f"traces-{checkpoint}"
    written: list[Path] = []
    for part in parts:
        files = sorted((folder / part).glob("*.csv"))
        if not files:
            raise DataError("no predictions CSV files", path=folder / part)
        for csv_path in files:
            try:
                times, pred, gold = read_predictions(csv_path)
            except (KeyError, ValueError) as exc:
                raise DataError(f"not a predictions file of `mmaffect evaluate` ({exc})", path=csv_path) from None
            if len(times) == 0:
                raise DataError("predictions file has no rows", path=csv_path)
            written.append(plot_traces(
                times, pred, gold=None if np.isnan(gold).all() else gold,
                title=f"{csv_path.stem} ({part}, {checkpoint}.pt)", path=target / part / f"{csv_path.stem}.png",
            ))
    return written
