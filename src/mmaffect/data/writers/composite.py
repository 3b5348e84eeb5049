"""Composite multimodal benchmark: EmoDB voices, FER+ faces and EmoBank sentences on one trajectory.

:func:`adapt_composite` assembles time-continuous sessions in mmaffect's
generic layout (see :mod:`mmaffect.data.writers.layout`) from three real research
corpora, so that the Table-6 study (unimodal networks, then five fusion
strategies) can be run on real signals:

* a **shared valence/arousal trajectory** per session: segments of a few
  seconds, each with a target category whose point of the category →
  (valence, arousal) PROXY table (:data:`mmaffect.data.proxy.PROXY_VA`) is
  the label, joined by short linear ramps; labels at 10 Hz;
* **voice** (``audio.wav``): during the target's speaking turns, EmoDB
  utterances of one speaker per session whose acted emotion is the segment's
  category (the speaker's nearest category on the proxy plane where EmoDB has
  none: surprise → happiness, contempt → disgust), separated by pauses (some
  of them long) of background noise or digital silence; ``turns.csv`` marks
  each utterance's speech;
* **face** (``video.mp4``): FER+ faces whose majority vote is the segment's
  category (for boredom, which FER+ lacks, one of the faces whose
  vote-weighted proxy is nearest), each held 0.5–1.5 s, tinted to a skin
  tone and drifting slowly in front of a background; the face is missing
  (only the background shows) in part of the speaking turns and in random
  gaps, so the toolkit masks those frames;
* **words** (``transcript.csv``): per speaking turn, one EmoBank sentence
  whose rescaled rating ``(x - 3) / 2`` is among the nearest to the segment's
  target point, spread over the turn; no words while the target listens. A
  share of the turns (``off_topic_rate``) is *off-topic*: its sentence is
  drawn among those nearest to the neutral point (0, 0) instead, so words are
  present but carry no (or the wrong) affect; the labels are unchanged.

Every session also gets its own look and sound (:class:`SessionLook`: skin
tone, background, head placement and motion, lighting, video compression,
audio gain, noise, silence and channel) and staged degradations (occluded
and blurred frames, noise bursts, off-topic words), all switchable (:data:`PLAIN` turns them
off); see ``docs/composite.md``, *Realism*.

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
(``adapter.json`` carries :data:`~mmaffect.data.writers.layout.RESEARCH_TERMS`).
See ``docs/composite.md``.
"""

from __future__ import annotations

import csv
import inspect
import json
import math
import random
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.proxy import EXCLUDED_VOTES, PROXY_VA, votes_matrix_to_va
from mmaffect.data.session import LABEL_RATE
from mmaffect.data.sources import (
    EMOBANK_ID,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    EmoBankSentence,
    EmoDBUtterance,
    emobank_csv,
    emodb_utterances,
    ferplus_keep,
    load_ferplus,
    read_emobank,
)
from mmaffect.data.writers.face_render import (
    BACKGROUND_KINDS,
    SKIN_TONES,
    FacePose,
    Occluder,
    apply_lighting,
    draw_occluder,
    feather_mask,
    make_backdrop,
    place_face,
    skin_gains,
    tint_face,
)
from mmaffect.data.writers.ferplus import FaceRendering
from mmaffect.data.writers.layout import (
    RESEARCH_TERMS,
    AdaptReport,
    finish_corpus,
    prepare_output,
    video_codec,
    write_csv,
    write_labels,
    write_spans,
    write_video,
    write_wav,
)
from mmaffect.errors import ConfigError, DataError
from mmaffect.utils.io import atomic_write_json

COMPOSITE_VERSION = 3
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

PLAIN: dict[str, Any] = {
    "noise_db": -60.0,
    "noise_decay": (0.0, 0.0),
    "long_pause": 0.0,
    "gain_db": (0.0, 0.0),
    "digital_silence": 0.0,
    "channel_share": 0.0,
    "noise_burst_rate": 0.0,
    "skin_tones": False,
    "backgrounds": False,
    "head_motion": 0.0,
    "brightness": (1.0, 1.0),
    "contrast": (1.0, 1.0),
    "light_slope": 0.0,
    "crf": (18, 18),
    "occlusion_rate": 0.0,
    "blur_rate": 0.0,
    "off_topic_rate": 0.0,
}
"""Options of :func:`adapt_composite` that switch every realism effect off (the version-1 look:
grey still faces on a grey canvas, constant -60 dBFS white noise, every sentence near its target, no level,
channel or degradation)."""


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


def _db_range(value: float | Sequence[float], what: str, low: float, high: float) -> tuple[float, float]:
    """A level in dB or a (low, high) range of them, checked to lie within [low, high]."""
    pair = (value, value) if isinstance(value, (int, float)) else value
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in pair)
            or not low <= pair[0] <= pair[1] <= high):
        raise ConfigError(f"{what} must be a level or a (low, high) pair within {low:g} to {high:g} dB, not {value!r}")
    return float(pair[0]), float(pair[1])


def _factor_range(value: Sequence[float], what: str) -> tuple[float, float]:
    """A (low, high) range of positive factors (0.2-3), checked."""
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) for v in value) or not 0.2 <= value[0] <= value[1] <= 3.0):
        raise ConfigError(f"{what} must be a (low, high) pair of factors within 0.2-3, not {value!r}")
    return float(value[0]), float(value[1])


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
    sentences: list[EmoBankSentence]
    va: np.ndarray  # (N, 2)


@dataclass
class _Sources:
    voices: dict[str, dict[str, dict[str, list[EmoDBUtterance]]]]  # partition → speaker → category → utterances
    faces: dict[str, _FacePool]
    texts: dict[str, _TextPool]


