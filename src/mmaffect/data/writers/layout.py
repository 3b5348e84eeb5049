"""Write corpora in mmaffect's generic layout: the files, the output folder, the report.

The generic layout (read by :mod:`mmaffect.data.generic`) is::

    <root>/
      splits.csv            header "session,partition"
      adapter.json          provenance: adapter, source, parameters, proxy table, terms
      <session>/            one folder per session; folder name = session name
        video.mp4           optional (FER+, composite)
        audio.wav           optional (EmoDB, composite; 22,050 Hz mono PCM-16)
        transcript.csv      optional: start,end,text (seconds)
        turns.csv           optional: start,end — when the target speaks
        labels.csv          time,arousal,valence[,more]; 10 Hz rows 0.0, 0.1, ...
        segments.csv        per source item: start,end,source,category/ratings
                            (extra; the generic reader does not need it)

These helpers are shared by the converters of :mod:`mmaffect.data.writers`
(EmoDB, EmoBank, FER+, composite). Every file is written atomically; a
converter calls :func:`prepare_output` first and :func:`finish_corpus` last,
which writes ``splits.csv`` and ``adapter.json``, so that an interrupted
conversion is recognisable by their absence.
"""

from __future__ import annotations

import csv
import io
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.proxy import PROXY_VA
from mmaffect.data.session import LABEL_RATE
from mmaffect.data.sources import SAMPLE_RATE
from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import atomic_path, atomic_write_json, atomic_write_text, write_error

RESEARCH_TERMS = (
    "Converted from a corpus licensed for research use only. Do not commit or "
    "redistribute this folder; models trained on it are research-only and must "
    "say so wherever they are offered."
)
"""Notice written into every converted corpus' ``adapter.json``."""


# --------------------------------------------------------------------------- report


@dataclass
class AdaptReport:
    """What an adapter wrote.

    ``sessions`` are the session names written (in ``splits.csv`` order),
    ``frames`` the total number of 10 Hz label rows, ``items`` the number of
    source items converted (utterances, sentences or faces), ``skipped`` the
    source items left out as ``(item, reason)`` pairs, ``partitions`` the
    number of sessions per partition, ``seconds`` the wall time and ``bytes``
    the size of everything written.
    """

    corpus: str
    out: Path
    sessions: list[str] = field(default_factory=list)
    frames: int = 0
    items: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    partitions: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    bytes: int = 0

    def skip_reasons(self) -> dict[str, int]:
        """Number of skipped items per reason."""
        counts: dict[str, int] = {}
        for _, reason in self.skipped:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def summary(self) -> str:
        """A few human-readable lines for the command line."""
        parts = ", ".join(f"{p}: {n}" for p, n in sorted(self.partitions.items()))
        lines = [
            f"{self.corpus}: {len(self.sessions)} sessions ({parts}), {self.items} items, "
            f"{self.frames} frames ({self.frames / LABEL_RATE / 60:.1f} min) -> {self.out}",
            f"  {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s",
        ]
        for reason, n in sorted(self.skip_reasons().items()):
            lines.append(f"  skipped {n}: {reason}")
        return "\n".join(lines)


# --------------------------------------------------------------------------- files


def format_number(x: float) -> str:
    """Compact decimal text of a float (6 decimals at most, no negative zero)."""
    return repr(round(float(x), 6) + 0.0)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a comma-separated CSV (standard quoting) atomically; floats as :func:`format_number`."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([format_number(v) if isinstance(v, (float, np.floating)) else v for v in row])
    atomic_write_text(path, buf.getvalue())


def write_labels(path: Path, values: np.ndarray, names: Sequence[str]) -> None:
    """labels.csv: ``time`` = i / 10 then one column per name (``values`` is (T, len(names)))."""
    rows = ([f"{i / LABEL_RATE:.1f}", *(format_number(v) for v in row)] for i, row in enumerate(values))
    write_csv(path, ["time", *names], rows)


def write_spans(path: Path, spans: Sequence[tuple[float, float]], texts: Sequence[str] | None = None) -> None:
    """turns.csv (``start,end``) or, with ``texts``, transcript.csv (``start,end,text``); seconds to 4 decimals."""
    if texts is None:
        write_csv(path, ["start", "end"], ([round(s, 4), round(e, 4)] for s, e in spans))
    else:
        rows = ([round(s, 4), round(e, 4), t] for (s, e), t in zip(spans, texts, strict=True))
        write_csv(path, ["start", "end", "text"], rows)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """Mono 16-bit PCM wav at :data:`~mmaffect.data.sources.SAMPLE_RATE`, atomically."""
    import soundfile as sf

    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            raise
        raise write_error(exc, path, "cannot write the audio") from None


