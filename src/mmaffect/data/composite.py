"""Composite multimodal benchmark: EmoDB voices, FER+ faces and EmoBank sentences on one trajectory.

:func:`adapt_composite` assembles time-continuous sessions in mmaffect's
generic layout (see :mod:`mmaffect.data.adapters`) from three real research
corpora, so that the Table-6 study (unimodal networks, then five fusion
strategies) can be run on real signals:

* a **shared valence/arousal trajectory** per session: segments of a few
  seconds, each with a target category whose point of the category →
  (valence, arousal) PROXY table (:data:`mmaffect.data.proxy.PROXY_VA`) is
  the label, joined by short linear ramps; labels at 10 Hz;
* **voice** (``audio.wav``): during the target's speaking turns, EmoDB
  utterances of one speaker per session whose acted emotion is the segment's
  category (the speaker's nearest category on the proxy plane where EmoDB has
  none: surprise → happiness, contempt → disgust), separated by pauses of
  low noise; ``turns.csv`` marks each utterance's speech;
* **face** (``video.mp4``): FER+ faces whose majority vote is the segment's
  category (for boredom, which FER+ lacks, one of the faces whose
  vote-weighted proxy is nearest), each held 0.5–1.5 s, rendered as
  :class:`~mmaffect.data.adapters.FaceRendering` draws them; the face is
  missing (a blank grey canvas) in part of the speaking turns and in random
  gaps, so the toolkit masks those frames;
* **words** (``transcript.csv``): per speaking turn, one EmoBank sentence
  whose rescaled rating ``(x - 3) / 2`` is among the nearest to the segment's
  target point, spread over the turn; no words while the target listens.

Every modality carries real but imperfect information: the acted voice and
the faces show categories (mapped to prototype points), the sentences'
ratings are near the target, not on it, and the modalities cover different
times. Partitions are disjoint in their sources: EmoDB speakers
(:data:`EMODB_SPEAKERS`), FER+ train faces for train and the two halves of
FER+ valid for devel/test, EmoBank train for train and the two halves of
EmoBank dev (cut at a document boundary) for devel/test.

This is a **proxy** benchmark, not a substitute for SEWA: an acted German
voice, English sentences and still faces of different people glued onto one
trajectory of category prototypes. The corpora are for research use only
(``adapter.json`` carries :data:`~mmaffect.data.adapters.RESEARCH_TERMS`).
See ``docs/composite.md``.
"""

from __future__ import annotations

import csv
import json
import math
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.adapters import (
    RESEARCH_TERMS,
    SAMPLES_PER_FRAME,
    AdaptReport,
    FaceRendering,
    _EmoUtterance,
    _emobank_csv,
    _EMOBANK_ID,
    _emodb_utterances,
    _ferplus_keep,
    _finish,
    _load_ferplus,
    _prepare_out,
    _read_emobank,
    _Sentence,
    _video_codec,
    _write_csv,
    _write_labels,
    _write_spans,
    _write_video,
    _write_wav,
)
from mmaffect.data.proxy import EXCLUDED_VOTES, PROXY_VA, votes_matrix_to_va
from mmaffect.data.session import LABEL_RATE
from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import atomic_write_json

COMPOSITE_VERSION = 1
"""Version of the generator; bumped whenever the same parameters and seed would give different files."""

PARTITIONS = ("train", "devel", "test")
"""Partitions, in ``splits.csv`` order."""

EMODB_SPEAKERS: dict[str, tuple[str, ...]] = {
    "train": ("08", "10", "11", "12", "13", "16"),
    "devel": ("14",),
    "test": ("15",),
}
"""EmoDB speakers per partition (6/1/1; train 3 female + 3 male, devel female 14, test male 15)."""

CATEGORIES: tuple[str, ...] = tuple(PROXY_VA)
"""Target categories of the trajectory's segments: all nine of the proxy table, drawn uniformly."""

DEFAULT_SESSIONS = (40, 8, 8)
"""Default number of train, devel and test sessions."""

DEFAULT_SECONDS = 40.0
"""Default session length (s)."""


# --------------------------------------------------------------------------- helpers


def _frames(seconds: float, what: str) -> int:
    frames = seconds * LABEL_RATE
    if not math.isfinite(frames) or frames < 0 or abs(frames - round(frames)) > 1e-6:
        raise ConfigError(f"{what} must be a non-negative multiple of 0.1 s, not {seconds!r}")
    return int(round(frames))