def _face_pools(src: Path, report: AdaptReport) -> dict[str, _FacePool]:
    """FER+ train → train; kept FER+ valid faces in file order: first half devel, second half test."""
    pools: dict[str, _FacePool] = {}
    for file in ("train", "valid"):
        images, votes, columns, names = load_ferplus(src / f"ferplus_{file}.npz")
        keep, reasons = ferplus_keep(votes, columns)
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
    path = emobank_csv(src)
    splits = read_emobank(path, report.skipped)

    def pool(split: str, sentences: list[EmoBankSentence]) -> _TextPool:
        va = np.array([[(s.valence - 3.0) / 2.0, (s.arousal - 3.0) / 2.0] for s in sentences]).reshape(-1, 2)
        return _TextPool(split, sentences, va)

    train, dev = splits.get("train", []), splits.get("dev", [])
    if not train or len(dev) < 2:
        raise DataError("EmoBank needs sentences of the train split and at least 2 of the dev split", path=path)

    def doc(s: EmoBankSentence) -> str:
        match = EMOBANK_ID.match(s.id)
        return match.group(1) if match else s.id

    cuts = [i for i in range(1, len(dev)) if doc(dev[i]) != doc(dev[i - 1])]
    cut = min(cuts, key=lambda i: (abs(i - len(dev) / 2), i)) if cuts else len(dev) // 2
    return {"train": pool("train", train), "devel": pool("dev", dev[:cut]), "test": pool("dev", dev[cut:])}


def _voice_pools(src: Path, report: AdaptReport) -> dict[str, dict[str, dict[str, list[EmoDBUtterance]]]]:
    """EmoDB utterances by partition (speaker-disjoint, :data:`EMODB_SPEAKERS`), speaker and category."""
    if not src.is_dir():
        raise DataError("EmoDB folder not found", path=src)
    by_speaker: dict[str, dict[str, list[EmoDBUtterance]]] = {}
    for u in emodb_utterances(src, report.skipped):
        if u is not None:
            by_speaker.setdefault(u.speaker, {}).setdefault(u.category, []).append(u)
    pools: dict[str, dict[str, dict[str, list[EmoDBUtterance]]]] = {}
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
    noise_db: tuple[float, float]
    noise_decay: tuple[float, float] = (0.0, 0.0)
    long_pause: float = 0.0
    long_listen: tuple[int, int] = (60, 120)
    gain_db: tuple[float, float] = (0.0, 0.0)
    digital_silence: float = 0.0
    channel_share: float = 0.0
    channel_rates: tuple[int, ...] = (16000,)
    noise_burst_rate: float = 0.0
    noise_burst: tuple[int, int] = (2, 10)
    noise_burst_db: tuple[float, float] = (-35.0, -20.0)
    skin_tones: bool = False
    backgrounds: bool = False
    head_motion: float = 0.0
    brightness: tuple[float, float] = (1.0, 1.0)
    contrast: tuple[float, float] = (1.0, 1.0)
    light_slope: float = 0.0
    crf: tuple[int, int] = (18, 18)
    occlusion_rate: float = 0.0
    occlusion: tuple[int, int] = (4, 15)
    blur_rate: float = 0.0
    blur: tuple[int, int] = (2, 8)
    off_topic_rate: float = 0.0


