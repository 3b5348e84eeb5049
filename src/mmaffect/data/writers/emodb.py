"""Convert EmoDB (Berlin Database of Emotional Speech) into audio sessions of the generic layout.

Labels are a category → (valence, arousal) PROXY (:mod:`mmaffect.data.proxy`),
not dimensional ratings. See :func:`adapt_emodb` and ``docs/adapters.md``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmaffect.data.proxy import PROXY_VA
from mmaffect.data.session import LABEL_RATE
from mmaffect.data.sources import SAMPLES_PER_FRAME, EmoDBUtterance, emodb_utterances
from mmaffect.data.writers.layout import (
    AdaptReport,
    check_limit,
    finish_corpus,
    frames_of,
    prepare_output,
    write_csv,
    write_labels,
    write_spans,
    write_wav,
)
from mmaffect.errors import ConfigError, DataError


def _emodb_label_names(utterances: Sequence[EmoDBUtterance]) -> list[str]:
    names = ["arousal", "valence"]
    if all(not math.isnan(u.recognition) for u in utterances):
        names.append("recognition")
    return names


def _emodb_point(u: EmoDBUtterance, names: Sequence[str]) -> list[float]:
    valence, arousal = PROXY_VA[u.category]
    point = [arousal, valence]
    if "recognition" in names:
        point.append(u.recognition)
    return point


def _write_emodb_session(
    folder: Path,
    utterances: Sequence[EmoDBUtterance],
    *,
    gap_frames: int,
    gap_labels: str,
) -> int:
    """Write one EmoDB session (one or more utterances); return its number of frames."""
    names = _emodb_label_names(utterances)
    pieces: list[np.ndarray] = []
    label_rows: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    segments: list[list[Any]] = []
    offset = 0  # frames
    for k, u in enumerate(utterances):
        if k > 0 and gap_frames > 0:
            pieces.append(np.zeros(gap_frames * SAMPLES_PER_FRAME, dtype=np.float32))
            prev = np.asarray(_emodb_point(utterances[k - 1], names))
            nxt = np.asarray(_emodb_point(u, names))
            if gap_labels == "interpolate":
                frac = np.arange(1, gap_frames + 1)[:, None] / (gap_frames + 1)
                label_rows.append(prev[None, :] + (nxt - prev)[None, :] * frac)
            else:
                label_rows.append(np.repeat(prev[None, :], gap_frames, axis=0))
            offset += gap_frames
        n = len(u.samples) // SAMPLES_PER_FRAME
        pieces.append(u.samples)
        label_rows.append(np.repeat(np.asarray(_emodb_point(u, names))[None, :], n, axis=0))
        start = offset / LABEL_RATE
        spans.append((start + u.speech[0], start + u.speech[1]))
        valence, arousal = PROXY_VA[u.category]
        segments.append(
            [round(start, 4), round((offset + n) / LABEL_RATE, 4), f"{u.stem}.wav", u.category, valence, arousal,
             "" if math.isnan(u.recognition) else u.recognition]
        )
        offset += n
    labels = np.concatenate(label_rows, axis=0)
    write_wav(folder / "audio.wav", np.concatenate(pieces))
    write_spans(folder / "turns.csv", spans)
    write_spans(folder / "transcript.csv", spans, [u.text for u in utterances])
    write_labels(folder / "labels.csv", labels, names)
    write_csv(
        folder / "segments.csv",
        ["start", "end", "source", "category", "proxy_valence", "proxy_arousal", "recognition"],
        segments,
    )
    return len(labels)


def adapt_emodb(
    src: Path,
    out: Path,
    *,
    group: Literal["utterance", "speaker"] = "utterance",
    limit: int | None = None,
    gap: float = 0.5,
    gap_labels: Literal["interpolate", "hold"] = "interpolate",
    overwrite: bool = False,
) -> AdaptReport:
    """Convert EmoDB (``src`` holds labels.csv, sentences.csv, wav/) into sessions under ``out``.

    ``group='utterance'``: one session per wav file, named ``emodb_<file stem>``.
    ``group='speaker'``: one session per speaker (``emodb_spk<id>``), the
    utterances in file-name order joined by ``gap`` seconds of silence.
    Every session has ``audio.wav`` (22,050 Hz, zero-padded to whole 0.1 s
    frames), ``turns.csv`` (each utterance's non-zero span: the target
    speaking; gaps and padding are not-target), ``transcript.csv`` (the
    sentence's German text over that span — the texts are emotionally neutral
    by design, the emotion is in the voice only), ``labels.csv`` (arousal,
    valence = the category PROXY of :mod:`mmaffect.data.proxy`, constant over
    the utterance; plus ``recognition``, the share of listeners who recognised
    the emotion, 0–1, when labels.csv has it) and ``segments.csv``.
    Labels in the gaps between utterances are linearly interpolated between
    the two utterances' values (``gap_labels='interpolate'``) or hold the
    previous utterance's value (``'hold'``). ``splits.csv`` partition =
    ``spk<id>`` (for leave-one-speaker-out folds). ``limit`` caps the number
    of sessions written.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    check_limit(limit)
    if group not in ("utterance", "speaker"):
        raise ConfigError(f"group must be 'utterance' or 'speaker', not {group!r}")
    if gap_labels not in ("interpolate", "hold"):
        raise ConfigError(f"gap_labels must be 'interpolate' or 'hold', not {gap_labels!r}")
    gap_frames = frames_of(gap, "gap")
    if not src.is_dir():
        raise DataError("EmoDB folder not found", path=src)
    report = AdaptReport(corpus="emodb", out=out)
    utterances = emodb_utterances(src, report.skipped)
    prepare_output(out, overwrite=overwrite)
    partitions: list[tuple[str, str]] = []

    def write(name: str, group_utts: list[EmoDBUtterance]) -> None:
        report.frames += _write_emodb_session(out / name, group_utts, gap_frames=gap_frames, gap_labels=gap_labels)
        report.items += len(group_utts)
        partitions.append((name, f"spk{group_utts[0].speaker}"))

    if group == "utterance":
        for u in utterances:
            if limit is not None and len(partitions) >= limit:
                break
            if u is not None:
                write(f"emodb_{u.stem}", [u])
    else:
        current: list[EmoDBUtterance] = []
        for u in utterances:
            if u is None:
                continue
            if current and u.speaker != current[0].speaker:
                write(f"emodb_spk{current[0].speaker}", current)
                current = []
                if limit is not None and len(partitions) >= limit:
                    break
            current.append(u)
        else:
            if current:
                write(f"emodb_spk{current[0].speaker}", current)
    return finish_corpus(
        report,
        partitions=partitions,
        src=src,
        params={"group": group, "limit": limit, "gap": gap, "gap_labels": gap_labels},
        label_note="arousal/valence: category PROXY (not dimensional ratings); recognition: listener share 0-1",
        started=started,
    )


__all__ = ["adapt_emodb"]
