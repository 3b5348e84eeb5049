"""A deterministic synthetic corpus in the AVEC 2017 SEWA layout.

:func:`synthesize` writes ``audio/<id>.wav``, ``video/<id>.avi``,
``labels/<id>.csv``, ``turns/<id>.csv`` and ``transcriptions/<id>.csv`` for
recordings ``Train_01..``, ``Devel_01..``, ``Test_01..`` plus ``synth.json``
(parameters, seed, version, and per session the periods without a visible
frontal face). The files are read by the same reader as the real corpus.

Signal design (details and a modality × dimension table in ``docs/synthetic.md``):

* **Labels**: smooth arousal, valence and liking traces at 10 Hz in [-1, 1]
  (sinusoids with random periods of 5–30 s and phases plus low-pass noise; valence
  is decorrelated from arousal). Test recordings keep their labels so that
  demos can score; the real SEWA test labels were withheld.
* **Turns**: alternating target and partner turns of 1.5–6 s with pauses;
  the target speaks about 45 % of the time.
* **Audio**: a harmonic, formant-filtered, syllable-modulated voice. In the
  target's turns F0, loudness and syllable rate rise with arousal; valence
  only tilts the spectrum very slightly. The partner's voice follows its own random
  prosody; background noise at 10–20 dB SNR throughout.
* **Video**: :mod:`mmaffect.data.writers.face_render` draws a face whose expression
  follows valence (mouth curvature, brow slant) and, more weakly, arousal (eye
  and mouth openness, brow height), scaled by a slowly varying
  :func:`expressiveness` (expressive stretches alternate with a near poker
  face); the mouth moves with the target's syllables. The face is out of the
  picture or turned away about 40 % of the time, mostly while the target
  speaks (version 2), so the face covers the listening time and the voice and
  words the speaking time.
* **Text**: one transcript turn per target turn; the share of positive versus
  negative words follows valence strongly; arousal only changes how often an
  intensifier appears.

Everything is drawn from ``numpy.random.Generator`` streams seeded by
``(seed, session name)``, so a session does not change when other sessions
are added, and the same seed gives byte-identical wav and csv files (the
video is encoded single-threaded; its decoded frames are identical).
"""

from __future__ import annotations

import io
import json
import multiprocessing
import re
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.ndimage import gaussian_filter1d
from scipy.signal import lfilter
from scipy.signal.windows import tukey

from mmaffect.data.session import LABEL_RATE, Turn, frame_times
from mmaffect.data.writers.face_render import FaceParams, FaceRenderer
from mmaffect.errors import ConfigError
from mmaffect.utils.io import atomic_path, atomic_write_bytes, atomic_write_json, atomic_write_text
from mmaffect.version import __version__

SYNTH_VERSION = 2
"""Version of the generator; bumped whenever the same seed would give different files."""

AUDIO_SAMPLE_RATE = 16000
"""Sample rate of the written wav files (mono PCM16)."""

FOLDERS = ("audio", "video", "labels", "turns", "transcriptions")
"""The SEWA folders the corpus consists of."""

TARGET_SPEECH_SHARE = 0.45
"""Fraction of the time the target speaks (on average)."""

FACE_AWAY_WHILE_SPEAKING = 0.85
"""Share of the target's turns during which the face turns away or leaves the picture (version 2)."""

FACE_GAP_SHARE = 0.1
"""Expected share of the time covered by extra 3–8 s face gaps at random (version 2)."""

LABEL_PERIODS = (5.0, 30.0)
"""Range of the periods (s) of the label traces' sinusoids (version 1: 8–45 s)."""

FACE_AROUSAL_GAIN = 0.6
"""How strongly the rendered expression follows arousal, relative to valence (version 2)."""

# --------------------------------------------------------------------------- lexicon
POSITIVE_WORDS = (
    "good great happy love nice wonderful excellent fun beautiful enjoy amazing fantastic glad lovely "
    "perfect brilliant pleasant friendly funny cool awesome delightful cheerful kind smart exciting best "
    "like favourite win success easy comfortable relaxed sunny fresh sweet proud grateful hope"
).split()
"""40 words of positive valence."""

NEGATIVE_WORDS = (
    "bad terrible awful hate sad boring annoying horrible wrong worst angry ugly stupid poor difficult "
    "problem fail lose sick tired hard expensive broken dirty nasty scary upset worried disappointed "
    "useless painful weird dull slow noisy unfair rude mess fear cry"
).split()
"""40 words of negative valence."""

