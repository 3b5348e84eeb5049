"""Training-time audio augmentation: the microphones, rooms, levels and codecs of real recordings.

A network trained on one studio corpus reads its level and channel as
affect. During training, each window of cached audio (the frames of a
training sequence are contiguous, so they concatenate to the window's
waveform) goes through a random recording chain, in the order sound meets
it (config ``augment.audio`` in ``configs/train.yaml``; each step has its
own probability):

1. **room** — convolution with a synthetic room impulse response (a direct
   path plus exponentially decaying noise, RT60 drawn from ``rt60``);
2. **noise** — coloured noise at an SNR drawn from ``snr_db``
   (audiomentations ``AddColorNoise``);
3. **microphone** — a random seven-band equaliser (±``eq_db``;
   audiomentations ``SevenBandParametricEQ``) and a gain of ±``gain_db``
   (audiomentations ``Gain``);
4. **band limit** — resampling down to a rate drawn from ``rates`` and back
   (soxr): telephone 8 kHz to studio 48 kHz;
5. **telephone** — a phone call's channel (:func:`telephone`): 8 kHz,
   the 300–3400 Hz voice band, G.711 µ-law (``p_phone``, off by default);
6. **codec** — AAC or MP3 at a bit rate drawn from ``bitrates`` kbit/s,
   encoded and decoded by FFmpeg through PyAV, its delay removed.

The result is clipped to [-1, 1]. Speech activity and masks are those of the
clean recording (a noisy copy of a speech frame is still speech). Draws come
from a generator seeded by (run seed, epoch, item), so a run is
reproducible. audiomentations draws from NumPy's global generator, which is
therefore seeded from the same generator before each call.

Loudness normalisation (``audio.loudness``, preprocessing) already removes a
recording's overall gain at inference; ``gain_db`` covers what normalisation
leaves (a loudness estimate off by some decibels on noisy or short
recordings) and level changes within a recording.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmaffect.errors import ConfigError

__all__ = ["AudioAugmentConfig", "AudioAugment", "encode_decode"]

_CODECS = {"aac": ("adts", "aac"), "mp3": ("mp3", "libmp3lame")}


def _pair(value: Any, key: str) -> tuple[float, float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise ConfigError(f"augment.audio.{key} must be a [low, high] pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if lo > hi:
        raise ConfigError(f"augment.audio.{key}: low {lo} is above high {hi}")
    return lo, hi


def _prob(value: Any, key: str) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"augment.audio.{key} must be a probability in [0, 1], got {value!r}")
    return float(value)


def _flag(value: Any, key: str) -> bool:
    """``value`` if it is a YAML boolean (true/false)."""
    if not isinstance(value, bool):
        raise ConfigError(f"augment.audio.{key} must be true or false, got {value!r}")
    return value


def _decibels(value: Any, key: str) -> float:
    """``value`` as a non-negative number of decibels."""
    if not isinstance(value, (int, float)) or value < 0:
        raise ConfigError(f"augment.audio.{key} must be a non-negative number of dB, got {value!r}")
    return float(value)


def _codecs(value: Any, key: str) -> tuple[str, ...]:
    """``value`` (one codec name or a list of them) as a non-empty tuple of known codecs."""
    codecs = tuple(value) if isinstance(value, (list, tuple)) else (value,)
    bad = [c for c in codecs if c not in _CODECS]
    if bad or not codecs:
        raise ConfigError(f"augment.audio.{key}: choose from {', '.join(_CODECS)}, got {value!r}")
    return codecs


# The check of each key of ``augment.audio``: it raises ConfigError naming the key, or returns the value to use.
_CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "enabled": _flag,
    "p_room": _prob, "rt60": _pair,
    "p_noise": _prob, "snr_db": _pair,
    "p_eq": _prob, "eq_db": _decibels,
    "p_gain": _prob, "gain_db": _decibels,
    "p_band": _prob, "rates": _pair, "p_phone": _prob,
    "p_codec": _prob, "codecs": _codecs, "bitrates": _pair,
}


@dataclass(frozen=True, kw_only=True)
class AudioAugmentConfig:
    """The ``augment.audio`` section, checked (see the module docstring for each step)."""

    enabled: bool = False
    p_room: float = 0.3
    rt60: tuple[float, float] = (0.15, 0.7)
    p_noise: float = 0.5
    snr_db: tuple[float, float] = (10.0, 30.0)
    p_eq: float = 0.5
    eq_db: float = 6.0
    p_gain: float = 0.5
    gain_db: float = 6.0
    p_band: float = 0.3
    rates: tuple[float, float] = (8000.0, 48000.0)
    p_phone: float = 0.0
    p_codec: float = 0.3
    codecs: tuple[str, ...] = ("aac", "mp3")
    bitrates: tuple[float, float] = (32.0, 128.0)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> AudioAugmentConfig:
        cfg = dict(cfg or {})
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(cfg) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) augment.audio.{unknown[0]} (known: {', '.join(sorted(known))})")
        out = {key: _CHECKS[key](value, key) for key, value in cfg.items()}
        self = cls(**out)
        if self.rt60[0] <= 0 or self.rates[0] < 4000 or self.bitrates[0] < 8:
            raise ConfigError("augment.audio: rt60 must be > 0 s, rates ≥ 4000 Hz, bitrates ≥ 8 kbit/s")
        return self


def _room_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic impulse response: direct path, then noise decaying 60 dB over ``rt60`` seconds."""
    n = max(2, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60)  # ln(1000) = 60 dB of amplitude decay
    tail[: int(0.002 * sample_rate)] = 0.0  # early reflections start after ~2 ms
    ir = 0.3 * tail / max(np.sqrt(np.sum(tail ** 2)), 1e-9)
    ir[0] = 1.0
    return ir / np.sqrt(np.sum(ir ** 2))