@dataclass(frozen=True)
class SessionLook:
    """How one session looks and sounds: drawn per session from its own random stream (:func:`draw_look`)."""

    skin_tone: tuple[int, int, int] | None  # RGB of :data:`SKIN_TONES`; None = grey faces
    background: str  # one of BACKGROUND_KINDS, or "grey" (the plain 128 canvas)
    face_scale: float  # face side / the rendering's face size
    face_offset: tuple[float, float]  # centre offset, fraction of the canvas
    motion: tuple[tuple[float, float, float, float], ...]  # (dim, amplitude, period s, phase) sinusoids
    brightness: float
    contrast: float
    light_slope: float
    crf: int
    gain_db: float
    noise_db: float
    noise_decay: float  # dB/octave of the background noise's spectrum (0 white, -3 pink, -6 brown)
    digital_silence: bool  # pauses are digital zeros (a gate) instead of noise
    channel_rate: int | None  # band-limited by resampling through this rate; None = full band
    highpass_hz: float | None  # the channel's low-frequency roll-off

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view (adapter.json ``composite.sessions``)."""
        return {
            "skin_tone": list(self.skin_tone) if self.skin_tone else None, "background": self.background,
            "face_scale": round(self.face_scale, 4), "face_offset": [round(v, 4) for v in self.face_offset],
            "brightness": round(self.brightness, 4), "contrast": round(self.contrast, 4),
            "light_slope": round(self.light_slope, 4), "crf": self.crf, "gain_db": round(self.gain_db, 2),
            "noise_db": round(self.noise_db, 2), "noise_decay": round(self.noise_decay, 2),
            "digital_silence": self.digital_silence, "channel_rate": self.channel_rate,
            "highpass_hz": None if self.highpass_hz is None else round(self.highpass_hz, 1),
        }


@dataclass
class _Item:
    """One placed source item (a span of label frames)."""

    modality: str  # label | voice | face | no_face | words | occlusion | blur | noise_burst | off_topic
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
    clips: list[tuple[int, EmoDBUtterance]]  # (start frame, utterance)
    turns: list[tuple[float, float]]  # speech span of each utterance, seconds
    transcript: list[tuple[float, float, str]]  # one sentence per speaking turn
    faces: np.ndarray  # (T,) index into the partition's face pool, -1 = no face
    look: SessionLook | None = None
    occlusions: list[tuple[int, int, Occluder]] = field(default_factory=list)  # label frames
    blurs: list[tuple[int, int, float]] = field(default_factory=list)  # label frames, sigma (px)
    bursts: list[tuple[int, int, float]] = field(default_factory=list)  # label frames, level (dBFS RMS)


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


_Turn = tuple[int, int, list[tuple[int, EmoDBUtterance]]]
"""A speaking turn: (first frame, end frame of the last clip, its (start frame, utterance) clips)."""


def _plan_voice(
    rng: np.random.Generator, segments: list[tuple[int, int, str]], by_cat: dict[str, list[EmoDBUtterance]],
    p: CompositeParams, items: list[_Item],
) -> tuple[list[tuple[int, EmoDBUtterance]], list[_Turn]]:
    """Turns of 1-3 utterances of the session's speaker (``by_cat``), listening pauses between turns.

    Returns the placed clips and the turns; appends a ``voice`` item per clip.
    """
    cats = sorted(by_cat)
    points = np.array([PROXY_VA[c] for c in cats])
    used: dict[str, int] = {}
    clips: list[tuple[int, EmoDBUtterance]] = []
    turn_spans: list[_Turn] = []  # clip frames
    t = _draw(rng, 0, p.listen[1])
    while True:
        n = _draw(rng, *p.utterances_per_turn)
        turn: list[tuple[int, EmoDBUtterance]] = []
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
        long = rng.random() < p.long_pause  # drawn always, so long_pause=0 keeps the stream
        t += _draw(rng, *(p.long_listen if long else p.listen))
        if t >= p.frames:
            break
    return clips, turn_spans


def _plan_words(
    rng: np.random.Generator, segments: list[tuple[int, int, str]], turn_spans: list[_Turn], texts: _TextPool,
    p: CompositeParams, items: list[_Item], off_rng: np.random.Generator,
) -> list[tuple[float, float, str]]:
    """One EmoBank sentence per turn, among the nearest to the target at the turn's middle; appends ``words`` items.

    With probability ``p.off_topic_rate`` (drawn per turn from ``off_rng``, the
    session's stream 6, always, so the rate does not move the other draws) the
    turn is off-topic: its sentence is drawn among the nearest to the neutral
    point (0, 0) instead, and an ``off_topic`` item marks the turn.
    """
    k_text = max(3, int(round(p.nearest_share * len(texts.sentences))))
    neutral = [int(i) for i in _nearest(texts.va, np.zeros(2), k_text)]
    used_text: set[int] = set()
    transcript: list[tuple[float, float, str]] = []
    for s, _, turn in turn_spans:
        start = s / LABEL_RATE + turn[0][1].speech[0]
        end = turn[-1][0] / LABEL_RATE + turn[-1][1].speech[1]
        target = _category_at(segments, (start + end) / 2 * LABEL_RATE)
        off_topic = bool(off_rng.random() < p.off_topic_rate)
        near = neutral if off_topic else [int(i) for i in _nearest(texts.va, np.asarray(PROXY_VA[target]), k_text)]
        fresh = [i for i in near if i not in used_text] or near
        i = fresh[int(rng.integers(len(fresh)))]
        used_text.add(i)
        sent = texts.sentences[i]
        transcript.append((start, end, sent.text))
        a, b = int(round(start * LABEL_RATE)), int(round(end * LABEL_RATE))
        items.append(_Item("words", a, b, f"emobank:{sent.id}", "", float(texts.va[i, 0]), float(texts.va[i, 1]),
                           target))
        if off_topic:
            items.append(_Item("off_topic", a, b, f"emobank:{sent.id}", "", math.nan, math.nan, target))
    return transcript


def _plan_hidden(rng: np.random.Generator, turn_spans: list[_Turn], p: CompositeParams, items: list[_Item]) -> np.ndarray:
    """(T,) int8 face visibility: 0 shown, 1 hidden while speaking (whole turns), 2 a random gap.

    Appends a ``no_face`` item per hidden span (target ``speaking`` or ``gap``).
    """
    hidden = np.zeros(p.frames, dtype=np.int8)
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
    return hidden


def _plan_faces(
    rng: np.random.Generator, segments: list[tuple[int, int, str]], hidden: np.ndarray, pool: _FacePool,
    p: CompositeParams, items: list[_Item],
) -> np.ndarray:
    """(T,) index into ``pool`` per frame (-1 = no face): faces held ``face_hold`` over the shown frames.

    Appends a ``face`` item per held face.
    """
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
    return faces


def plan_session(
    name: str, partition: str, index: int, sources: _Sources, p: CompositeParams, seed: int
) -> SessionPlan:
    """Draw one session's trajectory, turns, utterances, sentences and faces (deterministic).

    The session's random stream (:func:`session_rng`) is drawn in this order:
    segments, voice, words, face visibility, faces; the look
    (:func:`draw_look`), the degradation events and the off-topic turns have streams of their own.
    """
    rng = session_rng(seed, name)
    segments = _segments(rng, p)
    labels = _trajectory(segments, p.frames, p.ramp)
    items = [_Item("label", s, e, "", c, *PROXY_VA[c], c) for s, e, c in segments]
    speakers = EMODB_SPEAKERS[partition]  # one speaker per session
    speaker = speakers[index % len(speakers)]
    clips, turn_spans = _plan_voice(rng, segments, sources.voices[partition][speaker], p, items)
    turns = [(s / LABEL_RATE + u.speech[0], s / LABEL_RATE + u.speech[1]) for s, u in clips]
    transcript = _plan_words(rng, segments, turn_spans, sources.texts[partition], p, items,
                             effects_rng(seed, name, 6))
    hidden = _plan_hidden(rng, turn_spans, p, items)
    faces = _plan_faces(rng, segments, hidden, sources.faces[partition], p, items)
    look = draw_look(seed, name, p)
    occlusions, blurs, bursts = _draw_events(effects_rng(seed, name), p, faces, look)
    for s, e, occ in occlusions:
        items.append(_Item("occlusion", s, e, occ.kind, "", math.nan, math.nan, ""))
    for s, e, sigma in blurs:
        items.append(_Item("blur", s, e, f"gaussian:{sigma:.2f}px", "", math.nan, math.nan, ""))
    for s, e, db in bursts:
        items.append(_Item("noise_burst", s, e, f"noise:{db:.1f}dBFS", "", math.nan, math.nan, ""))
    items.sort(key=lambda it: (it.start, it.modality))
    return SessionPlan(name, partition, speaker, labels, items, clips, turns, transcript, faces, look,
                       occlusions, blurs, bursts)


def effects_rng(seed: int, name: str, stream: int = 2) -> np.random.Generator:
    """A further random stream of a session: 2 degradation events, 3 background pixels, 4 the look,
    6 the off-topic turns (5, with a face index, is the per-face skin jitter)."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8")), int(stream)])