NEUTRAL_WORDS = (
    "advert product video car house table phone market company price colour music water street city "
    "morning week people thing time picture screen box bottle paper shop brand camera minute voice "
    "kitchen office number idea question way place day name door"
).split()
"""40 content words without valence."""

FUNCTION_WORDS = (
    "the a it is was and but i you we they this that of to in on with for just think there have be "
    "maybe about what yes well also then"
).split()
"""Function words (no valence)."""

INTENSIFIERS = ("really", "very", "so", "totally")
"""Inserted more often at high arousal: the only arousal cue in the text."""

LAUGH_TAGS = ("<laughter>", "<slightlaughter>")
OTHER_TAGS = ("<breathing>", "<filler>", "<clearingthroat>", "<coughing>", "<fumbling>", "<clicking>")

_VALENCE_OF = {w: 1.0 for w in POSITIVE_WORDS} | {w: -1.0 for w in NEGATIVE_WORDS}


def lexical_valence(text: str) -> float:
    """Mean lexicon valence of the words of ``text`` (+1 positive, −1 negative, 0 others).

    Returns NaN for a text without words. Tags such as ``<laughter>`` are skipped.

    >>> lexical_valence("the advert was great but boring and sad")
    -0.125
    """
    words = [w for w in re.findall(r"<\w+>|\w+", text.lower()) if not w.startswith("<")]
    if not words:
        return float("nan")
    return float(np.mean([_VALENCE_OF.get(w, 0.0) for w in words]))


# --------------------------------------------------------------------------- plan
VOWELS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
"""Formant frequencies (Hz) of the synthetic vowels."""


@dataclass(frozen=True)
class Voice:
    """A speaker's voice: F0 at neutral arousal (Hz) and a formant scale (vocal tract)."""

    f0: float
    formant_scale: float
    level_db: float


@dataclass(frozen=True)
class Syllable:
    """One voiced syllable: onset, duration (s), mean F0 (Hz), linear gain, vowel, whether the target
    speaks, spectral tilt (harmonic k has amplitude k**-tilt), a consonant burst at the onset, formant scale."""

    start: float
    duration: float
    f0: float
    gain: float
    vowel: str
    target: bool
    tilt: float
    consonant: bool
    formant_scale: float


