"""Speech activity per 100 ms frame: who is heard, and when nobody is.

A frame where nobody speaks carries no vocal affect: fed to the audio network
as if it were speech, digital silence or room noise gets confident arousal
out of nothing. :func:`speech_frames` therefore decides, per label frame,
whether speech is heard; ``prepare`` and ``predict`` mask the audio of the
other frames exactly as a frame without a face is masked (never fed as
speech), and count them.

Methods (``audio.vad`` in ``configs/prepare.yaml``):

* ``silero`` — the Silero VAD network (silero-vad, MIT; its weights ship in
  the wheel, nothing is downloaded), on the recording resampled to 16 kHz,
  with its own hysteresis and minimum durations
  (``silero_vad.get_speech_timestamps``); ``audio.vad_threshold`` is its
  speech-probability threshold. The ONNX export of the same network runs
  when onnxruntime is installed (same segments; its session is run directly,
  which is about 1.4x faster here than the wrapper),
  else the TorchScript one on one thread.
* ``energy`` — a frame is speech when its RMS level is above ``audio.vad_db``
  dBFS (after loudness normalisation): fast, no model, but any loud noise
  counts as speech.
* ``none`` — every frame counts as speech (the paper's behaviour).

A frame counts as speech when at least half of it lies inside a speech
segment. Long recordings are processed in blocks of :data:`BLOCK_SECONDS`,
so memory stays flat in the recording's length.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from mmaffect.errors import ConfigError

__all__ = ["METHODS", "BLOCK_SECONDS", "VAD_RATE", "silero_segments", "segments_to_frames", "energy_frames",
           "speech_frames"]

METHODS = ("silero", "energy", "none")
VAD_RATE = 16000
"""Sample rate Silero VAD runs at."""
BLOCK_SECONDS = 600.0
"""Audio handed to the detector at once (its state restarts at each block)."""
_WINDOW, _CONTEXT = 512, 64  # Silero's window and context at 16 kHz (samples)


@functools.lru_cache(maxsize=1)
def _silero() -> Any:
    """The silero_vad module. Importing it sets torch to one thread for the whole process (its
    ``model.py`` calls ``torch.set_num_threads(1)``): the caller's setting is put back, or every
    network run after the speech detector (the models of ``predict``) would run on one core."""
    import torch

    threads = torch.get_num_threads()
    try:
        import silero_vad
        import silero_vad.utils_vad
    finally:
        torch.set_num_threads(threads)
    return silero_vad


@functools.lru_cache(maxsize=1)
def _silero_model() -> object:
    load_silero_vad = _silero().load_silero_vad

    try:
        import onnxruntime  # noqa: F401  (the ONNX model needs it)

        return load_silero_vad(onnx=True)
    except ImportError:
        return load_silero_vad()


def _onnx_probs(model: object, x16: np.ndarray) -> list[float]:
    """Speech probability of every 512-sample window of ``x16``, from the ONNX Silero model's session.

    The same computation as ``OnnxWrapper.__call__`` (64 samples of context
    before each window, the recurrent state carried, the last window zero
    padded), without its per-window torch conversions (a third of the time here).
    """
    session = model.session  # type: ignore[attr-defined]
    n = len(x16)
    n_win = -(-n // _WINDOW)
    padded = np.zeros(n_win * _WINDOW + _CONTEXT, np.float32)
    padded[_CONTEXT:_CONTEXT + n] = x16  # the wrapper's zero context before the first window
    state = np.zeros((2, 1, 128), np.float32)
    sr = np.array(VAD_RATE, dtype=np.int64)
    probs = []
    for i in range(n_win):
        window = padded[None, i * _WINDOW:(i + 1) * _WINDOW + _CONTEXT]
        out, state = session.run(None, {"input": window, "state": state, "sr": sr})
        probs.append(float(out.reshape(-1)[0]))
    return probs


def _segments_16k(x16: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    import torch

    silero_vad = _silero()
    model = _silero_model()
    x16 = np.ascontiguousarray(x16, np.float32)
    from_probs = getattr(silero_vad.utils_vad, "get_speech_timestamps_from_probs", None)
    if hasattr(model, "session") and from_probs is not None:
        stamps = from_probs(_onnx_probs(model, x16), sampling_rate=VAD_RATE, threshold=threshold,
                            audio_length_samples=len(x16))
        return [(int(s["start"]), int(s["end"])) for s in stamps]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a recurrent model on 512-sample windows: more threads only add overhead
    try:
        stamps = silero_vad.get_speech_timestamps(torch.from_numpy(x16), model, threshold=threshold,
                                                  sampling_rate=VAD_RATE)
    finally:
        torch.set_num_threads(threads)
    return [(int(s["start"]), int(s["end"])) for s in stamps]


def silero_segments(blocks: Iterable[np.ndarray], *, sample_rate: int, threshold: float = 0.5) -> list[tuple[float, float]]:
    """Speech segments ``(start, end)`` in seconds of the recording fed as consecutive ``blocks``.

    ``blocks``: mono float32 arrays at ``sample_rate`` Hz, in order (one
    array for a whole recording, or reads of a file).
    """
    import soxr

    if not 0.0 < threshold < 1.0:
        raise ConfigError(f"audio.vad_threshold must lie in (0, 1), got {threshold}")
    block_len = int(BLOCK_SECONDS * sample_rate)
    resampler = None if sample_rate == VAD_RATE else soxr.ResampleStream(sample_rate, VAD_RATE, 1, dtype="float32")
    out: list[tuple[float, float]] = []
    pending: list[np.ndarray] = []
    n_pending = 0
    offset = 0  # 16 kHz samples already handed to the detector

    def run(x16: np.ndarray) -> None:
        nonlocal offset
        if len(x16):
            out.extend(((offset + s) / VAD_RATE, (offset + e) / VAD_RATE) for s, e in _segments_16k(x16, threshold))
            offset += len(x16)

    def flush(last: bool) -> None:
        nonlocal pending, n_pending
        x = np.concatenate(pending) if pending else np.zeros(0, np.float32)
        pending, n_pending = [], 0
        run(x if resampler is None else resampler.resample_chunk(x, last=last))

    for block in blocks:
        b = np.asarray(block, np.float32).reshape(-1)
        pending.append(b)
        n_pending += len(b)
        if n_pending >= block_len:
            flush(last=False)
    flush(last=True)
    return out


def segments_to_frames(times: Sequence[float] | np.ndarray, segments: Sequence[tuple[float, float]], *,
                       frame_seconds: float = 0.1) -> np.ndarray:
    """(T,) bool: at least half of the frame ``[t, t + frame_seconds)`` lies inside the segments.

    >>> segments_to_frames([0.0, 0.1, 0.2, 0.3], [(0.04, 0.26)]).tolist()
    [True, True, True, False]
    """
    t = np.asarray(times, np.float64).reshape(-1)
    covered = np.zeros(len(t))
    for start, end in segments:
        covered += np.clip(np.minimum(t + frame_seconds, end) - np.maximum(t, start), 0.0, None)
    return covered >= 0.5 * frame_seconds - 1e-9


def energy_frames(frames: np.ndarray, *, vad_db: float) -> np.ndarray:
    """(T,) bool: the RMS level of each (T, F) float frame is above ``vad_db`` dBFS.

    >>> energy_frames(np.array([[0.0, 0.0], [0.1, -0.1]]), vad_db=-40.0).tolist()
    [False, True]
    """
    rms = np.sqrt(np.mean(np.asarray(frames, np.float64) ** 2, axis=1))
    return 20 * np.log10(np.maximum(rms, 1e-10)) > vad_db


def speech_frames(method: str, *, times: np.ndarray, frames: np.ndarray | None = None,
                  blocks: Iterable[np.ndarray] | None = None, sample_rate: int, vad_db: float = -40.0,
                  threshold: float = 0.5) -> np.ndarray:
    """(T,) bool speech activity of the frames starting at ``times`` by ``method`` (:data:`METHODS`).

    ``silero`` reads the whole recording from ``blocks``; ``energy`` reads
    the (T, F) float ``frames``; ``none`` reads nothing.
    """
    if method == "none":
        return np.ones(len(times), bool)
    if method == "energy":
        if frames is None:
            raise ValueError("the energy rule needs the frames")
        return energy_frames(frames, vad_db=vad_db)
    if method == "silero":
        if blocks is None:
            raise ValueError("silero needs the recording's blocks")
        return segments_to_frames(times, silero_segments(blocks, sample_rate=sample_rate, threshold=threshold))
    raise ConfigError(f"audio.vad must be one of {', '.join(METHODS)}; got {method!r}")