def draw_look(seed: int, name: str, p: CompositeParams) -> SessionLook:
    """The session's skin tone, background, head placement and motion, lighting, compression and audio channel.

    Every quantity is drawn whether or not its effect is on, so switching one
    effect off leaves the others unchanged.
    """
    rng = effects_rng(seed, name, 4)
    tone = SKIN_TONES[int(rng.integers(len(SKIN_TONES)))]
    background = BACKGROUND_KINDS[int(rng.integers(len(BACKGROUND_KINDS)))]
    scale = float(rng.uniform(0.85, 1.1))
    offset = (float(rng.uniform(-0.06, 0.06)), float(rng.uniform(-0.06, 0.06)))
    # slow head motion: two sinusoids per dimension (x, y: fraction of the canvas; scale: fraction; roll: degrees)
    amplitudes = {0: 0.03, 1: 0.025, 2: 0.04, 3: 2.5}
    motion = tuple((float(dim), float(amplitudes[dim] * w * p.head_motion), float(rng.uniform(3.0, 12.0)),
                    float(rng.uniform(0, 2 * np.pi))) for dim in range(4) for w in (0.6, 0.4))
    brightness, contrast = float(rng.uniform(*p.brightness)), float(rng.uniform(*p.contrast))
    slope = float(rng.uniform(-p.light_slope, p.light_slope)) if p.light_slope > 0 else 0.0
    crf = _draw(rng, *p.crf)
    gain_db, noise_db = float(rng.uniform(*p.gain_db)), float(rng.uniform(*p.noise_db))
    decay = float(rng.uniform(*p.noise_decay))
    silence = bool(rng.random() < p.digital_silence)
    channel = bool(rng.random() < p.channel_share)
    rate = int(p.channel_rates[int(rng.integers(len(p.channel_rates)))])
    highpass = float(rng.uniform(80.0, 300.0))
    motion_on = p.head_motion > 0
    return SessionLook(
        skin_tone=tone if p.skin_tones else None,
        background=background if p.backgrounds else "grey",
        face_scale=scale if motion_on else 1.0,
        face_offset=offset if motion_on else (0.0, 0.0),
        motion=motion if motion_on else (),
        brightness=brightness, contrast=contrast, light_slope=slope, crf=crf,
        gain_db=gain_db, noise_db=noise_db, noise_decay=decay, digital_silence=silence,
        channel_rate=rate if channel else None, highpass_hz=highpass if channel else None,
    )


def _events(rng: np.random.Generator, allowed: np.ndarray, rate: float, length: tuple[int, int]
            ) -> list[tuple[int, int]]:
    """Spans (label frames) starting at ``rate`` per second on ``allowed`` frames, cut where ``allowed`` ends."""
    spans: list[tuple[int, int]] = []
    i, T = 0, len(allowed)
    while i < T:
        if allowed[i] and rng.random() < rate / LABEL_RATE:
            end = min(i + _draw(rng, *length), T)
            stop = np.flatnonzero(~allowed[i:end])
            end = i + int(stop[0]) if len(stop) else end
            spans.append((i, end))
            i = end
        else:
            i += 1
    return spans


_OCCLUDED_REGIONS = {  # face units: x0, y0, x1, y1 (the eyes, at y ~0.4, stay visible)
    "chin": (0.18, 0.74, 0.82, 1.12),
    "mouth": (0.2, 0.62, 0.8, 1.02),
    "left": (-0.12, 0.5, 0.3, 1.08),
    "right": (0.7, 0.5, 1.12, 1.08),
}


_Spans = list[tuple[int, int, float]]


def _draw_events(rng: np.random.Generator, p: CompositeParams, faces: np.ndarray, look: SessionLook
                 ) -> tuple[list[tuple[int, int, Occluder]], _Spans, _Spans]:
    """Occluded spans (over shown faces), blur bursts (any frame) and audio noise bursts of one session."""
    shown = faces >= 0
    everywhere = np.ones(len(faces), dtype=bool)
    occlusions = []
    tone = np.asarray(look.skin_tone if look.skin_tone else (235, 235, 235), dtype=np.float64)
    for s, e in _events(rng, shown, p.occlusion_rate, p.occlusion):
        kind = "hand" if rng.random() < 0.6 else "box"
        region = list(_OCCLUDED_REGIONS)[int(rng.integers(len(_OCCLUDED_REGIONS)))]
        box = tuple(float(v + rng.uniform(-0.05, 0.05)) for v in _OCCLUDED_REGIONS[region])
        colour = tone * 150.0 / 235.0 * rng.uniform(0.85, 1.05) if kind == "hand" else rng.uniform(20, 230, size=3)
        occlusions.append((s, e, Occluder(kind=kind, box=box, color=tuple(float(c) for c in colour),
                                          angle=float(rng.uniform(-25, 25)))))
    blurs = [(s, e, float(rng.uniform(1.2, 3.0))) for s, e in _events(rng, everywhere, p.blur_rate, p.blur)]
    bursts = [(s, e, float(rng.uniform(*p.noise_burst_db)))
              for s, e in _events(rng, everywhere, p.noise_burst_rate, p.noise_burst)]
    return occlusions, blurs, bursts


# --------------------------------------------------------------------------- writing