@dataclass
class SessionPlan:
    """Everything a session's files are rendered from (fully determined by name, duration and seed)."""

    name: str
    partition: str
    duration: float
    seed: int
    times: np.ndarray  # (T,) label times, 10 Hz
    arousal: np.ndarray  # (T,)
    valence: np.ndarray  # (T,)
    liking: np.ndarray  # (T,)
    target_turns: list[Turn]  # with transcript text
    partner_turns: list[Turn]
    syllables: list[Syllable]
    face_missing: list[tuple[float, float, str]]  # (start, end, "away" | "absent")
    snr_db: np.ndarray  # (T,) SNR of neutral target speech against the noise

    def affect_at(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Arousal and valence linearly interpolated at times ``t`` (s)."""
        return np.interp(t, self.times, self.arousal), np.interp(t, self.times, self.valence)

    def pose_at(self, t: np.ndarray) -> np.ndarray:
        """Head pose (``"frontal"``, ``"away"`` or ``"absent"``) at times ``t``."""
        poses = np.full(np.shape(t), "frontal", dtype=object)
        for start, end, pose in self.face_missing:
            poses[(t >= start) & (t < end)] = pose
        return poses

    def target_speaking(self, t: np.ndarray) -> np.ndarray:
        """True where ``t`` lies inside a target turn."""
        out = np.zeros(np.shape(t), dtype=bool)
        for turn in self.target_turns:
            out |= (t >= turn.start) & (t < turn.end)
        return out


_COMPONENTS = ("traces", "turns", "speech", "text", "look", "noise", "audio", "appearance", "motion", "expression")


def component_rng(seed: int, name: str, component: str) -> np.random.Generator:
    """The generator of one component of one session, seeded by (seed, name, component).

    Each component has its own stream, so changing how one is drawn leaves the
    others unchanged, and a session does not depend on which others exist.
    """
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8")), _COMPONENTS.index(component)])
    return np.random.default_rng(ss)


def smooth_trace(
    rng: np.random.Generator, times: np.ndarray, *, periods: tuple[float, float] = (8.0, 45.0), n_sines: int = 4,
    noise_sigma: float = 2.0,
) -> np.ndarray:
    """A smooth zero-centred trace of unit-ish scale at ``times``.

    Sum of ``n_sines`` sinusoids with log-uniform periods in ``periods`` and
    random phases, plus Gaussian-smoothed noise (σ = ``noise_sigma`` s). Not
    bounded; callers squash it.
    """
    t = np.asarray(times, dtype=np.float64)
    x = np.zeros_like(t)
    for _ in range(n_sines):
        period = float(np.exp(rng.uniform(np.log(periods[0]), np.log(periods[1]))))
        x += rng.uniform(0.5, 1.0) * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
    x /= np.sqrt(n_sines * 0.4)
    dt = float(np.median(np.diff(t))) if len(t) > 1 else 0.1
    noise = gaussian_filter1d(rng.standard_normal(len(t)), sigma=noise_sigma / dt, mode="reflect")
    noise /= max(float(np.std(noise)), 1e-9)
    return 0.8 * x + 0.5 * noise


def _squash(x: np.ndarray) -> np.ndarray:
    """Map an unbounded trace into (-0.95, 0.95)."""
    return 0.95 * np.tanh(0.7 * x)


def _labels(rng: np.random.Generator, times: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arousal, valence, liking traces in [-1, 1]; valence is decorrelated from arousal."""
    kw = {"periods": LABEL_PERIODS, "noise_sigma": 1.5}
    xa = smooth_trace(rng, times, **kw) + rng.normal(0.0, 0.35)
    xv = smooth_trace(rng, times, **kw) + rng.normal(0.0, 0.35)
    xl = smooth_trace(rng, times, **kw)
    ca, cv = xa - xa.mean(), xv - xv.mean()
    if len(times) > 2 and float(ca @ ca) > 0:
        xv = xv - (float(ca @ cv) / float(ca @ ca)) * ca
    return _squash(xa), _squash(xv), _squash(0.6 * xv + 0.8 * xl)


def _turns(rng: np.random.Generator, duration: float) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """Alternating target/partner turns (start, end) on a 10 ms grid, with pauses.

    The first speaker is random, except that a session too short for the
    partner to leave the target a turn starts with the target.
    """
    first_is_target = bool(rng.integers(0, 2))
    target, partner = _alternate(rng, duration, first_is_target=first_is_target)
    if not target:
        target, partner = _alternate(rng, duration, first_is_target=True)
    return target, partner


def _alternate(
    rng: np.random.Generator, duration: float, *, first_is_target: bool
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """One draw of alternating turns for :func:`_turns`."""
    target: list[tuple[float, float]] = []
    partner: list[tuple[float, float]] = []
    t = rng.uniform(0.2, 1.0)
    speaker_is_target = first_is_target
    while True:
        length = rng.uniform(1.5, 6.0) if speaker_is_target else rng.uniform(1.5, 4.8)
        start = round(t, 2)
        end = round(min(t + length, duration - 0.2), 2)
        if end - start < 1.0:
            break
        (target if speaker_is_target else partner).append((start, end))
        t = end + rng.uniform(0.2, 1.2)
        speaker_is_target = not speaker_is_target
    return target, partner


def _face_missing(
    rng: np.random.Generator, duration: float, target_spans: list[tuple[float, float]] | None = None
) -> list[tuple[float, float, str]]:
    """Periods (start, end, pose) without a frontal face, about a third of the time.

    Version 2: the face is mostly hidden *while the target speaks*: in a
    share :data:`FACE_AWAY_WHILE_SPEAKING` of the target's turns the person
    turns away or leaves the picture shortly after the turn starts and comes
    back around its end; on top of that come a few longer gaps of 3–8 s at
    random (about :data:`FACE_GAP_SHARE` of the time). Overlapping periods are
    merged; every session has at least one period. The visual modality therefore
    sees the target mostly while they listen, and the voice and the words
    mostly while they speak.
    """
    spans: list[tuple[float, float]] = []
    for start, end in target_spans or []:
        if rng.random() < FACE_AWAY_WHILE_SPEAKING:
            s = start + rng.uniform(0.0, 0.25) * (end - start)
            e = min(end + rng.uniform(-0.3, 0.8), duration - 0.1)
            if e - s >= 1.0:
                spans.append((s, e))
    n_gaps = int(rng.poisson(FACE_GAP_SHARE * duration / 5.0))
    if not spans and n_gaps == 0:
        n_gaps = 1
    for _ in range(n_gaps):
        length = min(rng.uniform(3.0, 8.0), 0.5 * duration)
        s = rng.uniform(0.1, max(0.1, duration - length - 0.1))
        spans.append((s, s + length))
    spans.sort()
    merged: list[list[float]] = []
    for s, e in spans:
        if merged and s <= merged[-1][1] + 0.3:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    first = "away" if rng.integers(0, 2) == 0 else "absent"
    other = "absent" if first == "away" else "away"
    out = []
    for k, (s, e) in enumerate(merged):
        kind = (first, other)[k % 2] if k < 2 else str(rng.choice(("away", "absent")))
        out.append((round(s, 2), round(min(e, duration - 0.05), 2), kind))
    return out


def _words(rng: np.random.Generator, *, n_words: int, valence: float, arousal: float) -> str:
    """A sentence of ``n_words`` tokens whose lexical valence follows ``valence``."""
    p_valenced = 0.75  # share of content words that carry valence
    p_positive = 0.5 * (1.0 + np.tanh(2.5 * valence))  # of those, the share of positive ones
    words: list[str] = []
    for _ in range(n_words):
        if rng.random() < 0.25:
            words.append(str(rng.choice(FUNCTION_WORDS)))
            continue
        if rng.random() >= p_valenced:
            words.append(str(rng.choice(NEUTRAL_WORDS)))
        elif rng.random() < p_positive:
            words.append(str(rng.choice(POSITIVE_WORDS)))
        else:
            words.append(str(rng.choice(NEGATIVE_WORDS)))
    if rng.random() < 0.15 + 0.15 * arousal and len(words) < 25:
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(INTENSIFIERS)))
    if rng.random() < 0.15 and len(words) < 25:
        laugh = valence > 0.2 and rng.random() < 0.4 + 0.5 * valence
        tag = str(rng.choice(LAUGH_TAGS if laugh else OTHER_TAGS))
        words.insert(0 if rng.random() < 0.5 else len(words), tag)
    return " ".join(words)


