"""Convert third-party corpora (EmoDB, EmoBank, FER+) into mmaffect's generic layout.

The generic layout (read by :mod:`mmaffect.data.generic`) is::

    <root>/
      splits.csv            header "session,partition"
      adapter.json          provenance: adapter, source, parameters, proxy table, terms
      <session>/            one folder per session; folder name = session name
        video.mp4           optional (FER+)
        audio.wav           optional (EmoDB; 22,050 Hz mono PCM-16)
        transcript.csv      optional: start,end,text (seconds)
        turns.csv           optional: start,end — when the target speaks
        labels.csv          time,arousal,valence[,more]; 10 Hz rows 0.0, 0.1, ...
        segments.csv        per source item: start,end,source,category/ratings
                            (extra; the generic reader does not need it)

Every adapter returns an :class:`AdaptReport`. Labels of EmoDB and FER+ are a
category → (valence, arousal) PROXY (:mod:`mmaffect.data.proxy`), not
dimensional ratings; EmoBank's are real sentence ratings rescaled from 1–5 to
[-1, 1]. The corpora are for research use only: never commit converted data,
and models trained on it are research-only. See ``docs/adapters.md``.

All files are written atomically; ``splits.csv`` and ``adapter.json`` are
written last, so an interrupted conversion is recognisable by their absence.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mmaffect.data.proxy import EXCLUDED_VOTES, PROXY_VA, check_category, votes_matrix_to_va
from mmaffect.data.session import LABEL_RATE
from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import atomic_path, atomic_write_json, atomic_write_text

SAMPLE_RATE = 22050
"""Sample rate of the audio files the adapters write (mmaffect's audio rate)."""

SAMPLES_PER_FRAME = int(SAMPLE_RATE / LABEL_RATE)
"""Audio samples in one 10 Hz label frame (2,205)."""

SHARED_DATA_ENV = "MMAFFECT_SHARED_DATA"
"""Environment variable naming the folder that holds ``emodb/``, ``emobank/``, ``ferplus/``."""

RESEARCH_TERMS = (
    "Converted from a corpus licensed for research use only. Do not commit or "
    "redistribute this folder; models trained on it are research-only and must "
    "say so wherever they are offered."
)
"""Notice written into every converted corpus' ``adapter.json``."""

EMODB_EMOTIONS = {
    "W": "anger",
    "L": "boredom",
    "E": "disgust",
    "A": "fear",
    "F": "happiness",
    "T": "sadness",
    "N": "neutral",
}
"""EmoDB file-name emotion letter (German initial) → category."""

FERPLUS_PARTITIONS = {"train": "train", "valid": "devel"}
"""FER+ file split → mmaffect partition."""

EMOBANK_PARTITIONS = {"train": "train", "dev": "devel", "test": "test"}
"""EmoBank ``split`` value → mmaffect partition."""

_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEATFN])([a-z])$")
_EMOBANK_ID = re.compile(r"^(.*)_(\d+)_(\d+)$")


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


# --------------------------------------------------------------------------- shared data