@contextmanager
def _global_random(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global random state (audiomentations draws from them), restore it after."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def _coloured_noise(rng: np.random.Generator, n: int, decay_db_per_octave: float) -> np.ndarray:
    """Unit-RMS noise of ``n`` samples whose spectrum falls by ``decay_db_per_octave`` (audiomentations)."""
    from audiomentations.augmentations.add_color_noise import generate_decaying_white_noise

    with _global_random(int(rng.integers(2**31))):
        noise = generate_decaying_white_noise(n, decay_db_per_octave, SAMPLE_RATE, n_fft=256)
    return np.asarray(noise, dtype=np.float32)[:n]


def _fade(n: int, ramp: int) -> np.ndarray:
    """An envelope of ``n`` samples rising and falling linearly over ``ramp`` samples."""
    env = np.ones(n, dtype=np.float32)
    r = min(ramp, n // 2)
    if r > 0:
        env[:r] = np.linspace(0.0, 1.0, r, dtype=np.float32)
        env[n - r:] = np.linspace(1.0, 0.0, r, dtype=np.float32)
    return env


def render_audio(plan: SessionPlan, p: CompositeParams, seed: int) -> np.ndarray:
    """The session's waveform at :data:`SAMPLE_RATE` (float32 in [-1, 1]).

    EmoDB clips at the session's gain, coloured background noise at the
    session's level, noise bursts, then the channel (high-pass and
    resampling through a lower or higher rate, audiomentations and soxr) and,
    in sessions with digital silence, a gate that sets everything outside the
    speech and the bursts to exact zeros; finally clipped to [-1, 1] as an
    ADC would.
    """
    import soxr
    from audiomentations import HighPassFilter

    look = plan.look
    assert look is not None
    n = p.frames * SAMPLES_PER_FRAME
    rng = np.random.default_rng([int(seed), zlib.crc32(plan.name.encode("utf-8")), 1])
    audio = np.zeros(n, dtype=np.float32)
    for start, u in plan.clips:
        s = start * SAMPLES_PER_FRAME
        audio[s : s + len(u.samples)] += u.samples
    audio *= np.float32(10 ** (look.gain_db / 20))
    audio += _coloured_noise(rng, n, look.noise_decay) * np.float32(10 ** (look.noise_db / 20))
    ramp = SAMPLE_RATE // 50  # 20 ms fades
    for s, e, db in plan.bursts:
        a, b = s * SAMPLES_PER_FRAME, e * SAMPLES_PER_FRAME
        burst = _coloured_noise(rng, b - a, float(rng.uniform(-6.0, 0.0))) * np.float32(10 ** (db / 20))
        audio[a:b] += burst * _fade(b - a, ramp)
    if look.highpass_hz is not None:
        with _global_random(0):
            hp = HighPassFilter(min_cutoff_freq=look.highpass_hz, max_cutoff_freq=look.highpass_hz,
                                min_rolloff=12, max_rolloff=12, zero_phase=True, p=1.0)
            audio = np.asarray(hp(samples=audio, sample_rate=SAMPLE_RATE), dtype=np.float32)
    if look.channel_rate is not None and look.channel_rate != SAMPLE_RATE:
        through = soxr.resample(audio, SAMPLE_RATE, look.channel_rate, quality="HQ")
        back = soxr.resample(through, look.channel_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
        audio = np.zeros(n, dtype=np.float32)
        audio[: min(n, len(back))] = back[:n]
    if look.digital_silence:
        gate = np.zeros(n, dtype=np.float32)
        margin = SAMPLE_RATE // 20  # the gate opens 50 ms before speech and closes 50 ms after it
        spans = [(int(s * SAMPLE_RATE), int(e * SAMPLE_RATE)) for s, e in plan.turns]
        spans += [(s * SAMPLES_PER_FRAME, e * SAMPLES_PER_FRAME) for s, e, _ in plan.bursts]
        for a, b in spans:
            a, b = max(0, a - margin), min(n, b + margin)
            gate[a:b] = np.maximum(gate[a:b], _fade(b - a, ramp))
        audio *= gate
        audio[gate == 0] = 0.0
    return np.clip(audio, -1.0, 1.0)


class _FrameRenderer:
    """Draws the session's video frames: background, tinted moving face, occluders, blur, lighting."""

    def __init__(self, *, plan: SessionPlan, pool: _FacePool, rendering: FaceRendering, seed: int) -> None:
        look = plan.look
        assert look is not None
        self.plan, self.pool, self.look, self.seed = plan, pool, look, seed
        self.canvas, self.size = rendering.canvas, rendering.face_size
        if look.background == "grey":
            self.background = np.full((self.canvas, self.canvas, 3), rendering.background, dtype=np.uint8)
        else:
            self.background = make_backdrop(effects_rng(seed, plan.name, 3), kind=look.background,
                                             width=self.canvas, height=self.canvas)
        self.alpha = (feather_mask(self.size, feather=0.05) if look.background != "grey"
                      else np.ones((self.size, self.size), np.float32))
        self.lit = look.brightness != 1.0 or look.contrast != 1.0 or look.light_slope != 0.0
        self._faces: dict[int, np.ndarray] = {}
        self._empty: np.ndarray | None = None

    def _face(self, j: int) -> np.ndarray:
        """The face ``j`` tinted (per-person jitter around the session's tone) and upscaled, RGB."""
        if j not in self._faces:
            if len(self._faces) > 64:
                self._faces.clear()
            import cv2

            grey = cv2.resize(self.pool.images[j], (self.size, self.size), interpolation=cv2.INTER_CUBIC)
            if self.look.skin_tone is None:
                self._faces[j] = np.repeat(grey[:, :, None], 3, axis=2)
            else:
                jitter = np.random.default_rng([int(self.seed), zlib.crc32(self.plan.name.encode()), 5, j])
                self._faces[j] = tint_face(grey, skin_gains(self.look.skin_tone,
                                                            jitter=jitter.normal(0.0, 0.04, 3)))
        return self._faces[j]

    def pose(self, t: float) -> FacePose:
        """Head placement at time ``t`` (s): the session's base placement plus slow sinusoidal drift."""
        d = [0.0, 0.0, 0.0, 0.0]
        for dim, amp, period, phase in self.look.motion:
            d[int(dim)] += amp * math.sin(2 * math.pi * t / period + phase)
        c = (self.canvas - 1) / 2.0
        return FacePose(cx=c + (self.look.face_offset[0] + d[0]) * self.canvas,
                        cy=c + (self.look.face_offset[1] + d[1]) * self.canvas,
                        size=self.size * self.look.face_scale * (1.0 + d[2]), roll=d[3])

    def frame(self, t: float, slot: int, occluder: Occluder | None, sigma: float | None) -> np.ndarray:
        """The RGB frame at time ``t`` (label frame ``slot``)."""
        import cv2

        j = int(self.plan.faces[slot])
        if j < 0 and sigma is None and self._empty is not None:
            return self._empty
        image = self.background.copy()
        if j >= 0:
            pose = self.pose(t)
            m = place_face(image, self._face(j), self.alpha, pose)
            if occluder is not None:
                draw_occluder(image, occluder, m, src_size=self.size)
        if sigma is not None:
            image = cv2.GaussianBlur(image, (0, 0), sigma)
        if self.lit:
            image = apply_lighting(image, brightness=self.look.brightness, contrast=self.look.contrast,
                                   slope=self.look.light_slope)
        if j < 0 and sigma is None:
            self._empty = image
        return image


def _write_session(folder: Path, plan: SessionPlan, sources: _Sources, p: CompositeParams, seed: int,
                   rendering: FaceRendering, fps: int) -> None:
    write_wav(folder / "audio.wav", render_audio(plan, p, seed))
    look = plan.look
    assert look is not None
    renderer = _FrameRenderer(plan=plan, pool=sources.faces[plan.partition], rendering=rendering, seed=seed)
    occluded: dict[int, Occluder] = {f: occ for s, e, occ in plan.occlusions for f in range(s, e)}
    blurred: dict[int, float] = {f: sigma for s, e, sigma in plan.blurs for f in range(s, e)}

    def frames() -> Iterator[np.ndarray]:
        for k in range(int(round(p.frames / LABEL_RATE * fps))):
            slot = min(int(math.floor(k * LABEL_RATE / fps + 1e-9)), p.frames - 1)
            yield renderer.frame(k / fps, slot, occluded.get(slot), blurred.get(slot))

    write_video(folder / "video.mp4", frames(), fps=fps, width=rendering.canvas, height=rendering.canvas,
                 crf=look.crf)
    write_spans(folder / "turns.csv", plan.turns)
    write_spans(folder / "transcript.csv", [(s, e) for s, e, _ in plan.transcript],
                 [text for _, _, text in plan.transcript])
    write_labels(folder / "labels.csv", plan.labels, ["arousal", "valence"])
    write_csv(
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
        self.effects: dict[str, int] = {}
        self.silent_sessions = 0
        self.pause_frames = 0
        self.long_pause_frames = 0
        self.off_topic_turns = 0

    def add(self, plan: SessionPlan) -> None:
        T = len(plan.labels)
        self.frames += T
        self.speakers[plan.speaker] = self.speakers.get(plan.speaker, 0) + 1
        speaking = np.zeros(T, dtype=bool)
        for s, e in plan.turns:  # the toolkit's rounding of turns to the 0.1 s grid
            speaking[int(math.floor(s * LABEL_RATE + 0.5 + 1e-9)) : int(math.floor(e * LABEL_RATE + 0.5 + 1e-9))] = True
        self.speaking += int(speaking.sum())
        if plan.look is not None and plan.look.digital_silence:
            self.silent_sessions += 1
        quiet = np.concatenate([[0], (~speaking).astype(np.int8), [0]])
        edges = np.flatnonzero(np.diff(quiet))
        for s, e in zip(edges[::2], edges[1::2], strict=True):
            self.pause_frames += int(e - s)
            if e - s >= 60:
                self.long_pause_frames += int(e - s)
        shown = plan.faces >= 0
        self.face += int(shown.sum())
        self.face_speaking += int((shown & speaking).sum())
        for it in plan.items:
            n = it.end - it.start
            if it.modality == "label":
                self.categories[it.category] = self.categories.get(it.category, 0) + n
            elif it.modality in ("occlusion", "blur", "noise_burst", "off_topic"):
                self.effects[it.modality] = self.effects.get(it.modality, 0) + n
                self.off_topic_turns += it.modality == "off_topic"
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
            "effect_shares": {k: round(v / max(self.frames, 1), 3) for k, v in sorted(self.effects.items())},
            "off_topic_turns": self.off_topic_turns,
            "off_topic_turn_share": round(self.off_topic_turns / max(sum(self.sources["words"].values()), 1), 3),
            "digital_silence_sessions": self.silent_sessions,
            "no_speech_6s_or_longer_share": round(self.long_pause_frames / max(self.frames, 1), 3),
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
    noise_db: float | Sequence[float] = (-70.0, -45.0),
    noise_decay: Sequence[float] = (-6.0, 0.0),
    long_pause: float = 0.15,
    long_listen: Sequence[float] = (6.0, 12.0),
    gain_db: Sequence[float] = (-24.0, 6.0),
    digital_silence: float = 0.3,
    channel_share: float = 0.5,
    channel_rates: Sequence[int] = (8000, 11025, 16000, 32000, 44100, 48000),
    noise_burst_rate: float = 0.03,
    noise_burst: Sequence[float] = (0.2, 1.0),
    noise_burst_db: Sequence[float] = (-35.0, -20.0),
    skin_tones: bool = True,
    backgrounds: bool = True,
    head_motion: float = 1.0,
    brightness: Sequence[float] = (0.8, 1.2),
    contrast: Sequence[float] = (0.85, 1.15),
    light_slope: float = 0.25,
    crf: Sequence[int] = (18, 30),
    occlusion_rate: float = 0.04,
    occlusion: Sequence[float] = (0.4, 1.5),
    blur_rate: float = 0.05,
    blur: Sequence[float] = (0.2, 0.8),
    off_topic_rate: float = 0.15,
    upscale: int = 3,
    margin: float = 0.5,
    fps: int = 25,
    overwrite: bool = False,
) -> AdaptReport:
    """Write the composite benchmark corpus into ``out`` from the shared data folder ``src``.

    ``src`` holds ``emodb/``, ``emobank/`` and ``ferplus/`` (see
    :func:`~mmaffect.data.sources.shared_data_root`). ``sessions`` = numbers
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
      sized by :class:`FaceRendering` (``upscale``, ``margin``) at ``fps``.

    Realism (each off with the value in brackets; :data:`PLAIN` holds them
    all; ranges are drawn once per session unless said otherwise):

    * ``skin_tones`` (False): grey faces × per-channel gains of one of
      :data:`~mmaffect.data.writers.face_render.SKIN_TONES`, ±4 % per face;
    * ``backgrounds`` (False): a room, gradient, texture or plain background
      instead of the grey canvas, the photograph's border feathered;
    * ``head_motion`` (0): base scale and offset plus slow sinusoidal drift
      of position, scale and roll, × this factor;
    * ``brightness``, ``contrast`` ((1, 1)), ``light_slope`` (0): lighting;
    * ``crf`` ((18, 18)): libx264 constant rate factor range;
    * ``occlusion_rate`` / ``occlusion`` and ``blur_rate`` / ``blur`` (rate
      0): hands or boxes over part of the face, blur bursts (per second,
      span in s);
    * ``gain_db`` ((0, 0)): speech gain; ``noise_db`` (a level or range,
      dBFS RMS) and ``noise_decay`` (dB/octave) of the background noise;
    * ``digital_silence`` (0): share of sessions whose pauses are gated to
      digital zeros; ``long_pause`` (0): probability per turn of a
      ``long_listen`` pause;
    * ``channel_share`` (0): share of sessions high-passed and resampled
      through one of ``channel_rates``;
    * ``noise_burst_rate`` (0), ``noise_burst``, ``noise_burst_db``: bursts
      of coloured noise;
    * ``off_topic_rate`` (0): share of speaking turns whose sentence is
      off-topic, drawn among the ``nearest_share`` × pool nearest to the
      neutral point (0, 0) instead of the target (the labels are unchanged).

    Files: ``audio.wav``, ``video.mp4``, ``turns.csv`` (each utterance's
    speech), ``transcript.csv``, ``labels.csv`` (arousal, valence),
    ``segments.csv`` (every placed item: ``modality`` label / voice / face /
    no_face / words / occlusion / blur / noise_burst / off_topic, source,
    category, its own (valence, arousal) and the segment category it was
    chosen for; an ``off_topic`` row repeats its turn's ``words`` span and
    source), then ``splits.csv`` and
    ``adapter.json`` (parameters, seed, proxy table, source pools, per-partition
    statistics, each session's look, terms). Deterministic: the same sources, parameters and
    seed give the same files (the video's decoded frames; the bytes too with
    a deterministic encoder). A session depends only on the seed and its name.
    """
    options = dict(locals())  # the call's arguments by name: taken before any other local exists
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    params = _composite_params(options)
    rendering = FaceRendering(upscale=upscale, margin=margin)
    report = AdaptReport(corpus="composite", out=out)
    sources = _read_sources(src, report)
    prepare_output(out, overwrite=overwrite)
    partitions, tallies, looks = _write_sessions(out, sessions, sources, params, seed, rendering, fps, report)
    report = finish_corpus(
        report,
        partitions=partitions,
        src=src,
        params=_run_parameters(options, params, rendering),
        label_note=(
            "arousal/valence: a trajectory of category PROXY points (not dimensional ratings) shared by "
            "EmoDB voices, FER+ faces and EmoBank sentences chosen to match it; a proxy benchmark, "
            "not a substitute for SEWA"
        ),
        started=started,
    )
    _add_composite_meta(out / "adapter.json", sources, tallies, looks, sessions)
    report.seconds = time.perf_counter() - started
    return report


def _check_share(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{name} must be within 0-1, not {value!r}")


def _check_rate(name: str, value: float) -> None:
    if not 0.0 <= value <= LABEL_RATE:
        raise ConfigError(f"{name} must be within 0-{LABEL_RATE} per second, not {value!r}")


def _check_run(sessions: Sequence[int], seed: int, seconds: float) -> int:
    """Check the session counts, seed and length; the session length in frames."""
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
    return frames


def _check_utterances_per_turn(upt: Sequence[int]) -> tuple[int, int]:
    if not (isinstance(upt, (tuple, list)) and len(upt) == 2 and all(isinstance(n, int) for n in upt)
            and 1 <= upt[0] <= upt[1]):
        raise ConfigError(f"utterances_per_turn must be a pair of integers 1 <= low <= high, not {upt!r}")
    return int(upt[0]), int(upt[1])


def _check_channel_rates(channel_rates: Sequence[int]) -> tuple[int, ...]:
    rates = tuple(channel_rates) if isinstance(channel_rates, (tuple, list)) else ()
    if not rates or not all(isinstance(r, int) and 4000 <= r <= 96000 for r in rates):
        raise ConfigError(f"channel_rates must be a non-empty list of integer rates 4000-96000 Hz, not "
                          f"{channel_rates!r}")
    return rates


def _check_picture(
    *, head_motion: float, light_slope: float, crf: Sequence[int], upscale: int, margin: float, fps: int
) -> None:
    """Check the options of the face video: motion, lighting, compression, size and frame rate."""
    if not 0.0 <= head_motion <= 3.0:
        raise ConfigError(f"head_motion must be within 0-3 (0 = a still face), not {head_motion!r}")
    if not 0.0 <= light_slope <= 1.0:
        raise ConfigError(f"light_slope must be within 0-1, not {light_slope!r}")
    if not (isinstance(crf, (tuple, list)) and len(crf) == 2 and all(isinstance(c, int) for c in crf)
            and 0 <= crf[0] <= crf[1] <= 51):
        raise ConfigError(f"crf must be a pair of integers 0 <= low <= high <= 51, not {crf!r}")
    if not isinstance(upscale, int) or not 1 <= upscale <= 10:
        raise ConfigError(f"upscale must be an integer 1-10, not {upscale!r}")
    if not 0 <= margin <= 2:
        raise ConfigError(f"margin must be within 0-2 (fraction of the face size), not {margin!r}")
    if not isinstance(fps, int) or not 20 <= fps <= 60:
        raise ConfigError(f"fps must be an integer 20-60, not {fps!r}")


def _composite_params(o: dict[str, Any]) -> CompositeParams:
    """Check :func:`adapt_composite`'s options (``o``: its arguments by name); durations → frames.

    The checks run in the order of the signature, so the first bad option is the one reported.
    """
    frames = _check_run(o["sessions"], o["seed"], o["seconds"])
    ramp_frames = _frames(o["ramp"], "ramp")
    seg = _range_frames(o["segment"], "segment", minimum=max(1, ramp_frames))
    upt = _check_utterances_per_turn(o["utterances_per_turn"])
    _check_share("face_hidden_while_speaking", o["face_hidden_while_speaking"])
    _check_rate("face_gap_rate", o["face_gap_rate"])
    if not 0.0 < o["nearest_share"] <= 1.0:
        raise ConfigError(f"nearest_share must be within (0, 1], not {o['nearest_share']!r}")
    noise = _db_range(o["noise_db"], "noise_db", -120.0, -20.0)
    for name in ("long_pause", "digital_silence", "channel_share"):
        _check_share(name, o[name])
    for name in ("noise_burst_rate", "occlusion_rate", "blur_rate"):
        _check_rate(name, o[name])
    rates = _check_channel_rates(o["channel_rates"])
    _check_share("off_topic_rate", o["off_topic_rate"])
    _check_picture(head_motion=o["head_motion"], light_slope=o["light_slope"], crf=o["crf"], upscale=o["upscale"],
                   margin=o["margin"], fps=o["fps"])
    return CompositeParams(
        frames=frames,
        segment=seg,
        ramp=ramp_frames,
        utterances_per_turn=upt,
        utterance_gap=_range_frames(o["utterance_gap"], "utterance_gap"),
        listen=_range_frames(o["listen"], "listen", minimum=1),
        face_hold=_range_frames(o["face_hold"], "face_hold", minimum=1),
        face_hidden_while_speaking=float(o["face_hidden_while_speaking"]),
        face_gap_rate=float(o["face_gap_rate"]),
        face_gap=_range_frames(o["face_gap"], "face_gap", minimum=1),
        nearest_share=float(o["nearest_share"]),
        noise_db=noise,
        noise_decay=_db_range(o["noise_decay"], "noise_decay", -12.0, 6.0),
        long_pause=float(o["long_pause"]),
        long_listen=_range_frames(o["long_listen"], "long_listen", minimum=1),
        gain_db=_db_range(o["gain_db"], "gain_db", -60.0, 20.0),
        digital_silence=float(o["digital_silence"]),
        channel_share=float(o["channel_share"]),
        channel_rates=rates,
        noise_burst_rate=float(o["noise_burst_rate"]),
        noise_burst=_range_frames(o["noise_burst"], "noise_burst", minimum=1),
        noise_burst_db=_db_range(o["noise_burst_db"], "noise_burst_db", -90.0, 0.0),
        skin_tones=bool(o["skin_tones"]),
        backgrounds=bool(o["backgrounds"]),
        head_motion=float(o["head_motion"]),
        brightness=_factor_range(o["brightness"], "brightness"),
        contrast=_factor_range(o["contrast"], "contrast"),
        light_slope=float(o["light_slope"]),
        crf=(int(o["crf"][0]), int(o["crf"][1])),
        occlusion_rate=float(o["occlusion_rate"]),
        occlusion=_range_frames(o["occlusion"], "occlusion", minimum=1),
        blur_rate=float(o["blur_rate"]),
        blur=_range_frames(o["blur"], "blur", minimum=1),
        off_topic_rate=float(o["off_topic_rate"]),
    )


def _write_sessions(
    out: Path, sessions: Sequence[int], sources: _Sources, params: CompositeParams, seed: int,
    rendering: FaceRendering, fps: int, report: AdaptReport,
) -> tuple[list[tuple[str, str]], dict[str, _Tally], dict[str, dict[str, Any]]]:
    """Plan and write every session; (session, partition) pairs, statistics per partition, looks per session."""
    partitions: list[tuple[str, str]] = []
    tallies = {part: _Tally() for part in PARTITIONS}
    looks: dict[str, dict[str, Any]] = {}
    for part, count in zip(PARTITIONS, sessions, strict=True):
        for index in range(count):
            name = f"composite_{part}_{index:04d}"
            plan = plan_session(name, part, index, sources, params, seed)
            _write_session(out / name, plan, sources, params, seed, rendering, fps)
            tallies[part].add(plan)
            if plan.look is not None:
                looks[name] = plan.look.as_dict()
            report.frames += params.frames
            report.items += sum(1 for it in plan.items if it.modality in ("voice", "face", "words"))
            partitions.append((name, part))
    return partitions, tallies, looks


def _run_parameters(o: dict[str, Any], params: CompositeParams, rendering: FaceRendering) -> dict[str, Any]:
    """The ``parameters`` of adapter.json: the options as given (``o``), the checked noise level and rates."""
    noise_decay = o["noise_decay"]
    return {
        "version": COMPOSITE_VERSION,
        "sessions": list(o["sessions"]),
        "seconds": o["seconds"],
        "seed": o["seed"],
        "segment": list(o["segment"]),
        "ramp": o["ramp"],
        "utterances_per_turn": list(o["utterances_per_turn"]),
        "utterance_gap": list(o["utterance_gap"]),
        "listen": list(o["listen"]),
        "face_hold": list(o["face_hold"]),
        "face_hidden_while_speaking": o["face_hidden_while_speaking"],
        "face_gap_rate": o["face_gap_rate"],
        "face_gap": list(o["face_gap"]),
        "nearest_share": o["nearest_share"],
        "noise_db": list(params.noise_db),
        "noise_decay": list(noise_decay) if isinstance(noise_decay, (tuple, list)) else noise_decay,
        "long_pause": o["long_pause"],
        "long_listen": list(o["long_listen"]),
        "gain_db": list(params.gain_db),  # the checked pair: a single level is given as a number
        "digital_silence": o["digital_silence"],
        "channel_share": o["channel_share"],
        "channel_rates": list(params.channel_rates),
        "noise_burst_rate": o["noise_burst_rate"],
        "noise_burst": list(o["noise_burst"]),
        "noise_burst_db": list(params.noise_burst_db),
        "skin_tones": bool(o["skin_tones"]),
        "backgrounds": bool(o["backgrounds"]),
        "head_motion": o["head_motion"],
        "brightness": list(o["brightness"]),
        "contrast": list(o["contrast"]),
        "light_slope": o["light_slope"],
        "crf": list(o["crf"]),
        "occlusion_rate": o["occlusion_rate"],
        "occlusion": list(o["occlusion"]),
        "blur_rate": o["blur_rate"],
        "blur": list(o["blur"]),
        "off_topic_rate": o["off_topic_rate"],
        "upscale": o["upscale"],
        "margin": o["margin"],
        "fps": o["fps"],
        "canvas": rendering.canvas,
        "codec": video_codec(),
    }


def _add_composite_meta(
    meta_path: Path, sources: _Sources, tallies: dict[str, _Tally], looks: dict[str, dict[str, Any]],
    sessions: Sequence[int],
) -> None:
    """Add the ``composite`` section (source pools, statistics, looks) to adapter.json."""
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
        "sessions": looks,
    }
    meta["terms"] = RESEARCH_TERMS
    atomic_write_json(meta_path, meta)


def parse_option(text: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` (VALUE in JSON, else a plain string) → (key, value) for :func:`adapt_composite`.

    Only the generator's effect and timing options are accepted (not ``src``,
    ``out``, ``sessions``, ``seconds``, ``seed`` or ``overwrite``, which have their own flags).
    """
    key, sep, value = text.partition("=")
    key = key.strip().replace("-", "_")
    allowed = [n for n, prm in inspect.signature(adapt_composite).parameters.items()
               if prm.kind is inspect.Parameter.KEYWORD_ONLY and n not in ("sessions", "seconds", "seed", "overwrite")]
    if not sep or key not in allowed:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE with KEY one of {', '.join(allowed)}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value
    return key, parsed


def read_segments(folder: Path) -> list[dict[str, str]]:
    """The rows of one composite session's ``segments.csv`` (DataError when it is missing)."""
    path = Path(folder) / "segments.csv"
    if not path.is_file():
        raise DataError("file not found", path=path)
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


__all__ = [
    "CATEGORIES",
    "PLAIN",
    "SessionLook",
    "draw_look",
    "parse_option",
    "render_audio",
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
