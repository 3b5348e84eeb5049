"""Loudness normalisation of whole recordings (ITU-R BS.1770-4 integrated loudness).

A microphone's gain and a speaker's distance change a recording's level by
tens of decibels; a network trained on one corpus's level then reads the
level as affect. Each recording is therefore scaled, before it is framed, so
that its integrated, gated loudness is ``target`` LUFS (``audio.loudness`` in
``configs/prepare.yaml``; −23 LUFS, EBU R 128). One gain for the whole
recording keeps the loudness *contrasts* within it (a shout stays louder than
a murmur), which carry arousal.

The measurement is BS.1770-4 as implemented by pyloudnorm — its K-weighting
filters (``pyloudnorm.IIRfilter``), 400 ms blocks with 75 % overlap, the
−70 LUFS absolute and −10 LU relative gates — computed from running filter
state over blocks of any size, so an hour-long recording is measured from a
file with flat memory (:class:`LoudnessMeter`). Mono: channel weight 1.

    loudness = −0.691 + 10 · log10(mean over gated blocks of mean(k²))

Silence (no block above −70 LUFS) has no loudness: the gain is 0 dB.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy.signal import lfilter

__all__ = ["LoudnessMeter", "integrated_loudness", "normalisation_gain_db", "MAX_GAIN_DB"]

MAX_GAIN_DB = 40.0
"""Largest gain (either way) normalisation applies: beyond it the recording is noise or a fault."""

_BLOCK_STEP = 0.1  # s: 400 ms blocks with 75 % overlap = mean of four 100 ms sub-blocks
_ABS_GATE = -70.0
_REL_GATE = -10.0


def _k_weighting(sample_rate: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two K-weighting stages of BS.1770 at ``sample_rate`` (pyloudnorm's filter design)."""
    from pyloudnorm import IIRfilter

    stages = [IIRfilter(4.0, 1 / math.sqrt(2), 1500.0, sample_rate, "high_shelf"),
              IIRfilter(0.0, 0.5, 38.0, sample_rate, "high_pass")]
    return [(np.asarray(s.b, np.float64), np.asarray(s.a, np.float64)) for s in stages]


class LoudnessMeter:
    """Integrated loudness of a mono signal fed in blocks of any length.

    >>> rng = np.random.default_rng(0)
    >>> x = 0.1 * rng.standard_normal(44100).astype(np.float32)
    >>> m = LoudnessMeter(sample_rate=22050)
    >>> for block in (x[:1000], x[1000:30000], x[30000:]):
    ...     m.add(block)
    >>> round(m.loudness(), 1) == round(integrated_loudness(x, sample_rate=22050), 1)
    True
    """

    def __init__(self, *, sample_rate: int) -> None:
        self.sample_rate = int(sample_rate)
        self._stages = _k_weighting(self.sample_rate)
        self._zi = [np.zeros(max(len(a), len(b)) - 1) for b, a in self._stages]
        self._sub = self.sample_rate * _BLOCK_STEP
        self._carry = np.zeros(0, np.float64)  # filtered samples not yet in a full sub-block
        self._energies: list[np.ndarray] = []  # mean square of each 100 ms sub-block

    def add(self, block: np.ndarray) -> None:
        """Feed the next samples (float, [-1, 1])."""
        y = np.asarray(block, np.float64).reshape(-1)
        for k, (b, a) in enumerate(self._stages):
            y, self._zi[k] = lfilter(b, a, y, zi=self._zi[k])
        y = np.concatenate([self._carry, y])
        n = int(len(y) // self._sub)
        if abs(self._sub - round(self._sub)) > 1e-9:  # rates that are not a multiple of 10 Hz
            edges = np.round(np.arange(n + 1) * self._sub).astype(np.int64)
            self._energies.append(np.array([np.mean(y[edges[i]:edges[i + 1]] ** 2) for i in range(n)]))
            self._carry = y[edges[-1]:]
            return
        sub = int(round(self._sub))
        if n:
            self._energies.append(np.mean(y[: n * sub].reshape(n, sub) ** 2, axis=1))
        self._carry = y[n * sub:]

    def loudness(self) -> float:
        """Integrated loudness in LUFS; ``-inf`` when nothing passes the −70 LUFS gate (silence, < 0.4 s)."""
        if not self._energies:
            return -math.inf
        e = np.concatenate(self._energies)
        if len(e) < 4:
            return -math.inf
        z = np.convolve(e, np.ones(4) / 4, mode="valid")  # 400 ms blocks every 100 ms
        with np.errstate(divide="ignore"):
            lk = -0.691 + 10 * np.log10(z)
        gated = z[lk >= _ABS_GATE]
        if gated.size == 0:
            return -math.inf
        rel = -0.691 + 10 * np.log10(gated.mean()) + _REL_GATE
        gated = z[(lk >= _ABS_GATE) & (lk >= rel)]
        return float(-0.691 + 10 * np.log10(gated.mean()))


def integrated_loudness(signal: np.ndarray, *, sample_rate: int) -> float:
    """BS.1770-4 integrated loudness (LUFS) of a mono signal; ``-inf`` for silence.

    >>> t = np.arange(22050 * 2) / 22050
    >>> round(integrated_loudness(0.5 * np.sin(2 * np.pi * 1000 * t), sample_rate=22050), 1)
    -9.1
    """
    meter = LoudnessMeter(sample_rate=sample_rate)
    meter.add(signal)
    return meter.loudness()


def normalisation_gain_db(blocks: Iterable[np.ndarray], *, sample_rate: int, target: float | None) -> tuple[float, float]:
    """``(gain_db, measured_lufs)`` that brings the recording in ``blocks`` to ``target`` LUFS.

    ``target=None`` (normalisation off) gives 0 dB and does not read the
    blocks. Silence gives 0 dB; the gain is limited to ±:data:`MAX_GAIN_DB`.

    >>> x = 0.01 * np.sin(np.arange(22050) * 0.3)
    >>> gain, lufs = normalisation_gain_db([x], sample_rate=22050, target=-23.0)
    >>> round(lufs + gain, 6)
    -23.0
    >>> normalisation_gain_db([np.zeros(22050)], sample_rate=22050, target=-23.0)
    (0.0, -inf)
    """
    if target is None:
        return 0.0, math.nan
    meter = LoudnessMeter(sample_rate=sample_rate)
    for block in blocks:
        meter.add(block)
    lufs = meter.loudness()
    if not math.isfinite(lufs):
        return 0.0, lufs
    return float(np.clip(target - lufs, -MAX_GAIN_DB, MAX_GAIN_DB)), lufs