def shared_data_root(explicit: Path | None = None) -> Path | None:
    """The folder holding the shared research corpora, or ``None`` when absent.

    Resolution order: ``explicit`` (returned if it is a folder), the
    environment variable ``MMAFFECT_SHARED_DATA``, ``../shared/data`` relative
    to the current directory, and ``shared/data`` next to the repository root.
    An explicit path or environment variable that is not a folder gives
    ``None`` rather than falling through, so that a typo is not silently
    replaced by another corpus copy.
    """
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        return explicit if explicit.is_dir() else None
    env = os.environ.get(SHARED_DATA_ENV)
    if env:
        path = Path(env).expanduser()
        return path if path.is_dir() else None
    repo_root = Path(__file__).resolve().parents[3]
    for candidate in (Path.cwd().parent / "shared" / "data", repo_root.parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return None


# --------------------------------------------------------------------------- writing helpers


def _num(x: float) -> str:
    """Compact decimal text of a float (6 decimals at most, no negative zero)."""
    return repr(round(float(x), 6) + 0.0)


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a comma-separated CSV (standard quoting) atomically."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_num(v) if isinstance(v, (float, np.floating)) else v for v in row])
    atomic_write_text(path, buf.getvalue())


def _write_labels(path: Path, values: np.ndarray, names: Sequence[str]) -> None:
    """labels.csv: ``time`` = i / 10 then one column per name."""
    rows = ([f"{i / LABEL_RATE:.1f}", *(_num(v) for v in row)] for i, row in enumerate(values))
    _write_csv(path, ["time", *names], rows)


def _write_spans(path: Path, spans: Sequence[tuple[float, float]], texts: Sequence[str] | None = None) -> None:
    """turns.csv (``start,end``) or, with ``texts``, transcript.csv (``start,end,text``)."""
    if texts is None:
        _write_csv(path, ["start", "end"], ([round(s, 4), round(e, 4)] for s, e in spans))
    else:
        rows = ([round(s, 4), round(e, 4), t] for (s, e), t in zip(spans, texts, strict=True))
        _write_csv(path, ["start", "end", "text"], rows)


def _write_wav(path: Path, samples: np.ndarray) -> None:
    """Mono 16-bit PCM wav at :data:`SAMPLE_RATE`, atomically."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), samples, SAMPLE_RATE, subtype="PCM_16", format="WAV")


def _video_codec() -> str:
    """libx264 where PyAV has it, else mpeg4."""
    import av

    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return "mpeg4"


def _write_video(
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
    codec = _video_codec()
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


def _prepare_out(out: Path, *, overwrite: bool) -> None:
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


def _finish(
    report: AdaptReport,
    *,
    partitions: Sequence[tuple[str, str]],
    src: Path,
    params: dict[str, Any],
    label_note: str,
    started: float,
) -> AdaptReport:
    """Write splits.csv and adapter.json, fill the report's totals."""
    out = report.out
    _write_csv(out / "splits.csv", ["session", "partition"], partitions)
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


def _check_limit(limit: int | None) -> None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, not {limit!r}")


def _frames_of(seconds: float, what: str) -> int:
    """Whole number of 10 Hz frames in ``seconds`` (which must lie on the 0.1 s grid)."""
    frames = seconds * LABEL_RATE
    if frames < 0 or abs(frames - round(frames)) > 1e-6:
        raise ConfigError(f"{what} must be a non-negative multiple of 0.1 s, not {seconds!r}")
    return int(round(frames))


# --------------------------------------------------------------------------- EmoDB


@dataclass(frozen=True)
class _EmoUtterance:
    """One EmoDB utterance after reading and checking."""

    stem: str
    speaker: str
    category: str
    text: str
    recognition: float
    samples: np.ndarray  # float32, padded to whole frames
    speech: tuple[float, float]  # first/last non-zero sample, seconds


def _read_csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(1-based line number, row) of a CSV with a header; DataError on missing columns."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"missing column(s) {', '.join(missing)} (header: {reader.fieldnames})", path=path, row=1)
        line = reader.line_num
        for row in reader:
            yield line + 1, row
            line = reader.line_num


def _read_emodb_audio(path: Path) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Mono float32 at 22,050 Hz padded to whole frames, and the non-zero span; None if silent."""
    import soundfile as sf

    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - soundfile raises several types
        raise DataError(f"cannot read audio: {exc}", path=path) from exc
    samples = samples.mean(axis=1)
    if rate != SAMPLE_RATE:
        import soxr

        samples = soxr.resample(samples, rate, SAMPLE_RATE).astype(np.float32)
    nonzero = np.flatnonzero(np.abs(samples) > 0.5 / 32768)  # above half a 16-bit step
    if len(nonzero) == 0:
        return None
    speech = (nonzero[0] / SAMPLE_RATE, (nonzero[-1] + 1) / SAMPLE_RATE)
    padded_len = -(-len(samples) // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
    samples = np.pad(samples, (0, padded_len - len(samples)))
    return samples, speech


def _emodb_utterances(src: Path, report: AdaptReport) -> Iterator[_EmoUtterance | None]:
    """Check labels.csv / sentences.csv / wav/ now; return utterances lazily (sorted by file name).

    The returned iterator yields ``None`` for a row whose wav is missing or
    silent (recorded in ``report.skipped``), so that callers can stop early
    (``limit``) without reading every file.
    """
    labels_path, sentences_path, wav_dir = src / "labels.csv", src / "sentences.csv", src / "wav"
    if not wav_dir.is_dir():
        raise DataError("EmoDB folder has no wav/ sub-folder", path=src)
    texts = {
        row["sentence"].strip(): row["text_de"].strip()
        for _, row in _read_csv_rows(sentences_path, ["sentence", "text_de"])
    }
    rows: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in _read_csv_rows(labels_path, ["file", "speaker", "sentence", "emotion"]):
        stem = Path(row["file"].strip()).stem
        match = _EMODB_NAME.match(stem)
        if not match:
            raise DataError(f"file name {row['file']!r} does not follow SSTTTEv.wav", path=labels_path, row=line)
        speaker, sentence, letter, _ = match.groups()
        category = check_category(row["emotion"], path=str(labels_path), row=line)
        if EMODB_EMOTIONS[letter] != category:
            raise DataError(
                f"emotion {row['emotion']!r} contradicts the file name's letter {letter!r} "
                f"({EMODB_EMOTIONS[letter]})",
                path=labels_path,
                row=line,
            )
        if row["speaker"].strip().zfill(2) != speaker or row["sentence"].strip() != sentence:
            raise DataError(
                f"speaker/sentence {row['speaker']}/{row['sentence']} contradict the file name {row['file']}",
                path=labels_path,
                row=line,
            )
        if sentence not in texts:
            raise DataError(f"sentence code {sentence!r} is not in {sentences_path.name}", path=labels_path, row=line)
        if stem in rows:
            raise DataError(f"file {row['file']} listed twice (first on row {rows[stem][0]})", path=labels_path, row=line)
        rows[stem] = (line, row)
    on_disk = {p.stem for p in wav_dir.glob("*.wav")}
    for stem in sorted(on_disk - set(rows)):
        report.skipped.append((f"{stem}.wav", "not listed in labels.csv"))
    return _emodb_read(labels_path, wav_dir, rows, on_disk, texts, report)


def _emodb_read(
    labels_path: Path,
    wav_dir: Path,
    rows: dict[str, tuple[int, dict[str, str]]],
    on_disk: set[str],
    texts: dict[str, str],
    report: AdaptReport,
) -> Iterator[_EmoUtterance | None]:
    """Read the checked rows' audio one by one (see :func:`_emodb_utterances`)."""
    for stem in sorted(rows):
        line, row = rows[stem]
        wav = wav_dir / f"{stem}.wav"
        if stem not in on_disk:
            report.skipped.append((wav.name, "wav file missing"))
            yield None
            continue
        share = (row.get("recognition_pct") or "").strip()
        try:
            recognition = float(share) / 100.0 if share else float("nan")
        except ValueError:
            raise DataError(f"recognition_pct {share!r} is not a number", path=labels_path, row=line) from None
        if share and not 0.0 <= recognition <= 1.0:
            raise DataError(f"recognition_pct {share!r} is outside 0-100", path=labels_path, row=line)
        audio = _read_emodb_audio(wav)
        if audio is None:
            report.skipped.append((wav.name, "silent (all samples zero)"))
            yield None
            continue
        match = _EMODB_NAME.match(stem)
        assert match is not None  # checked above
        yield _EmoUtterance(
            stem=stem,
            speaker=match.group(1),
            category=row["emotion"].strip().lower(),
            text=texts[match.group(2)],
            recognition=recognition,
            samples=audio[0],
            speech=audio[1],
        )


def _emodb_label_names(utterances: Sequence[_EmoUtterance]) -> list[str]:
    names = ["arousal", "valence"]
    if all(not math.isnan(u.recognition) for u in utterances):
        names.append("recognition")
    return names


def _emodb_point(u: _EmoUtterance, names: Sequence[str]) -> list[float]:
    valence, arousal = PROXY_VA[u.category]
    point = [arousal, valence]
    if "recognition" in names:
        point.append(u.recognition)
    return point


def _write_emodb_session(
    folder: Path,
    utterances: Sequence[_EmoUtterance],
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
    _write_wav(folder / "audio.wav", np.concatenate(pieces))
    _write_spans(folder / "turns.csv", spans)
    _write_spans(folder / "transcript.csv", spans, [u.text for u in utterances])
    _write_labels(folder / "labels.csv", labels, names)
    _write_csv(
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
    _check_limit(limit)
    if group not in ("utterance", "speaker"):
        raise ConfigError(f"group must be 'utterance' or 'speaker', not {group!r}")
    if gap_labels not in ("interpolate", "hold"):
        raise ConfigError(f"gap_labels must be 'interpolate' or 'hold', not {gap_labels!r}")
    gap_frames = _frames_of(gap, "gap")
    if not src.is_dir():
        raise DataError("EmoDB folder not found", path=src)
    report = AdaptReport(corpus="emodb", out=out)
    utterances = _emodb_utterances(src, report)
    _prepare_out(out, overwrite=overwrite)
    partitions: list[tuple[str, str]] = []

    def write(name: str, group_utts: list[_EmoUtterance]) -> None:
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
        current: list[_EmoUtterance] = []
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
    return _finish(
        report,
        partitions=partitions,
        src=src,
        params={"group": group, "limit": limit, "gap": gap, "gap_labels": gap_labels},
        label_note="arousal/valence: category PROXY (not dimensional ratings); recognition: listener share 0-1",
        started=started,
    )


# --------------------------------------------------------------------------- EmoBank


@dataclass(frozen=True)
class _Sentence:
    """One EmoBank sentence: id, 1-5 ratings, text, number of words."""

    id: str
    valence: float
    arousal: float
    dominance: float
    text: str
    words: int


def _emobank_csv(src: Path) -> Path:
    """The EmoBank CSV: ``src`` itself, or emobank_train_dev.csv / emobank.csv inside it."""
    if src.is_file():
        return src
    for name in ("emobank_train_dev.csv", "emobank.csv"):
        if (src / name).is_file():
            return src / name
    raise DataError("no emobank_train_dev.csv or emobank.csv found", path=src)


def _read_emobank(path: Path, report: AdaptReport) -> dict[str, list[_Sentence]]:
    """Sentences per EmoBank split, each split in reading order (document, character offset)."""
    splits: dict[str, list[tuple[tuple[int, int, int], _Sentence]]] = {}
    documents: dict[str, int] = {}
    seen: dict[str, int] = {}
    for order, (line, row) in enumerate(_read_csv_rows(path, ["id", "split", "V", "A", "D", "text"])):
        sid = (row["id"] or "").strip()
        if not sid:
            raise DataError("empty id", path=path, row=line)
        if sid in seen:
            raise DataError(f"id {sid!r} repeats row {seen[sid]}", path=path, row=line)
        seen[sid] = line
        split = (row["split"] or "").strip().lower()
        if split not in EMOBANK_PARTITIONS:
            raise DataError(f"split {row['split']!r} is not one of {', '.join(EMOBANK_PARTITIONS)}", path=path, row=line)
        ratings = []
        for col in ("V", "A", "D"):
            try:
                value = float(row[col])
            except (TypeError, ValueError):
                raise DataError(f"{col} = {row[col]!r} is not a number", path=path, row=line) from None
            if not 1.0 <= value <= 5.0:
                raise DataError(f"{col} = {value} is outside the 1-5 scale", path=path, row=line)
            ratings.append(value)
        text = " ".join((row["text"] or "").split())  # one line, single spaces
        words = len(text.split())
        if words == 0:
            report.skipped.append((sid, "empty text"))
            continue
        match = _EMOBANK_ID.match(sid)
        if match:
            doc = documents.setdefault(match.group(1), len(documents))
            key = (doc, int(match.group(2)), order)
        else:
            key = (documents.setdefault(sid, len(documents)), 0, order)
        splits.setdefault(split, []).append((key, _Sentence(sid, *ratings, text=text, words=words)))
    return {split: [s for _, s in sorted(items)] for split, items in splits.items()}


def _write_emobank_session(
    folder: Path, sentences: Sequence[_Sentence], *, words_per_second: float, pause_frames: int
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
    _write_spans(folder / "transcript.csv", spans, [s.text for s in sentences])
    _write_spans(folder / "turns.csv", spans)
    _write_labels(folder / "labels.csv", labels, ["arousal", "valence", "dominance"])
    _write_csv(folder / "segments.csv", ["start", "end", "source", "V", "A", "D"], segments)
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
    _check_limit(limit)
    if not isinstance(sentences_per_session, int) or sentences_per_session < 1:
        raise ConfigError(f"sentences_per_session must be a positive integer, not {sentences_per_session!r}")
    if not words_per_second > 0:
        raise ConfigError(f"words_per_second must be positive, not {words_per_second!r}")
    pause_frames = _frames_of(pause, "pause")
    report = AdaptReport(corpus="emobank", out=out)
    splits = _read_emobank(_emobank_csv(src), report)
    _prepare_out(out, overwrite=overwrite)
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
    return _finish(
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


# --------------------------------------------------------------------------- FER+


@dataclass(frozen=True)
class FaceRendering:
    """How a 48×48 FER+ face is drawn into a video frame.

    The face is resized by ``upscale`` (bicubic) and centred on a uniform
    ``background`` grey canvas with ``margin`` × the face size on every side
    (the face size is a multiple of 48, so the canvas has even sides, as
    yuv420p video needs). Haar
    cascades find far more faces with a margin than on the tight crop.
    """

    upscale: int = 3
    margin: float = 0.25
    background: int = 128

    @property
    def face_size(self) -> int:
        """Side of the upscaled face, pixels."""
        return 48 * self.upscale

    @property
    def pad(self) -> int:
        """Canvas border on each side, pixels (the face size is even, so is the canvas)."""
        return int(round(self.face_size * self.margin))

    @property
    def canvas(self) -> int:
        """Side of the square video frame, pixels."""
        return self.face_size + 2 * self.pad

    def render(self, face: np.ndarray) -> np.ndarray:
        """(canvas, canvas, 3) uint8 RGB frame showing ``face`` ((48, 48) uint8 grey)."""
        import cv2

        big = cv2.resize(face, (self.face_size, self.face_size), interpolation=cv2.INTER_CUBIC)
        frame = np.full((self.canvas, self.canvas), self.background, dtype=np.uint8)
        frame[self.pad : self.pad + self.face_size, self.pad : self.pad + self.face_size] = big
        return np.repeat(frame[:, :, None], 3, axis=2)


def _load_ferplus(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """images (N, 48, 48) uint8, votes (N, C), columns, names of one FER+ npz file."""
    if not path.is_file():
        raise DataError("file not found", path=path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in ("images", "votes", "columns", "names") if k in data}
    except Exception as exc:  # noqa: BLE001 - numpy raises several types
        raise DataError(f"cannot read npz: {exc}", path=path) from exc
    missing = [k for k in ("images", "votes", "columns") if k not in arrays]
    if missing:
        raise DataError(f"missing array(s) {', '.join(missing)}", path=path)
    images, votes = arrays["images"], arrays["votes"]
    columns = [str(c) for c in arrays["columns"]]
    n = len(images)
    names = arrays.get("names", np.array([f"face{i:06d}" for i in range(n)]))
    if images.ndim != 3 or images.shape[1:] != (48, 48) or images.dtype != np.uint8:
        raise DataError(f"images must be (N, 48, 48) uint8, not {images.shape} {images.dtype}", path=path)
    if votes.shape != (n, len(columns)) or len(names) != n:
        raise DataError(
            f"votes {votes.shape} / names {len(names)} do not match {n} images and {len(columns)} columns", path=path
        )
    for col in columns:
        if col.strip().lower() not in EXCLUDED_VOTES:
            check_category(col, path=str(path))
    return images, votes, columns, names


def _ferplus_keep(votes: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
    """Per face: kept?, and the reason when dropped (majority unknown/NF, ties included; no votes)."""
    excluded = np.array([c.strip().lower() in EXCLUDED_VOTES for c in columns])
    top = votes.max(axis=1, keepdims=True)
    at_top = (votes == top) & (top > 0)
    reasons: list[str | None] = []
    for i in range(len(votes)):
        if (at_top[i] & excluded).any():
            winners = "/".join(c for c, w in zip(columns, at_top[i] & excluded, strict=True) if w)
            reasons.append(f"majority vote is {winners}")
        elif votes[i, ~excluded].sum() == 0:
            reasons.append("no vote on an emotion category")
        else:
            reasons.append(None)
    return np.array([r is None for r in reasons]), reasons


def adapt_ferplus(
    src: Path,
    out: Path,
    *,
    faces_per_session: int = 30,
    seconds_per_face: float = 1.0,
    upscale: int = 3,
    margin: float = 0.25,
    fps: int = 25,
    limit: int | None = None,
    split: Literal["train", "valid", "both"] = "train",
    overwrite: bool = False,
) -> AdaptReport:
    """Convert FER+ (``src`` holds ferplus_train.npz / ferplus_valid.npz) into silent face videos.

    Faces whose majority vote is ``unknown`` or ``NF`` (ties included) are
    dropped; the rest, in file order, are cut into sessions of
    ``faces_per_session`` faces (the last of a split may be shorter). Each
    session has ``video.mp4`` (H.264 where available, else MPEG-4 Part 2;
    ``fps`` frames/s, no audio) showing each face for ``seconds_per_face``
    seconds, upscaled ``upscale`` times and centred on a grey canvas with
    ``margin`` × face size on each side (:class:`FaceRendering`);
    ``labels.csv`` with arousal, valence = the vote-weighted category PROXY of
    the face (:func:`mmaffect.data.proxy.votes_to_va`), constant while it is
    shown; ``segments.csv`` with the face's name, majority category and votes.
    No transcript or turns. Partitions: train → ``train``, valid → ``devel``;
    sessions ``ferplus_<partition>_<nnnn>``. ``limit`` caps the number of
    sessions written; ``report.skipped`` still lists every dropped face of the
    files read. The default 25 fps keeps every 10 Hz frame's centre closest
    to a video frame of the right face. Measure how many rendered faces a Haar
    cascade finds with :func:`measure_face_detection`.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    _check_limit(limit)
    if split not in ("train", "valid", "both"):
        raise ConfigError(f"split must be 'train', 'valid' or 'both', not {split!r}")
    if not isinstance(faces_per_session, int) or faces_per_session < 1:
        raise ConfigError(f"faces_per_session must be a positive integer, not {faces_per_session!r}")
    if not isinstance(upscale, int) or not 1 <= upscale <= 10:
        raise ConfigError(f"upscale must be an integer 1-10, not {upscale!r}")
    if not 0 <= margin <= 2:
        raise ConfigError(f"margin must be within 0-2 (fraction of the face size), not {margin!r}")
    if not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ConfigError(f"fps must be an integer 1-60, not {fps!r}")
    frames_per_face = _frames_of(seconds_per_face, "seconds_per_face")
    if frames_per_face < 1:
        raise ConfigError("seconds_per_face must be at least 0.1")
    video_per_face = seconds_per_face * fps
    if abs(video_per_face - round(video_per_face)) > 1e-6:
        raise ConfigError(f"seconds_per_face × fps must be a whole number of video frames, not {video_per_face}")
    video_per_face = int(round(video_per_face))
    rendering = FaceRendering(upscale=upscale, margin=margin)
    report = AdaptReport(corpus="ferplus", out=out)
    files = ["train", "valid"] if split == "both" else [split]
    loaded = {f: _load_ferplus(src / f"ferplus_{f}.npz") for f in files}
    _prepare_out(out, overwrite=overwrite)
    partitions: list[tuple[str, str]] = []
    for f in files:
        images, votes, columns, names = loaded[f]
        keep, reasons = _ferplus_keep(votes, columns)
        for i in np.flatnonzero(~keep):
            report.skipped.append((f"{f}:{names[i]}", str(reasons[i])))
        kept = np.flatnonzero(keep)
        va = votes_matrix_to_va(votes[kept], columns)
        counts = votes[kept]
        excluded = np.array([c.strip().lower() in EXCLUDED_VOTES for c in columns])
        partition = FERPLUS_PARTITIONS[f]
        for k, first in enumerate(range(0, len(kept), faces_per_session)):
            if limit is not None and len(partitions) >= limit:
                break
            idx = range(first, min(first + faces_per_session, len(kept)))
            name = f"ferplus_{partition}_{k:04d}"
            folder = out / name
            frames = (frame for j in idx for frame in [rendering.render(images[kept[j]])] * video_per_face)
            _write_video(folder / "video.mp4", frames, fps=fps, width=rendering.canvas, height=rendering.canvas)
            labels = np.repeat(va[list(idx)][:, ::-1], frames_per_face, axis=0)  # arousal, valence
            _write_labels(folder / "labels.csv", labels, ["arousal", "valence"])
            segments = []
            for n_in, j in enumerate(idx):
                row = counts[j].astype(np.float64)
                row[excluded] = -1  # majority among emotion categories only
                segments.append(
                    [round(n_in * frames_per_face / LABEL_RATE, 4),
                     round((n_in + 1) * frames_per_face / LABEL_RATE, 4),
                     str(names[kept[j]]), columns[int(np.argmax(row))],
                     float(va[j, 0]), float(va[j, 1]), *(int(c) for c in counts[j])]
                )
            _write_csv(
                folder / "segments.csv",
                ["start", "end", "source", "majority", "proxy_valence", "proxy_arousal", *columns],
                segments,
            )
            report.frames += len(labels)
            report.items += len(idx)
            partitions.append((name, partition))
    return _finish(
        report,
        partitions=partitions,
        src=src,
        params={
            "split": split,
            "faces_per_session": faces_per_session,
            "seconds_per_face": seconds_per_face,
            "upscale": upscale,
            "margin": margin,
            "fps": fps,
            "canvas": rendering.canvas,
            "codec": _video_codec(),
            "limit": limit,
        },
        label_note="arousal/valence: vote-weighted category PROXY (not dimensional ratings), unknown/NF excluded",
        started=started,
    )


def measure_face_detection(
    root: Path,
    *,
    max_sessions: int | None = None,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
) -> tuple[int, int]:
    """(detected, faces): how many shown faces OpenCV's frontal Haar cascade finds in converted FER+ videos.

    For every face of every session (per ``segments.csv``), the decoded video
    frame nearest to the middle of its span is searched with
    ``haarcascade_frontalface_default.xml``; a face counts as detected when the
    cascade returns at least one box. This measures the rendering, decoded
    from the mp4 as a reader sees it.
    """
    import av
    import cv2

    root = Path(root)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise DataError("cannot load haarcascade_frontalface_default.xml", path=cv2.data.haarcascades)
    sessions = [row["session"] for _, row in _read_csv_rows(root / "splits.csv", ["session", "partition"])]
    detected = faces = 0
    for name in sessions[:max_sessions]:
        folder = root / name
        mids = [
            (float(row["start"]) + float(row["end"])) / 2
            for _, row in _read_csv_rows(folder / "segments.csv", ["start", "end"])
        ]
        with av.open(str(folder / "video.mp4")) as container:
            stream = container.streams.video[0]
            grey = [(float(fr.time), fr.to_ndarray(format="gray")) for fr in container.decode(stream)]
        times = np.array([t for t, _ in grey])
        for mid in mids:
            image = grey[int(np.argmin(np.abs(times - mid)))][1]
            boxes = cascade.detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=min_neighbors)
            detected += int(len(boxes) > 0)
            faces += 1
    return detected, faces


AdapterFn = Callable[..., AdaptReport]

ADAPTERS: dict[str, AdapterFn] = {
    "emodb": adapt_emodb,
    "emobank": adapt_emobank,
    "ferplus": adapt_ferplus,
}
"""Adapter name → function ``(src, out, **options) -> AdaptReport`` (for ``mmaffect adapt``)."""

__all__ = [
    "ADAPTERS",
    "AdaptReport",
    "FaceRendering",
    "SHARED_DATA_ENV",
    "adapt_emobank",
    "adapt_emodb",
    "adapt_ferplus",
    "measure_face_detection",
    "shared_data_root",
]
