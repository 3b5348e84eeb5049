"""Audio frames as the cache stores them: int16 PCM, and the interlocutor vector built from them.

The cache keeps each 10 Hz frame's samples as int16 (:func:`to_pcm16`; back
with :func:`from_pcm16`); the paper's 4,410-sample *interlocutor vector* is
built at load time (:func:`interlocutor_vector`, used by
:func:`mmaffect.data.dataset.frames_to_item`). These conversions are part of
the cache format, so they live in the data layer; :mod:`mmaffect.preprocess.audio`,
which writes the frames, re-exports them.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

__all__ = ["PCM_SCALE", "interlocutor_vector", "to_pcm16", "from_pcm16"]

PCM_SCALE = 32768.0
"""The one int16 scale of the cache, ``prepare``, ``predict`` and the models: float = int16 / 32768
(as soundfile and most audio libraries read 16-bit PCM), float → int16 rounds ×32768, clipped."""

_A = TypeVar("_A")


def interlocutor_vector(frames: _A, target: Any) -> _A:
    """The paper's interlocutor vector: (..., T, F) frames → (..., T, 2F).

    Frames where ``target`` is True go to the first half, all other frames
    (partner speech and silence) to the second half; the other half is
    zeros. Works for numpy arrays and torch tensors (same type, dtype and
    device as ``frames``).

    >>> interlocutor_vector(np.array([[1, 2], [3, 4]]), np.array([True, False])).tolist()
    [[1, 2, 0, 0], [0, 0, 3, 4]]
    """
    if isinstance(frames, np.ndarray):
        sel = np.asarray(target, dtype=bool)[..., None]
        zero = np.zeros((), frames.dtype)
        return np.concatenate([np.where(sel, frames, zero), np.where(sel, zero, frames)], axis=-1)
    import torch

    if isinstance(frames, torch.Tensor):
        sel = torch.as_tensor(target, dtype=torch.bool, device=frames.device).unsqueeze(-1)
        zero = torch.zeros((), dtype=frames.dtype, device=frames.device)
        return torch.cat([torch.where(sel, frames, zero), torch.where(sel, zero, frames)], dim=-1)
    raise TypeError(f"frames must be a numpy array or torch tensor, got {type(frames).__name__}")


def to_pcm16(frames: np.ndarray) -> np.ndarray:
    """float samples in [-1, 1] → int16 (× :data:`PCM_SCALE`, rounded, clipped to the int16 range).

    >>> to_pcm16(np.array([-1.0, 0.0, 0.5, 1.0, 2.0])).tolist()
    [-32768, 0, 16384, 32767, 32767]
    """
    x = np.asarray(frames, dtype=np.float32)
    return np.clip(np.rint(x * np.float32(PCM_SCALE)), -32768, 32767).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
    """int16 samples → float32 in [-1, 1) (÷ :data:`PCM_SCALE`); the inverse of :func:`to_pcm16` in range.

    >>> from_pcm16(np.array([-32768, 0, 16384, 32767], np.int16)).tolist()
    [-1.0, 0.0, 0.5, 0.999969482421875]
    >>> x = np.array([-0.25, 0.0, 0.125], np.float32)
    >>> bool((from_pcm16(to_pcm16(x)) == x).all())
    True
    """
    return np.asarray(pcm).astype(np.float32) / np.float32(PCM_SCALE)