def _syllables(
    rng: np.random.Generator, spans: list[tuple[float, float]], *, arousal: np.ndarray, valence: np.ndarray,
    times: np.ndarray, voice: Voice, target: bool,
) -> list[Syllable]:
    """Syllables filling the turns; F0, gain and rate follow ``arousal``, tilt follows ``valence``."""
    out: list[Syllable] = []
    vowels = tuple(VOWELS)
    for start, end in spans:
        t = start + rng.uniform(0.0, 0.05)
        while True:
            a = float(np.interp(t, times, arousal))
            v = float(np.interp(t, times, valence))
            rate = (3.2 + 1.6 * a) * rng.uniform(0.85, 1.15)  # syllables per second
            period = 1.0 / rate
            dur = period * rng.uniform(0.55, 0.8)
            if t + dur > end:
                break
            progress = (t - start) / max(end - start, 1e-6)
            f0 = voice.f0 * 2.0 ** (0.5 * a) * (1.0 - 0.08 * progress) * 2.0 ** rng.normal(0.0, 0.05)
            gain = 10.0 ** ((voice.level_db + 7.0 * a + rng.normal(0.0, 1.0)) / 20.0)
            out.append(Syllable(
                start=float(t), duration=float(dur), f0=float(f0), gain=float(gain),
                vowel=str(rng.choice(vowels)), target=target, tilt=float(1.05 - 0.08 * v),
                consonant=bool(rng.random() < 0.6), formant_scale=voice.formant_scale,
            ))
            t += period
            if rng.random() < 0.12:
                t += rng.uniform(0.1, 0.3)  # a short pause between phrases
    return out


