"""Convert EmoBank (sentences rated for valence, arousal, dominance) into text-only sessions.

EmoBank's labels are real sentence ratings, rescaled from 1–5 to [-1, 1].
See :func:`adapt_emobank` and ``docs/adapters.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.session import LABEL_RATE
from mmaffect.data.sources import EMOBANK_PARTITIONS, EmoBankSentence, emobank_csv, read_emobank
from mmaffect.data.writers.layout import (
    AdaptReport,
    check_limit,
    finish_corpus,
    frames_of,
    prepare_output,
    write_csv,
    write_labels,
    write_spans,
)
from mmaffect.errors import ConfigError


def _write_emobank_session(
    folder: Path, sentences: Sequence[EmoBankSentence], *, words_per_second: float, pause_frames: int
) -> int:
    """Write one text-only EmoBank session; return its number of frames."""
    spans: list[tuple[float, float]] = []
    rows: list[np.ndarray] = []
    segments: list[list[Any]] = []
    offset = 0
    for s in sentences:
        n = max(1, int(round(s.words / words_per_second * LABEL_RATE)))
        point = np.array([(s.arousal - 3.0) / 2.0, (s.valence - 3.0) / 2.0, (s.dominance - 3.0) / 2.0])
        rows.append(np.repeat(point[None, :], n + pause_frames, axis=0))
        span = (offset / LABEL_RATE, (offset + n) / LABEL_RATE)
        spans.append(span)
        segments.append([round(span[0], 4), round(span[1], 4), s.id, s.valence, s.arousal, s.dominance])
        offset += n + pause_frames
    labels = np.concatenate(rows, axis=0)
    write_spans(folder / "transcript.csv", spans, [s.text for s in sentences])
    write_spans(folder / "turns.csv", spans)
    write_labels(folder / "labels.csv", labels, ["arousal", "valence", "dominance"])
    write_csv(folder / "segments.csv", ["start", "end", "source", "V", "A", "D"], segments)
    return len(labels)


def adapt_emobank(
    src: Path,
    out: Path,
    *,
    sentences_per_session: int = 20,
    words_per_second: float = 2.5,
    pause: float = 0.5,
    limit: int | None = None,
    overwrite: bool = False,
) -> AdaptReport:
    """Convert EmoBank (``src``: its folder or CSV) into text-only sessions under ``out``.

    Sentences of one split, in reading order (grouped by source document,
    ordered by character offset, as encoded in EmoBank's ids), are cut into
    sessions of ``sentences_per_session`` consecutive sentences (the last one
    of a split may be shorter); a session never mixes splits. Each sentence is
    a turn of ``n_words / words_per_second`` seconds rounded to the 0.1 s
    label grid (at least 0.1 s), followed by ``pause`` seconds of silence.
    Files: ``transcript.csv`` and ``turns.csv`` (the sentence spans),
    ``labels.csv`` with arousal, valence and dominance = ``(x - 3) / 2``
    (EmoBank's 1–5 rater means mapped to [-1, 1]) held over each sentence's
    span and its following pause, and ``segments.csv`` (raw 1–5 ratings).
    Sessions are named ``emobank_<partition>_<nnnn>``; partitions: train →
    ``train``, dev → ``devel`` (test → ``test``). ``limit`` caps the number
    of sessions written (taken from the splits in the order train, devel, test).
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    check_limit(limit)
    if not isinstance(sentences_per_session, int) or sentences_per_session < 1:
        raise ConfigError(f"sentences_per_session must be a positive integer, not {sentences_per_session!r}")
    if not words_per_second > 0:
        raise ConfigError(f"words_per_second must be positive, not {words_per_second!r}")
    pause_frames = frames_of(pause, "pause")
    report = AdaptReport(corpus="emobank", out=out)
    splits = read_emobank(emobank_csv(src), report.skipped)
    prepare_output(out, overwrite=overwrite)
    partitions: list[tuple[str, str]] = []
    for split, partition in EMOBANK_PARTITIONS.items():
        sentences = splits.get(split, [])
        for k, first in enumerate(range(0, len(sentences), sentences_per_session)):
            if limit is not None and len(partitions) >= limit:
                break
            chunk = sentences[first : first + sentences_per_session]
            name = f"emobank_{partition}_{k:04d}"
            report.frames += _write_emobank_session(
                out / name, chunk, words_per_second=words_per_second, pause_frames=pause_frames
            )
            report.items += len(chunk)
            partitions.append((name, partition))
    return finish_corpus(
        report,
        partitions=partitions,
        src=src,
        params={
            "sentences_per_session": sentences_per_session,
            "words_per_second": words_per_second,
            "pause": pause,
            "limit": limit,
        },
        label_note="arousal/valence/dominance: EmoBank rater means (x - 3) / 2 in [-1, 1]",
        started=started,
    )


__all__ = ["adapt_emobank"]