def video_codec() -> str:
    """The codec :func:`write_video` uses: libx264 where PyAV has it, else mpeg4."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return "mpeg4"


def write_video(
    path: Path, frames: Iterable[np.ndarray], *, fps: int, width: int, height: int, crf: int = 18
) -> None:
    """Encode RGB uint8 frames (H, W, 3) as an mp4 at a constant ``fps``, atomically.

    ``crf``: libx264's constant rate factor (18 = visually lossless, higher =
    stronger compression); with mpeg4 the bit rate is 2 Mbit/s halved for
    every 6 steps above 18, the same rule as x264's quantiser scale.
    """
    import av

    if not 0 <= crf <= 51:
        raise ConfigError(f"crf must be within 0-51, not {crf!r}")
    codec = video_codec()
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            options = {"crf": str(int(crf)), "preset": "veryfast"} if codec == "libx264" else {}
            stream = container.add_stream(codec, rate=fps, options=options)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.time_base = Fraction(1, fps)
            if codec == "mpeg4":
                stream.bit_rate = int(2_000_000 * 2 ** (-(int(crf) - 18) / 6))
            for pts, rgb in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
                frame.pts = pts
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)


# --------------------------------------------------------------------------- output folder


def prepare_output(out: Path, *, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty folder unless it is an adapter output and ``overwrite``.

    With ``overwrite``, only the session folders listed in the old
    ``splits.csv`` and the old ``splits.csv``/``adapter.json`` are removed.
    """
    out.mkdir(parents=True, exist_ok=True)
    if not any(out.iterdir()):
        return
    if not overwrite:
        raise DataError("output folder is not empty (pass overwrite=True to replace a previous conversion)", path=out)
    if not (out / "adapter.json").is_file():
        raise DataError("output folder is not empty and holds no adapter.json: refusing to overwrite it", path=out)
    splits = out / "splits.csv"
    if splits.is_file():
        with open(splits, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                name = (row.get("session") or "").strip()
                folder = out / name
                if name and "/" not in name and name not in (".", "..") and folder.is_dir():
                    shutil.rmtree(folder)
        splits.unlink()
    (out / "adapter.json").unlink()


def finish_corpus(
    report: AdaptReport,
    *,
    partitions: Sequence[tuple[str, str]],
    src: Path,
    params: dict[str, Any],
    label_note: str,
    started: float,
) -> AdaptReport:
    """Write splits.csv and adapter.json into ``report.out``, fill the report's totals and return it.

    ``partitions`` are the ``(session, partition)`` pairs written, ``params``
    the converter's parameters and ``label_note`` what the labels mean (both
    go into ``adapter.json`` with the proxy table and :data:`RESEARCH_TERMS`);
    ``started`` is the :func:`time.perf_counter` value at the start.
    """
    out = report.out
    write_csv(out / "splits.csv", ["session", "partition"], partitions)
    report.sessions = [name for name, _ in partitions]
    report.partitions = {}
    for _, part in partitions:
        report.partitions[part] = report.partitions.get(part, 0) + 1
    atomic_write_json(
        out / "adapter.json",
        {
            "adapter": report.corpus,
            "source": str(src),
            "parameters": params,
            "labels": label_note,
            "proxy_va": {k: list(v) for k, v in PROXY_VA.items()},
            "terms": RESEARCH_TERMS,
            "sessions": len(partitions),
            "items": report.items,
            "frames": report.frames,
            "skipped": report.skip_reasons(),
        },
    )
    report.bytes = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    report.seconds = time.perf_counter() - started
    return report


# --------------------------------------------------------------------------- option checks


def check_limit(limit: int | None) -> None:
    """ConfigError unless ``limit`` (a cap on the sessions written) is a positive integer or None."""
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, not {limit!r}")


def frames_of(seconds: float, what: str) -> int:
    """Whole number of 10 Hz frames in ``seconds`` (which must lie on the 0.1 s grid; ConfigError naming ``what``)."""
    frames = seconds * LABEL_RATE
    if frames < 0 or abs(frames - round(frames)) > 1e-6:
        raise ConfigError(f"{what} must be a non-negative multiple of 0.1 s, not {seconds!r}")
    return int(round(frames))


__all__ = [
    "RESEARCH_TERMS",
    "AdaptReport",
    "check_limit",
    "finish_corpus",
    "format_number",
    "frames_of",
    "prepare_output",
    "video_codec",
    "write_csv",
    "write_labels",
    "write_spans",
    "write_video",
    "write_wav",
]