def plan_session(name: str, *, duration: float, seed: int, partition: str | None = None) -> SessionPlan:
    """Draw everything about one session (traces, turns, syllables, words, face periods).

    >>> p = plan_session("Train_01", duration=20.0, seed=0)
    >>> len(p.times), float(p.times[-1])
    (200, 19.9)
    >>> all(-1 <= x <= 1 for x in p.arousal)
    True
    """
    if duration < 4.0:
        raise ConfigError(f"duration must be at least 4 s, got {duration}")
    rngs = {k: component_rng(seed, name, k) for k in ("traces", "turns", "speech", "text", "look", "noise")}
    n = int(round(duration * LABEL_RATE))
    times = np.round(frame_times(n), 6)
    arousal, valence, liking = _labels(rngs["traces"], times)
    tspans, pspans = _turns(rngs["turns"], duration)
    text_rng = rngs["text"]
    target_turns = []
    for start, end in tspans:
        mask = (times >= start) & (times < end)
        a = float(arousal[mask].mean()) if mask.any() else 0.0
        v = float(valence[mask].mean()) if mask.any() else 0.0
        n_words = int(np.clip(round((end - start) * text_rng.uniform(2.2, 3.0)), 4, 24))
        target_turns.append(Turn(start, end, _words(text_rng, n_words=n_words, valence=v, arousal=a)))
    partner_turns = [Turn(s, e) for s, e in pspans]
    sp = rngs["speech"]
    target_voice = Voice(f0=sp.uniform(125.0, 150.0), formant_scale=sp.uniform(0.95, 1.05), level_db=0.0)
    partner_voice = Voice(f0=sp.uniform(115.0, 170.0), formant_scale=sp.uniform(1.02, 1.15),
                          level_db=sp.uniform(-5.0, -1.0))
    partner_arousal = _squash(smooth_trace(sp, times))
    syl = _syllables(sp, tspans, arousal=arousal, valence=valence, times=times, voice=target_voice, target=True)
    syl += _syllables(sp, pspans, arousal=partner_arousal, valence=np.zeros_like(times), times=times,
                      voice=partner_voice, target=False)
    syl.sort(key=lambda s: s.start)
    face_missing = _face_missing(rngs["look"], duration, tspans)
    snr = 15.0 + 5.0 * np.tanh(smooth_trace(rngs["noise"], times))
    return SessionPlan(
        name=name, partition=partition or name.split("_")[0], duration=float(duration), seed=int(seed),
        times=times, arousal=arousal, valence=valence, liking=liking, target_turns=target_turns,
        partner_turns=partner_turns, syllables=syl, face_missing=face_missing, snr_db=snr,
    )


# --------------------------------------------------------------------------- audio
_REF_RMS = 0.07  # RMS of a neutral target syllable


def _resonator(freq: float, bw: float, sr: int) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonator at ``freq`` with bandwidth ``bw`` (Hz) as ``lfilter`` coefficients ``(b, a)``."""
    r = np.exp(-np.pi * bw / sr)
    theta = 2 * np.pi * freq / sr
    a = np.array([1.0, -2.0 * r * np.cos(theta), r * r])
    b = np.array([1.0 - r])
    return b, a


def _render_syllable(syl: Syllable, rng: np.random.Generator, *, sr: int) -> np.ndarray:
    """The waveform of one syllable (harmonic source → formants → envelope), RMS ``_REF_RMS * gain``."""
    n = max(16, int(round(syl.duration * sr)))
    t = np.arange(n) / sr
    glide = 1.0 + rng.uniform(-0.06, 0.06) * (t / syl.duration - 0.5)
    knots = np.arange(0.0, syl.duration + 0.02, 0.01)
    jitter = 1.0 + 0.01 * np.interp(t, knots, rng.standard_normal(len(knots)))
    f0 = syl.f0 * glide * jitter
    phase = 2 * np.pi * np.cumsum(f0) / sr
    n_harm = int(min(4000.0, 0.45 * sr) / syl.f0)
    k = np.arange(1, n_harm + 1)[:, None]
    src = ((k ** -syl.tilt) * np.sin(k * phase[None, :])).sum(axis=0)
    out = np.zeros(n)
    for j, (freq, bw) in enumerate(zip(VOWELS[syl.vowel], (90.0, 110.0, 170.0), strict=True)):
        b, a = _resonator(freq * syl.formant_scale, bw, sr)
        out += lfilter(b, a, src) * (1.0, 0.6, 0.35)[j]
    out *= tukey(n, 0.6)
    out /= max(float(np.sqrt(np.mean(out**2))), 1e-9)
    if syl.consonant:
        m = int(0.04 * sr)
        burst = lfilter([1.0, -0.95], [1.0], rng.standard_normal(m)) * np.hanning(m) * 0.35
        out[:m] += burst
    return out * (_REF_RMS * syl.gain)


def render_audio(plan: SessionPlan, *, sample_rate: int = AUDIO_SAMPLE_RATE) -> np.ndarray:
    """The session's waveform, float32 in [-1, 1]: both voices plus background noise.

    The noise level follows ``plan.snr_db`` (SNR of a neutral target syllable).
    """
    sr = int(sample_rate)
    rng = component_rng(plan.seed, plan.name, "audio")
    n = int(round(plan.duration * sr))
    y = np.zeros(n)
    for syl in plan.syllables:
        seg = _render_syllable(syl, rng, sr=sr)
        i0 = int(round(syl.start * sr))
        i1 = min(n, i0 + len(seg))
        if i1 > i0:
            y[i0:i1] += seg[: i1 - i0]
    white = rng.standard_normal(n)
    noise = 0.6 * lfilter([1.0], [1.0, -0.97], white) * 0.25 + 0.4 * white
    noise /= max(float(np.sqrt(np.mean(noise**2))), 1e-9)
    level = _REF_RMS * 10.0 ** (-np.interp(np.arange(n) / sr, plan.times, plan.snr_db) / 20.0)
    y += noise * level
    return np.clip(y, -0.99, 0.99).astype(np.float32)


# --------------------------------------------------------------------------- video
@dataclass(frozen=True)
class FrameInfo:
    """What the renderer drew in a video frame (for tests and the face-visible fraction)."""

    time: float
    pose: str


def _talk_envelope(plan: SessionPlan, t: np.ndarray) -> np.ndarray:
    """Mouth opening from the target's syllables at times ``t`` (0..1)."""
    out = np.zeros(len(t))
    for syl in plan.syllables:
        if not syl.target:
            continue
        inside = (t >= syl.start) & (t < syl.start + syl.duration)
        if inside.any():
            out[inside] = np.sin(np.pi * (t[inside] - syl.start) / syl.duration) * min(1.0, syl.gain)
    return out


