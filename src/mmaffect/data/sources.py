"""Read the third-party research corpora (EmoDB, EmoBank, FER+) in their own formats.

These are the *source* readers: they check and load the files as the corpora
ship them (in the shared data folder, :func:`shared_data_root`), for the
writers that convert them into mmaffect's generic layout
(:mod:`mmaffect.data.writers.adapters`, :mod:`mmaffect.data.writers.composite`)
and for face pretraining on FER+ (:mod:`mmaffect.training.faces`). They do
not produce :class:`~mmaffect.data.session.Session` records; the converted
corpora are read back by :mod:`mmaffect.data.generic`.

* EmoDB: ``labels.csv`` (file, speaker, sentence, emotion[, recognition_pct]),
  ``sentences.csv`` (sentence, text_de) and ``wav/`` —
  :func:`emodb_utterances`;
* EmoBank: one CSV (id, split, V, A, D, text) — :func:`emobank_csv`,
  :func:`read_emobank`;
* FER+: ``ferplus_<split>.npz`` (images, votes, columns[, names]) —
  :func:`load_ferplus`, :func:`ferplus_keep`.

Source items that cannot be used (a missing or silent wav, an empty
sentence) are appended to a caller's ``skipped`` list as ``(item, reason)``
pairs; malformed files raise :class:`~mmaffect.errors.DataError` naming the
file and row. The corpora are for research use only (see ``docs/adapters.md``).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmaffect.data.proxy import EXCLUDED_VOTES, check_category
from mmaffect.data.session import LABEL_RATE
from mmaffect.errors import DataError

SAMPLE_RATE = 22050
"""Sample rate the sources' audio is read at, and of the audio files the writers produce (mmaffect's audio rate)."""

SAMPLES_PER_FRAME = int(SAMPLE_RATE / LABEL_RATE)
"""Audio samples in one 10 Hz label frame (2,205)."""

SHARED_DATA_ENV = "MMAFFECT_SHARED_DATA"
"""Environment variable naming the folder that holds ``emodb/``, ``emobank/``, ``ferplus/``."""

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

EMOBANK_PARTITIONS = {"train": "train", "dev": "devel", "test": "test"}
"""EmoBank ``split`` value → mmaffect partition."""

EMOBANK_ID = re.compile(r"^(.*)_(\d+)_(\d+)$")
"""EmoBank sentence id: ``<document>_<first character>_<last character>``."""

_EMODB_NAME = re.compile(r"^(\d\d)([a-z]\d\d)([WLEATFN])([a-z])$")


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


def read_csv_rows(path: Path, required: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(1-based line number, row) of a CSV with a header; DataError on a missing file or columns."""
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


# --------------------------------------------------------------------------- EmoDB


@dataclass(frozen=True)
class EmoDBUtterance:
    """One EmoDB utterance after reading and checking."""

    stem: str
    speaker: str
    category: str
    text: str
    recognition: float
    samples: np.ndarray  # float32, padded to whole frames
    speech: tuple[float, float]  # first/last non-zero sample, seconds


def read_emodb_audio(path: Path) -> tuple[np.ndarray, tuple[float, float]] | None:
    """Mono float32 at 22,050 Hz padded to whole frames, and the non-zero span; None if silent.

    The span is ``(first, last + 1)`` non-zero sample in seconds, a sample
    counting as non-zero above half a 16-bit step. Other sample rates are
    resampled with soxr.
    """
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


def emodb_utterances(src: Path, skipped: list[tuple[str, str]]) -> Iterator[EmoDBUtterance | None]:
    """Check labels.csv / sentences.csv / wav/ now; return utterances lazily (sorted by file name).

    ``src`` is the EmoDB folder. Every row of ``labels.csv`` is checked at
    once (file-name pattern ``SSTTTEv``, emotion agreeing with the name's
    letter, known sentence code, no repeats); wav files not listed there are
    appended to ``skipped``. The returned iterator yields ``None`` for a row
    whose wav is missing or silent (also appended to ``skipped``), so that
    callers can stop early (``limit``) without reading every file.
    """
    labels_path, sentences_path, wav_dir = src / "labels.csv", src / "sentences.csv", src / "wav"
    if not wav_dir.is_dir():
        raise DataError("EmoDB folder has no wav/ sub-folder", path=src)
    texts = {
        row["sentence"].strip(): row["text_de"].strip()
        for _, row in read_csv_rows(sentences_path, ["sentence", "text_de"])
    }
    rows: dict[str, tuple[int, dict[str, str]]] = {}
    for line, row in read_csv_rows(labels_path, ["file", "speaker", "sentence", "emotion"]):
        stem = Path(row["file"].strip()).stem
        _check_emodb_row(row, stem, line, labels_path, sentences_path, texts)
        if stem in rows:
            raise DataError(f"file {row['file']} listed twice (first on row {rows[stem][0]})", path=labels_path, row=line)
        rows[stem] = (line, row)
    on_disk = {p.stem for p in wav_dir.glob("*.wav")}
    for stem in sorted(on_disk - set(rows)):
        skipped.append((f"{stem}.wav", "not listed in labels.csv"))
    return _emodb_read(labels_path, wav_dir, rows, on_disk, texts, skipped)


def _check_emodb_row(
    row: dict[str, str], stem: str, line: int, labels_path: Path, sentences_path: Path, texts: dict[str, str]
) -> None:
    """DataError unless one labels.csv row agrees with its file name and names a known sentence."""
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