def telephone(wave: np.ndarray, *, sample_rate: int) -> np.ndarray:
    """``wave`` through a phone call's channel and back at ``sample_rate``: resampled to 8 kHz, the
    300–3400 Hz voice band (4th-order Butterworth band-pass, ITU-T G.712's band), 8-bit G.711 µ-law
    (µ = 255), same length.

    >>> x = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32) * 0.5
    >>> y = telephone(x, sample_rate=16000)
    >>> y.shape, round(float(np.corrcoef(x[2000:-2000], y[2000:-2000])[0, 1]), 2)
    ((16000,), 1.0)
    """
    import soxr
    from scipy.signal import butter, sosfiltfilt

    x = soxr.resample(np.asarray(wave, np.float32), sample_rate, 8000)
    x = sosfiltfilt(butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos"), x)  # zero phase
    mu = 255.0
    x = np.clip(x, -1.0, 1.0)
    code = np.round(np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) * 127.0) / 127.0  # 8 bits
    x = np.sign(code) * np.expm1(np.abs(code) * np.log1p(mu)) / mu
    y = soxr.resample(x.astype(np.float32), 8000, sample_rate)[: len(wave)]
    if len(y) < len(wave):
        y = np.concatenate([y, np.zeros(len(wave) - len(y), np.float32)])
    return y.astype(np.float32, copy=False)