def expressiveness(plan: SessionPlan, t: np.ndarray) -> np.ndarray:
    """How much of the affect the face shows at times ``t``, in (0, 1) (version 2).

    A slow random trace (periods 4–20 s) through ``0.5 + 0.5 tanh(1.5 x)``:
    the face alternates between expressive stretches and a near poker face,
    so the visual modality carries the labels only part of the time. Drawn
    from the session's ``expression`` stream.

    >>> p = plan_session("Train_01", duration=20.0, seed=0)
    >>> e = expressiveness(p, p.times)
    >>> bool(0 < e.min() < 0.3 and 0.7 < e.max() < 1)
    True
    """
    rng = component_rng(plan.seed, plan.name, "expression")
    return 0.5 + 0.5 * np.tanh(1.5 * smooth_trace(rng, np.asarray(t, dtype=np.float64), periods=(4.0, 20.0),
                                                  n_sines=3, noise_sigma=1.0))


def video_frames(
    plan: SessionPlan, *, width: int = 320, height: int = 240, fps: float = 25.0
) -> Iterator[tuple[np.ndarray, FrameInfo]]:
    """Yield ``(rgb frame, FrameInfo)`` for every video frame of the session.

    Expression follows the labels scaled by :func:`expressiveness` (arousal
    by a further :data:`FACE_AROUSAL_GAIN`), plus a little independent jitter; head position, scale, roll and lighting drift
    slowly and independently of affect.
    """
    n = int(round(plan.duration * fps))
    t = np.arange(n) / fps
    renderer = FaceRenderer(width=width, height=height, rng=component_rng(plan.seed, plan.name, "appearance"))
    mot = component_rng(plan.seed, plan.name, "motion")
    drift = [np.tanh(smooth_trace(mot, t, periods=(3.0, 15.0), n_sines=3)) for _ in range(8)]
    express = expressiveness(plan, t)
    arousal, valence = plan.affect_at(t)
    arousal = np.clip(FACE_AROUSAL_GAIN * express * arousal + 0.12 * drift[6], -1, 1)
    valence = np.clip(express * valence + 0.12 * drift[7], -1, 1)
    talk = _talk_envelope(plan, t)
    poses = plan.pose_at(t)
    size = height / 240.0
    base_scale = mot.uniform(0.62, 0.74) * size
    flip = bool(mot.integers(0, 2))
    gain0 = mot.uniform(0.88, 1.05)
    for i in range(n):
        p = FaceParams(
            valence=float(valence[i]), arousal=float(arousal[i]), talk=float(talk[i]),
            cx=width / 2 + 0.05 * width * drift[0][i], cy=0.49 * height + 0.03 * height * drift[1][i]
            + 1.5 * size * talk[i],
            scale=base_scale * (1.0 + 0.04 * drift[2][i]), roll=4.0 * drift[3][i], pose=str(poses[i]),
            light_gain=gain0 * (1.0 + 0.12 * drift[4][i]), light_slope=0.3 * drift[5][i], flip=flip,
        )
        yield renderer.render(p), FrameInfo(time=float(t[i]), pose=str(poses[i]))