def _range_frames(value: Sequence[float], what: str, *, minimum: int = 0) -> tuple[int, int]:
    """A (low, high) range of seconds → frames, checked."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ConfigError(f"{what} must be a (low, high) pair of seconds, not {value!r}")
    lo, hi = _frames(value[0], what), _frames(value[1], what)
    if lo > hi or lo < minimum:
        raise ConfigError(f"{what} must satisfy {minimum / LABEL_RATE} <= low <= high, not {tuple(value)!r}")
    return lo, hi


def _draw(rng: np.random.Generator, lo: int, hi: int) -> int:
    """Uniform integer in [lo, hi]."""
    return int(rng.integers(lo, hi + 1))


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """CCC with population moments (NaN for fewer than 2 values or a zero denominator)."""
    if len(x) < 2:
        return float("nan")
    mx, my = x.mean(), y.mean()
    den = x.var() + y.var() + (mx - my) ** 2
    return float(2 * ((x - mx) * (y - my)).mean() / den) if den > 0 else float("nan")


def _nearest(points: np.ndarray, target: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` rows of ``points`` nearest to ``target`` (ties by index)."""
    d = np.hypot(points[:, 0] - target[0], points[:, 1] - target[1])
    return np.argsort(d, kind="stable")[: max(1, min(k, len(points)))]