def _emodb_read(
    labels_path: Path,
    wav_dir: Path,
    rows: dict[str, tuple[int, dict[str, str]]],
    on_disk: set[str],
    texts: dict[str, str],
    skipped: list[tuple[str, str]],
) -> Iterator[EmoDBUtterance | None]:
    """Read the checked rows' audio one by one (see :func:`emodb_utterances`)."""
    for stem in sorted(rows):
        line, row = rows[stem]
        wav = wav_dir / f"{stem}.wav"
        if stem not in on_disk:
            skipped.append((wav.name, "wav file missing"))
            yield None
            continue
        share = (row.get("recognition_pct") or "").strip()
        try:
            recognition = float(share) / 100.0 if share else float("nan")
        except ValueError:
            raise DataError(f"recognition_pct {share!r} is not a number", path=labels_path, row=line) from None
        if share and not 0.0 <= recognition <= 1.0:
            raise DataError(f"recognition_pct {share!r} is outside 0-100", path=labels_path, row=line)
        audio = read_emodb_audio(wav)
        if audio is None:
            skipped.append((wav.name, "silent (all samples zero)"))
            yield None
            continue
        match = _EMODB_NAME.match(stem)
        assert match is not None  # checked above
        yield EmoDBUtterance(
            stem=stem,
            speaker=match.group(1),
            category=row["emotion"].strip().lower(),
            text=texts[match.group(2)],
            recognition=recognition,
            samples=audio[0],
            speech=audio[1],
        )


# --------------------------------------------------------------------------- EmoBank


@dataclass(frozen=True)
class EmoBankSentence:
    """One EmoBank sentence: id, 1-5 ratings, text, number of words."""

    id: str
    valence: float
    arousal: float
    dominance: float
    text: str
    words: int


def emobank_csv(src: Path) -> Path:
    """The EmoBank CSV: ``src`` itself, or emobank_train_dev.csv / emobank.csv inside it."""
    if src.is_file():
        return src
    for name in ("emobank_train_dev.csv", "emobank.csv"):
        if (src / name).is_file():
            return src / name
    raise DataError("no emobank_train_dev.csv or emobank.csv found", path=src)


def read_emobank(path: Path, skipped: list[tuple[str, str]]) -> dict[str, list[EmoBankSentence]]:
    """Sentences per EmoBank split, each split in reading order (document, character offset).

    ``path`` is the CSV (:func:`emobank_csv`). Ids must be unique, splits one
    of :data:`EMOBANK_PARTITIONS` and ratings numbers within 1-5 (else
    DataError); the text is collapsed to single spaces; sentences without
    words are appended to ``skipped``. Reading order comes from the ids
    (:data:`EMOBANK_ID`); an id without that form is a document of its own.
    """
    splits: dict[str, list[tuple[tuple[int, int, int], EmoBankSentence]]] = {}
    documents: dict[str, int] = {}
    seen: dict[str, int] = {}
    for order, (line, row) in enumerate(read_csv_rows(path, ["id", "split", "V", "A", "D", "text"])):
        sid = (row["id"] or "").strip()
        if not sid:
            raise DataError("empty id", path=path, row=line)
        if sid in seen:
            raise DataError(f"id {sid!r} repeats row {seen[sid]}", path=path, row=line)
        seen[sid] = line
        split = (row["split"] or "").strip().lower()
        if split not in EMOBANK_PARTITIONS:
            raise DataError(f"split {row['split']!r} is not one of {', '.join(EMOBANK_PARTITIONS)}", path=path, row=line)
        ratings = _emobank_ratings(row, path, line)
        text = " ".join((row["text"] or "").split())  # one line, single spaces
        words = len(text.split())
        if words == 0:
            skipped.append((sid, "empty text"))
            continue
        match = EMOBANK_ID.match(sid)
        if match:
            doc = documents.setdefault(match.group(1), len(documents))
            key = (doc, int(match.group(2)), order)
        else:
            key = (documents.setdefault(sid, len(documents)), 0, order)
        splits.setdefault(split, []).append((key, EmoBankSentence(sid, *ratings, text=text, words=words)))
    return {split: [s for _, s in sorted(items)] for split, items in splits.items()}


def _emobank_ratings(row: dict[str, str], path: Path, line: int) -> list[float]:
    """The V, A, D ratings of one row, checked to be numbers within 1-5."""
    ratings = []
    for col in ("V", "A", "D"):
        try:
            value = float(row[col])
        except (TypeError, ValueError):
            raise DataError(f"{col} = {row[col]!r} is not a number", path=path, row=line) from None
        if not 1.0 <= value <= 5.0:
            raise DataError(f"{col} = {value} is outside the 1-5 scale", path=path, row=line)
        ratings.append(value)
    return ratings


# --------------------------------------------------------------------------- FER+


def load_ferplus(path: Path) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """images (N, 48, 48) uint8, votes (N, C), columns, names of one FER+ npz file.

    ``names`` default to ``face000000``, ... when the file has none. Every
    vote column must be a category of :mod:`mmaffect.data.proxy` or one of
    its excluded votes (``unknown``, ``NF``); DataError otherwise, and for a
    missing file, a missing array or mismatched shapes.
    """
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


def ferplus_keep(votes: np.ndarray, columns: Sequence[str]) -> tuple[np.ndarray, list[str | None]]:
    """Per face: kept?, and the reason when dropped (majority unknown/NF, ties included; no votes).

    ``votes`` is (N, C) with ``columns`` naming its C columns; returns a
    boolean (N,) array and N reasons (``None`` for a kept face).
    """
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


__all__ = [
    "EMOBANK_ID",
    "EMOBANK_PARTITIONS",
    "EMODB_EMOTIONS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "SHARED_DATA_ENV",
    "EmoBankSentence",
    "EmoDBUtterance",
    "emobank_csv",
    "emodb_utterances",
    "ferplus_keep",
    "load_ferplus",
    "read_csv_rows",
    "read_emobank",
    "read_emodb_audio",
    "shared_data_root",
]