def write_video(path: Path, frames: Iterator[np.ndarray], *, width: int, height: int, fps: float) -> None:
    """Encode RGB frames as MPEG-4 part 2 (fourcc XVID) in AVI, single-threaded, atomically."""
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="avi") as container:
            stream = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.thread_count = 1
            stream.codec_context.bit_rate = 250_000
            stream.codec_context.codec_tag = "XVID"
            for rgb in frames:
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


# --------------------------------------------------------------------------- files
def _fmt(x: float, digits: int) -> str:
    """Fixed-point number without negative zero."""
    s = f"{x:.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def labels_csv(plan: SessionPlan) -> str:
    """``'name';time;arousal;valence;liking`` rows, no header."""
    return "".join(
        f"'{plan.name}';{_fmt(t, 2)};{_fmt(a, 6)};{_fmt(v, 6)};{_fmt(li, 6)}\n"
        for t, a, v, li in zip(plan.times, plan.arousal, plan.valence, plan.liking, strict=True)
    )


def turns_csv(plan: SessionPlan) -> str:
    """``start;end`` rows of the target's turns."""
    return "".join(f"{_fmt(t.start, 2)};{_fmt(t.end, 2)}\n" for t in plan.target_turns)


def transcriptions_csv(plan: SessionPlan) -> str:
    """``start;end;'text'`` rows, one per target turn."""
    return "".join(f"{_fmt(t.start, 2)};{_fmt(t.end, 2)};'{t.text}'\n" for t in plan.target_turns)


@dataclass(frozen=True)
class SynthSession:
    """What :func:`synthesize` wrote for one recording."""

    name: str
    partition: str
    duration: float
    files: dict[str, Path]
    face_visible_fraction: float
    target_speech_fraction: float
    n_words: int


@dataclass(frozen=True)
class SynthReport:
    """Summary of a :func:`synthesize` run (``seconds`` is wall-clock time, ``bytes`` the corpus size)."""

    root: Path
    seed: int
    sessions: tuple[SynthSession, ...]
    seconds: float
    bytes: int

    @property
    def duration(self) -> float:
        """Total recorded time in seconds."""
        return float(sum(s.duration for s in self.sessions))


def session_names(*, n_train: int, n_devel: int, n_test: int) -> list[tuple[str, str]]:
    """``(name, partition)`` pairs in SEWA order.

    >>> session_names(n_train=2, n_devel=1, n_test=0)
    [('Train_01', 'Train'), ('Train_02', 'Train'), ('Devel_01', 'Devel')]
    """
    out = []
    for part, count in (("Train", n_train), ("Devel", n_devel), ("Test", n_test)):
        if count < 0 or count > 99:
            raise ConfigError(f"number of {part} sessions must be 0..99, got {count}")
        out += [(f"{part}_{i:02d}", part) for i in range(1, count + 1)]
    return out


def write_session(
    out: Path, plan: SessionPlan, *, width: int, height: int, fps: float, sample_rate: int = AUDIO_SAMPLE_RATE
) -> SynthSession:
    """Write one session's five files under ``out`` (atomically) and describe them."""
    name = plan.name
    files = {folder: out / folder / f"{name}.{ext}" for folder, ext in zip(
        FOLDERS, ("wav", "avi", "csv", "csv", "csv"), strict=True)}
    audio = render_audio(plan, sample_rate=sample_rate)
    wav = io.BytesIO()  # encoded in memory: a full disk is then a plain OSError naming the file
    sf.write(wav, audio, sample_rate, subtype="PCM_16", format="WAV")
    atomic_write_bytes(files["audio"], wav.getvalue())
    atomic_write_text(files["labels"], labels_csv(plan))
    atomic_write_text(files["turns"], turns_csv(plan))
    atomic_write_text(files["transcriptions"], transcriptions_csv(plan))
    poses: list[str] = []

    def frames() -> Iterator[np.ndarray]:
        for rgb, info in video_frames(plan, width=width, height=height, fps=fps):
            poses.append(info.pose)
            yield rgb

    write_video(files["video"], frames(), width=width, height=height, fps=fps)
    speech = sum(t.duration for t in plan.target_turns)
    return SynthSession(
        name=name, partition=plan.partition, duration=plan.duration, files=files,
        face_visible_fraction=float(np.mean([p == "frontal" for p in poses])) if poses else 0.0,
        target_speech_fraction=float(speech / plan.duration),
        n_words=sum(len(t.text.split()) for t in plan.target_turns),
    )