def session_rng(seed: int, name: str) -> np.random.Generator:
    """The random stream of one session: depends on the seed and the session name only."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


# --------------------------------------------------------------------------- source pools


@dataclass
class _FacePool:
    """FER+ faces of one partition."""

    file: str  # "train" | "valid"
    images: np.ndarray  # (N, 48, 48) uint8
    va: np.ndarray  # (N, 2) vote-weighted valence, arousal proxy
    majority: np.ndarray  # (N,) category name (among emotions)
    names: np.ndarray  # (N,) face names


@dataclass
class _TextPool:
    """EmoBank sentences of one partition, with their rescaled (valence, arousal)."""

    split: str
    sentences: list[_Sentence]
    va: np.ndarray  # (N, 2)


@dataclass
class _Sources:
    voices: dict[str, dict[str, dict[str, list[_EmoUtterance]]]]  # partition → speaker → category → utterances
    faces: dict[str, _FacePool]
    texts: dict[str, _TextPool]


def _face_pools(src: Path, report: AdaptReport) -> dict[str, _FacePool]:
    """FER+ train → train; kept FER+ valid faces in file order: first half devel, second half test."""
    pools: dict[str, _FacePool] = {}
    for file in ("train", "valid"):
        images, votes, columns, names = _load_ferplus(src / f"ferplus_{file}.npz")
        keep, reasons = _ferplus_keep(votes, columns)
        for i in np.flatnonzero(~keep):
            report.skipped.append((f"ferplus_{file}:{names[i]}", str(reasons[i])))
        kept = np.flatnonzero(keep)
        excluded = np.array([c.strip().lower() in EXCLUDED_VOTES for c in columns])
        counts = votes[kept].astype(np.float64)
        counts[:, excluded] = -1
        majority = np.array([columns[j].strip().lower() for j in np.argmax(counts, axis=1)])
        va = votes_matrix_to_va(votes[kept], columns)
        if file == "train":
            parts = {"train": slice(0, len(kept))}
        else:
            half = len(kept) // 2
            parts = {"devel": slice(0, half), "test": slice(half, len(kept))}
        for part, sl in parts.items():
            idx = kept[sl]
            if len(idx) == 0:
                raise DataError(f"no usable faces for the {part} partition", path=src / f"ferplus_{file}.npz")
            pools[part] = _FacePool(file, images[idx], va[sl], majority[sl], np.asarray(names)[idx])
    return pools


def _text_pools(src: Path, report: AdaptReport) -> dict[str, _TextPool]:
    """EmoBank train → train; EmoBank dev in reading order cut at the document boundary nearest its middle."""
    path = _emobank_csv(src)
    splits = _read_emobank(path, report)

    def pool(split: str, sentences: list[_Sentence]) -> _TextPool:
        va = np.array([[(s.valence - 3.0) / 2.0, (s.arousal - 3.0) / 2.0] for s in sentences]).reshape(-1, 2)
        return _TextPool(split, sentences, va)

    train, dev = splits.get("train", []), splits.get("dev", [])
    if not train or len(dev) < 2:
        raise DataError("EmoBank needs sentences of the train split and at least 2 of the dev split", path=path)

    def doc(s: _Sentence) -> str:
        match = _EMOBANK_ID.match(s.id)
        return match.group(1) if match else s.id

    cuts = [i for i in range(1, len(dev)) if doc(dev[i]) != doc(dev[i - 1])]
    cut = min(cuts, key=lambda i: (abs(i - len(dev) / 2), i)) if cuts else len(dev) // 2
    return {"train": pool("train", train), "devel": pool("dev", dev[:cut]), "test": pool("dev", dev[cut:])}


def _voice_pools(src: Path, report: AdaptReport) -> dict[str, dict[str, dict[str, list[_EmoUtterance]]]]:
    """EmoDB utterances by partition (speaker-disjoint, :data:`EMODB_SPEAKERS`), speaker and category."""
    if not src.is_dir():
        raise DataError("EmoDB folder not found", path=src)
    by_speaker: dict[str, dict[str, list[_EmoUtterance]]] = {}
    for u in _emodb_utterances(src, report):
        if u is not None:
            by_speaker.setdefault(u.speaker, {}).setdefault(u.category, []).append(u)
    pools: dict[str, dict[str, dict[str, list[_EmoUtterance]]]] = {}
    for part, speakers in EMODB_SPEAKERS.items():
        missing = [s for s in speakers if s not in by_speaker]
        if missing:
            raise DataError(
                f"EmoDB speaker(s) {', '.join(missing)} of the {part} partition have no usable utterance "
                f"(speakers found: {', '.join(sorted(by_speaker)) or 'none'})",
                path=src / "labels.csv",
            )
        pools[part] = {s: by_speaker[s] for s in speakers}
    return pools


def _read_sources(src: Path, report: AdaptReport) -> _Sources:
    for sub in ("emodb", "emobank", "ferplus"):
        if not (src / sub).is_dir():
            raise DataError(f"no {sub}/ folder in the shared data folder", path=src / sub)
    return _Sources(
        voices=_voice_pools(src / "emodb", report),
        faces=_face_pools(src / "ferplus", report),
        texts=_text_pools(src / "emobank", report),
    )


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class CompositeParams:
    """Checked generator parameters, in label frames (0.1 s) where they are durations."""

    frames: int
    segment: tuple[int, int]
    ramp: int
    utterances_per_turn: tuple[int, int]
    utterance_gap: tuple[int, int]
    listen: tuple[int, int]
    face_hold: tuple[int, int]
    face_hidden_while_speaking: float
    face_gap_rate: float
    face_gap: tuple[int, int]
    nearest_share: float
    noise_db: float


@dataclass
class _Item:
    """One placed source item (a span of label frames)."""

    modality: str  # label | voice | face | no_face | words
    start: int  # frames
    end: int
    source: str
    category: str
    valence: float
    arousal: float
    target: str


@dataclass
class SessionPlan:
    """Everything one session's files are written from."""

    name: str
    partition: str
    speaker: str
    labels: np.ndarray  # (T, 2) arousal, valence
    items: list[_Item]
    clips: list[tuple[int, _EmoUtterance]]  # (start frame, utterance)
    turns: list[tuple[float, float]]  # speech span of each utterance, seconds
    transcript: list[tuple[float, float, str]]  # one sentence per speaking turn
    faces: np.ndarray  # (T,) index into the partition's face pool, -1 = no face


def _segments(rng: np.random.Generator, p: CompositeParams) -> list[tuple[int, int, str]]:
    """(start, end, category) segments covering [0, frames); consecutive categories differ."""
    out: list[tuple[int, int, str]] = []
    t, prev = 0, None
    while t < p.frames:
        end = t + _draw(rng, *p.segment)
        if p.frames - end < p.segment[0]:
            end = p.frames
        choices = [c for c in CATEGORIES if c != prev]
        prev = choices[int(rng.integers(len(choices)))]
        out.append((t, end, prev))
        t = end
    return out


