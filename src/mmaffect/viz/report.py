"""All figures of one recording from a checkpoint run (what ``mmaffect viz attention`` writes).

:func:`write_session_figures` takes a :class:`~mmaffect.inference.attention.SessionAttention`
(from :func:`~mmaffect.inference.attention.session_attention`, or built by any caller
that ran a model itself, as :meth:`mmaffect.inference.predictor.Prediction.save`
does through :mod:`mmaffect.inference.figures`) and writes, into one folder:

* ``traces.png`` — prediction vs. gold arousal and valence, modality-absent frames shaded;
* ``fusion.png`` — the fusion weights of every frame (attention fusion only);
* ``fusion-frame-<time>s.png`` — one diagram per requested time (Fig. 4);
* ``words.html`` / ``words.png`` — the text selector weights of chosen sentences (Fig. 3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mmaffect.inference.attention import SessionAttention
from mmaffect.training.evaluate import align_delay
from mmaffect.viz.attention import (
    frames_at,
    fusion_frame_figure,
    fusion_kind,
    fusion_weights_figure,
    peaked_frames,
    sentence_at,
    word_weights_html,
    word_weights_png,
)
from mmaffect.viz.traces import plot_traces

__all__ = ["SessionFigures", "write_session_figures"]


@dataclass
class SessionFigures:
    """Paths written by :func:`write_session_figures` (by figure name) and what was skipped, and why."""

    written: dict[str, Path] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def write_session_figures(
    result: SessionAttention,
    *,
    out: str | Path,
    times: Sequence[float] | None = None,
    sentences: int = 3,
    head: int | None = None,
    scale: str = "sentence",
) -> SessionFigures:
    """Write the trace, fusion and word figures of one recording into ``out``.

    ``times`` (seconds) chooses the sentences and the single-frame fusion
    diagrams; without it the ``sentences`` frames with the most peaked
    selector weights (distinct word lists) are shown and no frame diagram is
    drawn. ``head`` picks one selector head (default: mean over heads).
    """
    out = Path(out)
    figs = SessionFigures()
    r = result
    chosen = frames_at(r.times, list(times)) if times else []
    label = f"{r.name} ({r.partition or 'no partition'}, {r.model_name})"

    pred = align_delay(r.pred, r.delay_frames)
    delay = f", predictions moved {r.delay_frames} frames (annotation delay)" if r.delay_frames else ""
    figs.written["traces"] = plot_traces(r.times, pred, gold=r.gold, presence=r.presence,
                                         title=f"{label}{delay}", path=out / "traces.png")
    _fusion_figures(r, figs, out=out, chosen=chosen, label=label)
    _word_figures(r, figs, out=out, chosen=chosen, sentences=sentences, head=head, scale=scale)
    return figs


def _fusion_figures(r: SessionAttention, figs: SessionFigures, *, out: Path, chosen: list[int], label: str) -> None:
    """``fusion.png`` and one ``fusion-frame-<time>s.png`` per chosen frame (attention fusions only)."""
    kind = fusion_kind(r.attention)
    if kind is None:
        figs.skipped.append("fusion weights: the model has no attention fusion")
        return
    fusion_modalities = [m for m in r.modalities]
    figs.written["fusion"] = fusion_weights_figure(
        r.times, r.attention, modalities=fusion_modalities, pairs=r.pairs, marks=[r.times[f] for f in chosen],
        title=f"{label}: {kind} fusion weights", path=out / "fusion.png")
    for f in chosen:
        name = f"fusion-frame-{r.times[f]:.1f}s"
        figs.written[name] = fusion_frame_figure(
            r.attention, frame=f, modalities=fusion_modalities, pairs=r.pairs,
            title=f"{r.name}, t = {r.times[f]:.1f} s: {kind} fusion weights", path=out / f"{name}.png")


def _word_figures(r: SessionAttention, figs: SessionFigures, *, out: Path, chosen: list[int], sentences: int,
                  head: int | None, scale: str) -> None:
    """``words.html`` / ``words.png``: the text selector weights of the chosen (or most peaked) sentences."""
    selector = r.attention.get("text.selector")
    if selector is None or r.word_index is None or r.word_tokens is None:
        figs.skipped.append("word weights: the model has no text selector or the session has no text")
        return
    has_words = np.asarray(r.word_index) >= 0
    if chosen:
        frames = [f for f in chosen if has_words[f].any()]
        empty = [f"{r.times[f]:.1f}" for f in chosen if not has_words[f].any()]
        if empty:
            figs.skipped.append(f"word weights: no words at t = {', '.join(empty)} s")
    else:
        frames = peaked_frames(selector, has_words, n=sentences, head=head, words=r.words)
    if not frames:
        figs.skipped.append("word weights: no frame with words to show")
        return
    items = [sentence_at(f, word_tokens=r.word_tokens, word_index=r.word_index, selector=selector, head=head)
             for f in frames]
    labels = [f"t = {r.times[f]:.1f} s (frame {f})" for f in frames]
    which = "mean over selector heads" if head is None else f"selector head {head}"
    title = f"{r.name}: text selector weights ({which})"
    figs.written["words-html"] = word_weights_html(items, labels=labels, title=title, scale=scale,
                                                   path=out / "words.html")
    figs.written["words-png"] = word_weights_png(items, labels=labels, title=title, scale=scale,
                                                 path=out / "words.png")