def _write_one(
    out: Path, name: str, part: str, *, duration: float, seed: int, width: int, height: int, fps: float
) -> tuple[SynthSession, dict, float]:
    """Plan and write one session; returns its description, its synth.json entry and the seconds it took."""
    ts = time.perf_counter()
    plan = plan_session(name, duration=duration, seed=seed, partition=part)
    info = write_session(out, plan, width=width, height=height, fps=fps)
    meta = {
        "name": name, "partition": part, "duration": plan.duration,
        "face_missing": [[s, e, p] for s, e, p in plan.face_missing],
        "face_visible_fraction": round(info.face_visible_fraction, 4),
        "target_speech_fraction": round(info.target_speech_fraction, 4),
        "n_words": info.n_words,
    }
    return info, meta, time.perf_counter() - ts


def synthesize(
    out: Path,
    *,
    n_train: int = 6,
    n_devel: int = 2,
    n_test: int = 2,
    duration: float = 40.0,
    width: int = 320,
    height: int = 240,
    fps: float = 25,
    seed: int = 0,
    progress: bool = True,
    jobs: int = 1,
) -> SynthReport:
    """Write a synthetic corpus in the AVEC 2017 SEWA layout under ``out``.

    Sessions are named ``Train_01..``, ``Devel_01..``, ``Test_01..``; each is
    ``duration`` seconds long. Test sessions get labels too (unlike the real
    corpus, whose test labels were withheld). ``synth.json`` at the root holds
    the parameters, seed, generator version and, per session, the periods in
    which the face is away or absent. Existing files of the same names are
    replaced. With ``progress`` a line per session goes to stderr.

    ``jobs`` > 1 writes that many sessions at once in worker processes
    (started with ``spawn``: a calling script needs the usual
    ``if __name__ == "__main__":`` guard); the files do not depend on it.
    """
    if width < 64 or height < 48 or width % 2 or height % 2:
        raise ConfigError(f"video size must be even and at least 64x48, got {width}x{height}")
    if not 5 <= fps <= 60:
        raise ConfigError(f"fps must be in 5..60, got {fps}")
    if duration < 4.0:
        raise ConfigError(f"duration must be at least 4 s, got {duration}")
    if jobs < 1:
        raise ConfigError(f"jobs must be at least 1, got {jobs}")
    names = session_names(n_train=n_train, n_devel=n_devel, n_test=n_test)
    if not names:
        raise ConfigError("no sessions requested (n_train + n_devel + n_test is 0)")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder")
    workers = min(len(names), int(jobs))
    kwargs = {"duration": float(duration), "seed": int(seed), "width": width, "height": height, "fps": fps}
    t0 = time.perf_counter()
    sessions: list[SynthSession] = []
    meta_sessions = []

    def collect(k: int, result: tuple[SynthSession, dict, float]) -> None:
        info, meta, seconds = result
        sessions.append(info)
        meta_sessions.append(meta)
        if progress:
            print(f"synth: {info.name} ({k}/{len(names)}) {seconds:.1f} s", file=sys.stderr, flush=True)

    if workers == 1:
        for k, (name, part) in enumerate(names, start=1):
            collect(k, _write_one(out, name, part, **kwargs))
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futures = [pool.submit(_write_one, out, name, part, **kwargs) for name, part in names]
            for k, fut in enumerate(futures, start=1):
                collect(k, fut.result())
    atomic_write_json(out / "synth.json", {
        "generator": "mmaffect.data.synthetic",  # the generator's stable name in the files (module moved to writers/)
        "version": SYNTH_VERSION,
        "mmaffect_version": __version__,
        "seed": seed,
        "parameters": {
            "n_train": n_train, "n_devel": n_devel, "n_test": n_test, "duration": float(duration),
            "width": width, "height": height, "fps": fps, "audio_sample_rate": AUDIO_SAMPLE_RATE,
            "label_rate": LABEL_RATE,
        },
        "layout": "AVEC 2017 SEWA: audio/*.wav video/*.avi labels/*.csv turns/*.csv transcriptions/*.csv",
        "note": "Test sessions carry labels here; the real SEWA test labels were withheld.",
        "sessions": meta_sessions,
    })
    total = sum(p.stat().st_size for s in sessions for p in s.files.values()) + (out / "synth.json").stat().st_size
    return SynthReport(root=out, seed=seed, sessions=tuple(sessions), seconds=time.perf_counter() - t0, bytes=total)


def read_synth_meta(root: Path) -> dict:
    """The ``synth.json`` of a synthetic corpus (raises FileNotFoundError when absent)."""
    return json.loads((Path(root) / "synth.json").read_text(encoding="utf-8"))