def _trajectory(segments: list[tuple[int, int, str]], frames: int, ramp: int) -> np.ndarray:
    """(T, 2) arousal, valence: each segment's proxy point, linear ramps of ``ramp`` frames centred on boundaries."""
    xs: list[float] = []
    ys: list[tuple[float, float]] = []
    half = ramp / 2
    for j, (s, e, c) in enumerate(segments):
        valence, arousal = PROXY_VA[c]
        left = s + (half if j > 0 else 0)
        right = e - (half if j < len(segments) - 1 else 0)
        xs += [left, right]
        ys += [(arousal, valence), (arousal, valence)]
    t = np.arange(frames, dtype=np.float64)
    y = np.asarray(ys)
    return np.stack([np.interp(t, xs, y[:, 0]), np.interp(t, xs, y[:, 1])], axis=1)


def _category_at(segments: list[tuple[int, int, str]], frame: float) -> str:
    for s, e, c in segments:
        if s <= frame < e:
            return c
    return segments[-1][2]


def plan_session(
    name: str, partition: str, index: int, sources: _Sources, p: CompositeParams, seed: int
) -> SessionPlan:
    """Draw one session's trajectory, turns, utterances, sentences and faces (deterministic)."""
    rng = session_rng(seed, name)
    segments = _segments(rng, p)
    labels = _trajectory(segments, p.frames, p.ramp)
    items = [_Item("label", s, e, "", c, *PROXY_VA[c], c) for s, e, c in segments]

    # --- voice: one speaker per session, turns of 1-3 utterances, listening pauses between turns
    speakers = EMODB_SPEAKERS[partition]
    speaker = speakers[index % len(speakers)]
    by_cat = sources.voices[partition][speaker]
    cats = sorted(by_cat)
    points = np.array([PROXY_VA[c] for c in cats])
    used: dict[str, int] = {}
    clips: list[tuple[int, _EmoUtterance]] = []
    turn_spans: list[tuple[int, int, list[tuple[int, _EmoUtterance]]]] = []  # clip frames
    t = _draw(rng, 0, p.listen[1])
    while True:
        n = _draw(rng, *p.utterances_per_turn)
        turn: list[tuple[int, _EmoUtterance]] = []
        for k in range(n):
            nominal = 2.0 * LABEL_RATE  # category at the middle of a (nominal 2 s) utterance
            target = _category_at(segments, t + nominal / 2)
            cat = cats[int(_nearest(points, np.asarray(PROXY_VA[target]), 1)[0])]
            candidates = by_cat[cat]
            least = min(used.get(u.stem, 0) for u in candidates)
            fresh = [u for u in candidates if used.get(u.stem, 0) == least]
            u = fresh[int(rng.integers(len(fresh)))]
            length = len(u.samples) // SAMPLES_PER_FRAME
            if t + length > p.frames:
                break
            used[u.stem] = used.get(u.stem, 0) + 1
            turn.append((t, u))
            items.append(_Item("voice", t, t + length, f"emodb:{u.stem}.wav", u.category, *PROXY_VA[u.category],
                               target))
            t += length
            if k < n - 1:
                t += _draw(rng, *p.utterance_gap)
        if not turn:
            break
        clips += turn
        turn_spans.append((turn[0][0], turn[-1][0] + len(turn[-1][1].samples) // SAMPLES_PER_FRAME, turn))
        t += _draw(rng, *p.listen)
        if t >= p.frames:
            break
    turns = [(s / LABEL_RATE + u.speech[0], s / LABEL_RATE + u.speech[1]) for s, u in clips]

    # --- words: one EmoBank sentence per turn, among the nearest to the target at the turn's middle
    texts = sources.texts[partition]
    k_text = max(3, int(round(p.nearest_share * len(texts.sentences))))
    used_text: set[int] = set()
    transcript: list[tuple[float, float, str]] = []
    for s, e, turn in turn_spans:
        start = s / LABEL_RATE + turn[0][1].speech[0]
        end = turn[-1][0] / LABEL_RATE + turn[-1][1].speech[1]
        target = _category_at(segments, (start + end) / 2 * LABEL_RATE)
        near = [int(i) for i in _nearest(texts.va, np.asarray(PROXY_VA[target]), k_text)]
        fresh = [i for i in near if i not in used_text] or near
        i = fresh[int(rng.integers(len(fresh)))]
        used_text.add(i)
        sent = texts.sentences[i]
        transcript.append((start, end, sent.text))
        items.append(_Item("words", int(round(start * LABEL_RATE)), int(round(end * LABEL_RATE)),
                           f"emobank:{sent.id}", "", float(texts.va[i, 0]), float(texts.va[i, 1]), target))

    # --- face visibility: hidden in some speaking turns and in random gaps
    hidden = np.zeros(p.frames, dtype=np.int8)  # 0 shown, 1 hidden while speaking, 2 gap
    for s, e, _ in turn_spans:
        if rng.random() < p.face_hidden_while_speaking:
            hidden[s:e] = 1
    i = 0
    while i < p.frames:
        if rng.random() < p.face_gap_rate / LABEL_RATE:
            n = _draw(rng, *p.face_gap)
            hidden[i : i + n] = np.where(hidden[i : i + n] == 0, 2, hidden[i : i + n])
            i += n
        else:
            i += 1
    for kind, code in (("speaking", 1), ("gap", 2)):
        mask = np.concatenate([[0], (hidden == code).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(mask))
        for s, e in zip(edges[::2], edges[1::2], strict=True):
            items.append(_Item("no_face", int(s), int(e), "", "", math.nan, math.nan, kind))

    # --- faces over the shown frames
    pool = sources.faces[partition]
    k_face = max(5, int(round(p.nearest_share * len(pool.names))))
    faces = np.full(p.frames, -1, dtype=np.int64)
    i = 0
    while i < p.frames:
        if hidden[i]:
            i += 1
            continue
        end = min(i + _draw(rng, *p.face_hold), p.frames)
        stop = np.flatnonzero(hidden[i:end])
        if len(stop):
            end = i + int(stop[0])
        target = _category_at(segments, (i + end) / 2)
        same = np.flatnonzero(pool.majority == target)
        if len(same) == 0:
            same = _nearest(pool.va, np.asarray(PROXY_VA[target]), k_face)
        j = int(same[int(rng.integers(len(same)))])
        faces[i:end] = j
        items.append(_Item("face", i, end, f"ferplus_{pool.file}:{pool.names[j]}", str(pool.majority[j]),
                           float(pool.va[j, 0]), float(pool.va[j, 1]), target))
        i = end
    items.sort(key=lambda it: (it.start, it.modality))
    return SessionPlan(name, partition, speaker, labels, items, clips, turns, transcript, faces)


# --------------------------------------------------------------------------- writing


def _write_session(folder: Path, plan: SessionPlan, sources: _Sources, p: CompositeParams, seed: int,
                   rendering: FaceRendering, fps: int) -> None:
    n_samples = p.frames * SAMPLES_PER_FRAME
    noise_rng = np.random.default_rng([int(seed), zlib.crc32(plan.name.encode("utf-8")), 1])
    audio = noise_rng.normal(0.0, 10 ** (p.noise_db / 20), n_samples).astype(np.float32)
    for start, u in plan.clips:
        s = start * SAMPLES_PER_FRAME
        audio[s : s + len(u.samples)] += u.samples
    np.clip(audio, -1.0, 1.0, out=audio)
    _write_wav(folder / "audio.wav", audio)

    pool = sources.faces[plan.partition]
    blank = np.full((rendering.canvas, rendering.canvas, 3), rendering.background, dtype=np.uint8)

    def frames() -> Iterator[np.ndarray]:
        current, image = -2, blank
        for k in range(int(round(p.frames / LABEL_RATE * fps))):
            slot = min(int(math.floor(k * LABEL_RATE / fps + 1e-9)), p.frames - 1)
            j = int(plan.faces[slot])
            if j != current:
                current, image = j, (blank if j < 0 else rendering.render(pool.images[j]))
            yield image

    _write_video(folder / "video.mp4", frames(), fps=fps, width=rendering.canvas, height=rendering.canvas)
    _write_spans(folder / "turns.csv", plan.turns)
    _write_spans(folder / "transcript.csv", [(s, e) for s, e, _ in plan.transcript],
                 [text for _, _, text in plan.transcript])
    _write_labels(folder / "labels.csv", plan.labels, ["arousal", "valence"])
    _write_csv(
        folder / "segments.csv",
        ["start", "end", "modality", "source", "category", "valence", "arousal", "target"],
        ([round(it.start / LABEL_RATE, 4), round(it.end / LABEL_RATE, 4), it.modality, it.source, it.category,
          "" if math.isnan(it.valence) else float(it.valence), "" if math.isnan(it.arousal) else float(it.arousal),
          it.target] for it in plan.items),
    )


# --------------------------------------------------------------------------- statistics


@dataclass
class _Tally:
    """Per-partition statistics accumulated over sessions."""

    frames: int = 0
    speaking: int = 0
    words: int = 0
    face: int = 0
    face_speaking: int = 0
    hidden_speaking: int = 0
    hidden_gap: int = 0

    def __post_init__(self) -> None:
        self.sources: dict[str, dict[str, int]] = {"voice": {}, "face": {}, "words": {}}
        self.pairs: dict[str, list[np.ndarray]] = {"voice": [], "face": [], "words": []}
        self.categories: dict[str, int] = {}
        self.speakers: dict[str, int] = {}

    def add(self, plan: SessionPlan) -> None:
        T = len(plan.labels)
        self.frames += T
        self.speakers[plan.speaker] = self.speakers.get(plan.speaker, 0) + 1
        speaking = np.zeros(T, dtype=bool)
        for s, e in plan.turns:  # the toolkit's rounding of turns to the 0.1 s grid
            speaking[int(math.floor(s * LABEL_RATE + 0.5 + 1e-9)) : int(math.floor(e * LABEL_RATE + 0.5 + 1e-9))] = True
        self.speaking += int(speaking.sum())
        shown = plan.faces >= 0
        self.face += int(shown.sum())
        self.face_speaking += int((shown & speaking).sum())
        for it in plan.items:
            n = it.end - it.start
            if it.modality == "label":
                self.categories[it.category] = self.categories.get(it.category, 0) + n
            elif it.modality == "no_face":
                if it.target == "speaking":
                    self.hidden_speaking += n
                else:
                    self.hidden_gap += n
            else:
                counts = self.sources[it.modality]
                counts[it.source] = counts.get(it.source, 0) + 1
                if it.modality == "words":
                    self.words += n
                gold = plan.labels[it.start : it.end]
                item = np.repeat([[it.arousal, it.valence]], len(gold), axis=0)
                self.pairs[it.modality].append(np.concatenate([item, gold], axis=1))

    def summary(self) -> dict[str, Any]:
        listening = self.frames - self.speaking
        agreement = {}
        for modality, chunks in self.pairs.items():
            if chunks:
                a = np.concatenate(chunks)
                agreement[modality] = {"arousal": round(_ccc(a[:, 0], a[:, 2]), 3),
                                       "valence": round(_ccc(a[:, 1], a[:, 3]), 3), "frames": len(a)}
        return {
            "seconds": self.frames / LABEL_RATE,
            "speakers": dict(sorted(self.speakers.items())),
            "speaking_share": round(self.speaking / max(self.frames, 1), 3),
            "words_share": round(self.words / max(self.frames, 1), 3),
            "face_shown_share": round(self.face / max(self.frames, 1), 3),
            "face_shown_while_speaking": round(self.face_speaking / max(self.speaking, 1), 3),
            "face_shown_while_listening": round((self.face - self.face_speaking) / max(listening, 1), 3),
            "face_hidden_in_turns_share": round(self.hidden_speaking / max(self.frames, 1), 3),
            "face_gap_share": round(self.hidden_gap / max(self.frames, 1), 3),
            "category_seconds": {c: self.categories[c] / LABEL_RATE for c in sorted(self.categories)},
            "items": {m: sum(c.values()) for m, c in self.sources.items()},
            "unique_items": {m: len(c) for m, c in self.sources.items()},
            "item_vs_label_ccc": agreement,
        }


# --------------------------------------------------------------------------- entry point


def adapt_composite(
    src: Path,
    out: Path,
    *,
    sessions: Sequence[int] = DEFAULT_SESSIONS,
    seconds: float = DEFAULT_SECONDS,
    seed: int = 0,
    segment: Sequence[float] = (3.0, 7.0),
    ramp: float = 1.0,
    utterances_per_turn: Sequence[int] = (1, 3),
    utterance_gap: Sequence[float] = (0.0, 0.3),
    listen: Sequence[float] = (1.5, 4.0),
    face_hold: Sequence[float] = (0.5, 1.5),
    face_hidden_while_speaking: float = 0.5,
    face_gap_rate: float = 0.05,
    face_gap: Sequence[float] = (1.0, 3.0),
    nearest_share: float = 0.02,
    noise_db: float = -60.0,
    upscale: int = 3,
    margin: float = 0.5,
    fps: int = 25,
    overwrite: bool = False,
) -> AdaptReport:
    """Write the composite benchmark corpus into ``out`` from the shared data folder ``src``.

    ``src`` holds ``emodb/``, ``emobank/`` and ``ferplus/`` (see
    :func:`~mmaffect.data.adapters.shared_data_root`). ``sessions`` = numbers
    of (train, devel, test) sessions of ``seconds`` each; sessions are named
    ``composite_<partition>_<nnnn>``.

    Per session (durations in seconds, all on the 0.1 s label grid; ranges
    drawn uniformly):

    * trajectory: segments of ``segment`` s, each with one of the nine proxy
      categories (uniform, never twice in a row; a last piece shorter than
      the minimum joins the previous segment); labels = the category's point,
      with linear ramps of ``ramp`` s centred on the boundaries;
    * voice: one EmoDB speaker per session (train sessions cycle through the
      train speakers); turns of ``utterances_per_turn`` whole utterances
      separated by ``utterance_gap``, then ``listen`` s without speech
      (the session opens with 0 to ``listen[1]`` s of it); each utterance's
      category is the speaker's nearest on the proxy plane to the segment's
      at the utterance's middle, the least used of them in the session
      (random among ties); background noise at ``noise_db`` dBFS (RMS)
      throughout;
    * words: per turn, an EmoBank sentence drawn among the
      ``nearest_share`` × pool nearest (at least 3) by rescaled
      (valence, arousal) to the segment's point at the turn's middle, unused
      in the session where possible, over the turn's speech span;
    * face: hidden over a whole speaking turn with probability
      ``face_hidden_while_speaking`` and in gaps of ``face_gap`` s starting at
      ``face_gap_rate`` per second; elsewhere FER+ faces, each held
      ``face_hold`` s (cut short by a hidden span), whose majority category
      is the segment's at the face's middle (for boredom: among the
      ``nearest_share`` × pool nearest by vote-weighted proxy, at least 5),
      rendered by :class:`FaceRendering` (``upscale``, ``margin``) at ``fps``.

    Files: ``audio.wav``, ``video.mp4``, ``turns.csv`` (each utterance's
    speech), ``transcript.csv``, ``labels.csv`` (arousal, valence),
    ``segments.csv`` (every placed item: ``modality`` label / voice / face /
    no_face / words, source, category, its own (valence, arousal) and the
    segment category it was chosen for), then ``splits.csv`` and
    ``adapter.json`` (parameters, seed, proxy table, source pools, per-partition
    statistics, terms). Deterministic: the same sources, parameters and
    seed give the same files (the video's decoded frames; the bytes too with
    a deterministic encoder). A session depends only on the seed and its name.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    if (
        not isinstance(sessions, (tuple, list))
        or len(sessions) != 3
        or not all(isinstance(n, int) and n >= 0 for n in sessions)
        or sessions[0] < 1
    ):
        raise ConfigError(f"sessions must be three non-negative integers (train >= 1), not {sessions!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"seed must be an integer, not {seed!r}")
    frames = _frames(seconds, "seconds")
    if frames < 50:
        raise ConfigError(f"seconds must be at least 5.0, not {seconds!r}")
    ramp_frames = _frames(ramp, "ramp")
    seg = _range_frames(segment, "segment", minimum=max(1, ramp_frames))
    upt = utterances_per_turn
    if not (isinstance(upt, (tuple, list)) and len(upt) == 2 and all(isinstance(n, int) for n in upt)
            and 1 <= upt[0] <= upt[1]):
        raise ConfigError(f"utterances_per_turn must be a pair of integers 1 <= low <= high, not {upt!r}")
    for name, value in (("face_hidden_while_speaking", face_hidden_while_speaking),):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{name} must be within 0-1, not {value!r}")
    if not 0.0 <= face_gap_rate <= LABEL_RATE:
        raise ConfigError(f"face_gap_rate must be within 0-{LABEL_RATE} per second, not {face_gap_rate!r}")
    if not 0.0 < nearest_share <= 1.0:
        raise ConfigError(f"nearest_share must be within (0, 1], not {nearest_share!r}")
    if not -120.0 <= noise_db <= -20.0:
        raise ConfigError(f"noise_db must be within -120 to -20 dBFS, not {noise_db!r}")
    if not isinstance(upscale, int) or not 1 <= upscale <= 10:
        raise ConfigError(f"upscale must be an integer 1-10, not {upscale!r}")
    if not 0 <= margin <= 2:
        raise ConfigError(f"margin must be within 0-2 (fraction of the face size), not {margin!r}")
    if not isinstance(fps, int) or not 20 <= fps <= 60:
        raise ConfigError(f"fps must be an integer 20-60, not {fps!r}")
    params = CompositeParams(
        frames=frames,
        segment=seg,
        ramp=ramp_frames,
        utterances_per_turn=(int(upt[0]), int(upt[1])),
        utterance_gap=_range_frames(utterance_gap, "utterance_gap"),
        listen=_range_frames(listen, "listen", minimum=1),
        face_hold=_range_frames(face_hold, "face_hold", minimum=1),
        face_hidden_while_speaking=float(face_hidden_while_speaking),
        face_gap_rate=float(face_gap_rate),
        face_gap=_range_frames(face_gap, "face_gap", minimum=1),
        nearest_share=float(nearest_share),
        noise_db=float(noise_db),
    )
    rendering = FaceRendering(upscale=upscale, margin=margin)
    report = AdaptReport(corpus="composite", out=out)
    sources = _read_sources(src, report)
    _prepare_out(out, overwrite=overwrite)

    partitions: list[tuple[str, str]] = []
    tallies = {part: _Tally() for part in PARTITIONS}
    for part, count in zip(PARTITIONS, sessions, strict=True):
        for index in range(count):
            name = f"composite_{part}_{index:04d}"
            plan = plan_session(name, part, index, sources, params, seed)
            _write_session(out / name, plan, sources, params, seed, rendering, fps)
            tallies[part].add(plan)
            report.frames += frames
            report.items += sum(1 for it in plan.items if it.modality in ("voice", "face", "words"))
            partitions.append((name, part))

    args = {
        "version": COMPOSITE_VERSION,
        "sessions": list(sessions),
        "seconds": seconds,
        "seed": seed,
        "segment": list(segment),
        "ramp": ramp,
        "utterances_per_turn": list(utterances_per_turn),
        "utterance_gap": list(utterance_gap),
        "listen": list(listen),
        "face_hold": list(face_hold),
        "face_hidden_while_speaking": face_hidden_while_speaking,
        "face_gap_rate": face_gap_rate,
        "face_gap": list(face_gap),
        "nearest_share": nearest_share,
        "noise_db": noise_db,
        "upscale": upscale,
        "margin": margin,
        "fps": fps,
        "canvas": rendering.canvas,
        "codec": _video_codec(),
    }
    report = _finish(
        report,
        partitions=partitions,
        src=src,
        params=args,
        label_note=(
            "arousal/valence: a trajectory of category PROXY points (not dimensional ratings) shared by "
            "EmoDB voices, FER+ faces and EmoBank sentences chosen to match it; a proxy benchmark, "
            "not a substitute for SEWA"
        ),
        started=started,
    )
    meta_path = out / "adapter.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["composite"] = {
        "categories": list(CATEGORIES),
        "emodb_speakers": {k: list(v) for k, v in EMODB_SPEAKERS.items()},
        "pools": {
            part: {
                "emodb_utterances": sum(len(u) for spk in sources.voices[part].values() for u in spk.values()),
                "ferplus_faces": f"{len(sources.faces[part].names)} of ferplus_{sources.faces[part].file}.npz",
                "emobank_sentences": f"{len(sources.texts[part].sentences)} of EmoBank {sources.texts[part].split}",
            }
            for part in PARTITIONS
        },
        "partitions": {part: tallies[part].summary() for part in PARTITIONS if sessions[PARTITIONS.index(part)]},
    }
    meta["terms"] = RESEARCH_TERMS
    atomic_write_json(meta_path, meta)
    report.seconds = time.perf_counter() - started
    return report


def read_segments(folder: Path) -> list[dict[str, str]]:
    """The rows of one composite session's ``segments.csv`` (DataError when it is missing)."""
    path = Path(folder) / "segments.csv"
    if not path.is_file():
        raise DataError("file not found", path=path)
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


__all__ = [
    "CATEGORIES",
    "COMPOSITE_VERSION",
    "DEFAULT_SECONDS",
    "DEFAULT_SESSIONS",
    "EMODB_SPEAKERS",
    "PARTITIONS",
    "SessionPlan",
    "adapt_composite",
    "plan_session",
    "read_segments",
    "session_rng",
]