def encode_decode(wave: np.ndarray, *, sample_rate: int, codec: str, kbps: float) -> np.ndarray:
    """``wave`` through a lossy codec (``aac`` or ``mp3``) and back, same length, aligned.

    The codec's delay (priming samples) is found by cross-correlation with
    the input and removed, so frames stay on their labels.
    """
    import av

    fmt, encoder = _CODECS[codec]
    x = np.ascontiguousarray(wave, np.float32)
    buf = io.BytesIO()
    with av.open(buf, "w", format=fmt) as out:
        stream = out.add_stream(encoder, rate=sample_rate, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        to_codec = av.AudioResampler(format=stream.codec_context.format.name, layout="mono", rate=sample_rate)
        frame = av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = 0
        for resampled in to_codec.resample(frame):
            out.mux(stream.encode(resampled))
        out.mux(stream.encode(None))
    buf.seek(0)
    chunks = []
    with av.open(buf, "r", format=fmt) as inp:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in inp.decode(audio=0):
            for r in resampler.resample(frame):
                chunks.append(r.to_ndarray().reshape(-1))
    y = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    # delay: the lag (0..4096 samples) at which the output best matches the input
    max_lag = 4096
    probe = x[: min(len(x), 2 * sample_rate)]
    if len(y) >= len(probe) + max_lag and np.any(probe):
        from scipy.signal import correlate

        lag = int(np.argmax(correlate(y[: len(probe) + max_lag], probe, mode="valid", method="fft")))
    else:
        lag = 0
    y = y[lag:lag + len(x)]
    if len(y) < len(x):
        y = np.concatenate([y, np.zeros(len(x) - len(y), np.float32)])
    return y.astype(np.float32, copy=False)


_EQ_MIN_RATE = 19_000  # twice the top centre frequency of audiomentations' seven-band EQ (9,486 Hz)


class AudioAugment:
    """The random recording chain of the module docstring, for one window's waveform."""

    def __init__(self, *, config: AudioAugmentConfig, sample_rate: int) -> None:
        from audiomentations import AddColorNoise, Gain, SevenBandParametricEQ

        self.config = config
        self.sample_rate = int(sample_rate)
        c = config
        if c.p_eq > 0 and self.sample_rate < _EQ_MIN_RATE:
            # its top bands reach 9.5 kHz: above the Nyquist frequency the filters blow up to inf/NaN
            raise ConfigError(f"augment.audio.p_eq needs audio at ≥ {_EQ_MIN_RATE} Hz (the EQ's bands reach "
                              f"9.5 kHz); this cache has {self.sample_rate} Hz: set augment.audio.p_eq=0")
        self._noise = AddColorNoise(min_snr_db=c.snr_db[0], max_snr_db=c.snr_db[1], p=1.0)
        self._eq = SevenBandParametricEQ(min_gain_db=-c.eq_db, max_gain_db=c.eq_db, p=1.0)
        self._gain = Gain(min_gain_db=-c.gain_db, max_gain_db=c.gain_db, p=1.0)

    def __call__(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A new float32 waveform (same length) of ``wave`` (float, [-1, 1]) through a random chain."""
        import soxr
        from scipy.signal import fftconvolve

        c, sr = self.config, self.sample_rate
        x = np.asarray(wave, np.float32).copy()
        if not np.any(x):
            return x  # digital silence stays silence (and is masked anyway)
        seed = int(rng.integers(2 ** 31))  # audiomentations draws from the global generators
        np.random.seed(seed)
        random.seed(seed)
        if rng.random() < c.p_room:
            ir = _room_response(float(rng.uniform(*c.rt60)), sr, rng)
            x = fftconvolve(x, ir)[: len(x)].astype(np.float32)
        if rng.random() < c.p_noise:
            x = self._noise(x, sample_rate=sr)
        if rng.random() < c.p_eq:
            x = self._eq(x, sample_rate=sr)
        if rng.random() < c.p_gain:
            x = self._gain(x, sample_rate=sr)
        if rng.random() < c.p_band:
            rate = int(rng.uniform(*c.rates))
            if rate < sr:
                x = soxr.resample(soxr.resample(x, sr, rate), rate, sr)[: len(wave)].astype(np.float32)
        if c.p_phone > 0 and rng.random() < c.p_phone:  # no draw when off: older runs' draws stay the same
            x = telephone(x, sample_rate=sr)
        if rng.random() < c.p_codec:
            codec = str(rng.choice(list(c.codecs)))
            x = encode_decode(np.clip(x, -1, 1), sample_rate=sr, codec=codec, kbps=float(rng.uniform(*c.bitrates)))
        if len(x) < len(wave):
            x = np.concatenate([x, np.zeros(len(wave) - len(x), np.float32)])
        return np.clip(x[: len(wave)], -1.0, 1.0).astype(np.float32, copy=False)
