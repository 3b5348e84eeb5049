"""Audio loading, 10 Hz framing, target-speaker frames and the interlocutor vector.

Conventions (see :mod:`mmaffect.data.session` and ``docs/architecture.md``):
the waveform is mono float32 in [-1, 1] at 22,050 Hz; the audio frame of the
label at time ``t`` is the ``frame_samples`` (2,205) samples starting at
sample ``round(t * sample_rate)`` — the interval ``[t, t + 0.1 s)``, not
centred. The cache stores frames as int16 PCM (:func:`to_pcm16`); the
4,410-sample *interlocutor vector* of the paper is built at load time by
:func:`interlocutor_vector`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import soundfile as sf
import soxr

from mmaffect.data.pcm import from_pcm16, interlocutor_vector, to_pcm16  # the cache format; re-exported
from mmaffect.errors import DataError

__all__ = [
    "SOUNDFILE_SUFFIXES",
    "load_audio",
    "decode_audio_to_file",
    "check_frames_covered",
    "frame_audio",
    "target_frames",
    "interlocutor_vector",
    "to_pcm16",
    "from_pcm16",
    "apply_gain",
]

SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff"})
"""Files read with soundfile (libsndfile); any other file goes through PyAV/FFmpeg."""


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"cannot decode audio (corrupt or unsupported): {exc}", path=path) from exc
    return data.mean(axis=1, dtype=np.float32), int(rate)


def _read_pyav(path: Path) -> tuple[np.ndarray, int]:
    chunks: list[np.ndarray] = []
    rate = 0
    for x, rate in _blocks_pyav(path):
        chunks.append(x)
    if not chunks:
        return np.zeros(0, np.float32), rate
    return np.concatenate(chunks), rate


def load_audio(path: str | Path, *, sample_rate: int = 22050) -> np.ndarray:
    """Load a recording as mono float32 in [-1, 1] at ``sample_rate`` Hz.

    wav/flac/ogg/aiff files are read with soundfile; any other file (mp4,
    avi, mkv, mov, webm, mp3, ...) with PyAV, using its first audio stream —
    the audio track of a video. Channels are averaged; resampling uses soxr
    ('VHQ'); the result is clipped to [-1, 1] (resampling can overshoot).

    Raises:
        DataError: the file is missing, empty (0 bytes or 0 samples),
            corrupt or undecodable, or a video without an audio stream.
    """
    path = Path(path)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not path.exists():
        raise DataError("audio file not found", path=path)
    if not path.is_file():
        raise DataError("audio path is not a file", path=path)
    if path.stat().st_size == 0:
        raise DataError("audio file is empty (0 bytes)", path=path)
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        signal, rate = _read_soundfile(path)
    else:
        signal, rate = _read_pyav(path)
    if signal.size == 0:
        raise DataError("audio holds no samples", path=path)
    if not np.all(np.isfinite(signal)):
        raise DataError("audio holds non-finite sample values (NaN or infinity)", path=path)
    if rate != sample_rate:
        signal = soxr.resample(signal, rate, sample_rate, quality="VHQ").astype(np.float32, copy=False)
    return np.clip(signal, -1.0, 1.0, out=signal)


def _blocks_soundfile(path: Path, block: int) -> Iterator[tuple[np.ndarray, int]]:
    try:
        info = sf.info(str(path))
        for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
            yield data.mean(axis=1, dtype=np.float32), int(info.samplerate)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise DataError(f"cannot decode audio (corrupt or unsupported): {exc}", path=path) from exc


def _blocks_pyav(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot open media file (corrupt or unsupported format): {exc}", path=path) from exc
    try:
        if not container.streams.audio:
            raise DataError("file has no audio stream", path=path)
        stream = container.streams.audio[0]
        resampler: av.AudioResampler | None = None
        rate = 0
        t_last = 0.0
        try:
            for frame in container.decode(stream):
                if resampler is None:
                    rate = int(frame.sample_rate)
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout, rate=rate)
                for out in resampler.resample(frame):
                    yield out.to_ndarray().mean(axis=0, dtype=np.float32), rate
                if frame.time is not None:
                    t_last = float(frame.time)
            if resampler is not None:
                for out in resampler.resample(None):
                    yield out.to_ndarray().mean(axis=0, dtype=np.float32), rate
        except av.FFmpegError as exc:
            raise DataError(f"audio stream is corrupt: {exc}", path=path, time=t_last) from exc
    finally:
        container.close()


def decode_audio_to_file(path: str | Path, dest: str | Path, *, sample_rate: int = 22050,
                         block: int = 1 << 16) -> int:
    """Decode ``path`` block by block into a mono float32 wav ``dest`` at ``sample_rate``.

    The streaming counterpart of :func:`load_audio` (same decoding, channel
    averaging, soxr 'VHQ' resampling and clipping; samples agree with it to
    within resampler rounding): memory stays flat however long the
    recording, so an hour-long video can be framed chunk by chunk with
    ``soundfile`` reads from ``dest``. ``dest`` is written under a temporary
    name and renamed. Returns the number of samples written.

    Raises:
        DataError: as :func:`load_audio` (missing, empty, corrupt file, no
            audio stream, no samples, non-finite values).
        OSError: (naming ``dest``) ``dest`` cannot be written (a full disk, an unwritable folder).
    """
    path = Path(path)
    if not path.exists():
        raise DataError("audio file not found", path=path)
    if not path.is_file() or path.stat().st_size == 0:
        raise DataError("audio file is empty (0 bytes) or not a file", path=path)
    blocks = (_blocks_soundfile(path, block) if path.suffix.lower() in SOUNDFILE_SUFFIXES
              else _blocks_pyav(path))
    try:
        return _decode_blocks(blocks, path, dest, sample_rate)
    except (RuntimeError, OSError) as exc:
        if isinstance(exc, OSError) and exc.filename is not None:
            raise
        from mmaffect.utils.io import write_error

        raise write_error(exc, dest, "cannot write the decoded audio") from None


def _decode_blocks(blocks: Iterator[tuple[np.ndarray, int]], path: Path, dest: str | Path, sample_rate: int) -> int:
    """The body of :func:`decode_audio_to_file`: resample and write the blocks; the number of samples."""
    from mmaffect.utils.io import atomic_path

    n = 0
    resampler: soxr.ResampleStream | None = None
    with atomic_path(dest) as tmp, sf.SoundFile(str(tmp), mode="w", samplerate=sample_rate, channels=1,
                                                subtype="FLOAT", format="WAV") as out:
        def write(x: np.ndarray) -> None:
            nonlocal n
            if x.size:
                out.write(np.clip(x, -1.0, 1.0).astype(np.float32, copy=False))
                n += len(x)

        for x, rate in blocks:
            if not np.all(np.isfinite(x)):
                raise DataError("audio holds non-finite sample values (NaN or infinity)", path=path)
            if rate == sample_rate:
                write(x)
                continue
            if resampler is None:
                resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="VHQ")
            write(resampler.resample_chunk(x))
        if resampler is not None:
            write(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
        if n == 0:
            raise DataError("audio holds no samples", path=path)
    return n


def check_frames_covered(times: np.ndarray, n_samples: int, *, sample_rate: int, frame_samples: int,
                         max_short: float, path: str | Path | None) -> None:
    """Refuse frame times that are negative or not finite, or a recording of ``n_samples`` that ends more
    than ``max_short`` seconds before the last frame ends (the rule of :func:`frame_audio` and of the
    streaming reader :class:`mmaffect.preprocess.stream.AudioFrames`)."""
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if len(t) == 0:
        return
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        k = int(np.argmax(bad))
        raise DataError(f"frame time {t[k]} is negative or not finite (frame {k})", path=path)
    need = int(np.round(t.max() * sample_rate)) + frame_samples
    short = (need - n_samples) / sample_rate
    if short > max_short + 1e-9:
        raise DataError(
            f"audio shorter than the labels: the audio lasts {n_samples / sample_rate:.3f} s but the "
            f"frames span {t.min():.3f}–{need / sample_rate:.3f} s "
            f"({short:.3f} s missing, at most {max_short:g} s is allowed and masked)",
            path=path,
            time=n_samples / sample_rate,
        )


def frame_audio(
    signal: np.ndarray,
    times: Sequence[float] | np.ndarray,
    *,
    sample_rate: int,
    frame_samples: int,
    max_short: float = 0.1,
    path: str | Path | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the frames ``signal[round(t * sample_rate) : ... + frame_samples]``.

    Returns ``(frames, valid)``: (T, frame_samples) float32 and (T,) bool.
    When the recording ends at most ``max_short`` seconds before the end of
    the last frame, the frames it does not fully cover keep their recorded
    samples, are zero-padded, and are marked invalid (``valid`` False).

    >>> f, ok = frame_audio(np.ones(25, np.float32), [0.0, 0.1, 0.2], sample_rate=100, frame_samples=10)
    >>> f.shape, ok.tolist(), f[2].tolist()[4:6]
    ((3, 10), [True, True, False], [1.0, 0.0])

    Raises:
        DataError: (naming ``path``) the audio ends more than ``max_short``
            seconds before the last frame ends ("audio shorter than the
            labels"), or a time is negative or not finite.
    """
    x = np.asarray(signal, dtype=np.float32).reshape(-1)
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    T = len(t)
    if T == 0:
        return np.zeros((0, frame_samples), np.float32), np.zeros(0, bool)
    check_frames_covered(t, len(x), sample_rate=sample_rate, frame_samples=frame_samples, max_short=max_short,
                         path=path)
    starts = np.round(t * sample_rate).astype(np.int64)
    ends = starts + frame_samples
    n = len(x)
    need = int(ends.max())
    if need > n:
        x = np.concatenate([x, np.zeros(need - n, np.float32)])
    windows = np.lib.stride_tricks.sliding_window_view(x, frame_samples)
    frames = np.ascontiguousarray(windows[starts])
    return frames, ends <= n


def _round_half_up(x: float, step: float) -> int:
    """``x / step`` rounded to the nearest integer, halves up (tolerant to float error)."""
    return int(math.floor(x / step + 0.5 + 1e-9))


def target_frames(
    times: Sequence[float] | np.ndarray,
    turns: Iterable[Any] | None,
    *,
    rounding: float = 0.1,
) -> np.ndarray:
    """(T,) bool: does the target speak in the frame starting at ``times[i]``?

    Each turn's start and end are rounded to the ``rounding`` grid (halves
    round up); a frame is a target frame when its time lies in
    ``[start, end]`` — the end frame is included (as in the authors' code).
    Turns are :class:`~mmaffect.data.session.Turn` objects (``.start``,
    ``.end``) or ``(start, end)`` pairs. ``turns=None`` (unknown) means the
    target speaks throughout.

    >>> target_frames([0.0, 0.1, 0.2, 0.3, 0.4], [(0.06, 0.24)]).tolist()
    [False, True, True, False, False]
    """
    t = np.asarray(times, dtype=np.float64).reshape(-1)
    if turns is None:
        return np.ones(len(t), bool)
    if rounding <= 0:
        raise ValueError(f"rounding must be positive, got {rounding}")
    out = np.zeros(len(t), bool)
    tol = 1e-6 * rounding
    for turn in turns:
        start, end = (turn.start, turn.end) if hasattr(turn, "start") else turn
        if not (math.isfinite(start) and math.isfinite(end)) or end < start:
            raise DataError(f"invalid turn {start}–{end} (end before start or not finite)")
        lo = _round_half_up(start, rounding) * rounding
        hi = _round_half_up(end, rounding) * rounding
        out |= (t >= lo - tol) & (t <= hi + tol)
    return out


def apply_gain(signal: np.ndarray, gain_db: float) -> np.ndarray:
    """``signal`` × 10^(gain_db / 20) as float32, clipped to [-1, 1] (a copy; 0 dB returns it as float32).

    >>> [round(float(v), 3) for v in apply_gain(np.array([0.1, -0.8]), 6.0206)]
    [0.2, -1.0]
    """
    x = np.asarray(signal, dtype=np.float32)
    if gain_db == 0.0:
        return x
    return np.clip(x * np.float32(10.0 ** (gain_db / 20.0)), -1.0, 1.0)
