"""Attention of a model over a whole recording: what the figures of Section 5.10 draw.

* :func:`collect_attention` runs a model over one recording (eval mode, no
  gradients, optionally in chunks carrying the LSTM state) and returns its
  predictions and attention maps as numpy arrays, time first;
* :func:`session_attention` runs a training checkpoint over a whole cached
  recording and returns a :class:`SessionAttention` (``mmaffect viz
  attention``);
* :class:`SessionAttention` is what :func:`mmaffect.viz.report.write_session_figures`
  draws; :meth:`mmaffect.inference.predictor.Prediction.save` builds one from a
  prediction on a new recording;
* :func:`frame_words` lists the words of every frame.

This is inference (a checkpoint run over a recording), so it lives below the
viz layer, which draws the result from plain arrays; :mod:`mmaffect.viz.attention`
re-exports these names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmaffect.data.dataset import REFERENCE_KEYS
from mmaffect.errors import ConfigError, DataError

__all__ = ["collect_attention", "SessionAttention", "session_attention", "frame_words"]


def frame_words(word_tokens: Sequence[str], word_index: np.ndarray) -> list[list[str]]:
    """The words of every frame: ``word_tokens[word_index[t, l]]`` for the slots ≥ 0, in slot order.

    >>> frame_words(np.array(["a", "b", "c"], dtype=object), np.array([[0, 2, -1], [-1, -1, -1]]))
    [['a', 'c'], []]
    """
    index = np.asarray(word_index)
    if index.ndim != 2:
        raise DataError(f"word_index: expected (T, L), got shape {index.shape}")
    tokens = list(word_tokens)
    if index.size and index.max() >= len(tokens):
        raise DataError(f"word_index refers to word {int(index.max())} but there are {len(tokens)} tokens")
    return [[str(tokens[i]) for i in row if i >= 0] for row in index]


def _to_numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy()


@torch.no_grad()
def collect_attention(
    model: torch.nn.Module,
    batch: Mapping[str, torch.Tensor],
    *,
    chunk: int | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``model`` on one recording in eval mode without gradients.

    ``batch`` is the model-batch layout of one recording, with a batch axis
    of 1 or without one (an item of :func:`mmaffect.data.dataset.load_frames`).
    With ``chunk`` frames and a model that has ``forward_frames``, the
    recording is run in chunks carrying the LSTM state (the same result,
    bounded memory). Returns ``pred`` (T, 2) and the attention dict as float
    numpy arrays with the batch axis removed. The model's mode is restored.
    """
    if "mask" not in batch:
        raise DataError("the batch has no 'mask' entry")
    items = dict(batch)
    if items["mask"].dim() == 1:
        items = {k: v.unsqueeze(0) for k, v in items.items()}
    if items["mask"].shape[0] != 1:
        raise DataError(f"collect_attention takes one recording, got a batch of {items['mask'].shape[0]}")
    param = next(model.parameters(), None)
    if param is not None:
        items = {k: v.to(param.device) for k, v in items.items()}
    n = int(items["mask"].shape[1])
    was_training = model.training
    model.eval()
    try:
        if chunk is not None and chunk > 0 and n > chunk and hasattr(model, "forward_frames"):
            preds, parts, state = [], {}, None
            for start in range(0, n, chunk):
                part = {k: v if k in REFERENCE_KEYS else v[:, start:start + chunk] for k, v in items.items()}
                out, state = model.forward_frames(part, state)
                preds.append(out.pred)
                for key, value in out.attention.items():
                    parts.setdefault(key, []).append(value)
            pred = torch.cat(preds, dim=1)
            attention = {k: torch.cat(v, dim=1) for k, v in parts.items()}
        else:
            out = model(items)
            pred, attention = out.pred, dict(out.attention)
    finally:
        model.train(was_training)
    return _to_numpy(pred[0, :, :2]), {k: _to_numpy(v[0]) for k, v in attention.items()}


@dataclass
class SessionAttention:
    """A checkpoint run over one whole cached recording (time is the leading axis everywhere).

    ``pred`` is the model output for each *input* frame; compare it with
    ``gold`` after :func:`mmaffect.training.evaluate.align_delay` with
    ``delay_frames`` (the run's annotation delay), as ``mmaffect evaluate``
    does. ``presence`` says per modality whether the frame has it (words,
    audio, a face); ``pairs`` are the hierarchical fusion's pairs (None for
    other models).
    """

    name: str
    partition: str | None
    model_name: str
    modalities: tuple[str, ...]
    times: np.ndarray
    pred: np.ndarray
    gold: np.ndarray | None
    attention: dict[str, np.ndarray]
    presence: dict[str, np.ndarray]
    words: list[list[str]]
    word_tokens: np.ndarray | None
    word_index: np.ndarray | None
    pairs: tuple[tuple[int, int], ...] | None
    delay_frames: int


_PRESENCE_KEYS = {"text": "word_mask", "audio": "audio_mask", "visual": "face_mask"}


def session_attention(
    checkpoint: str | Path | Mapping[str, Any],
    *,
    session: str,
    cache: str | Path | None = None,
    device: str = "cpu",
    chunk: int | None = 300,
) -> SessionAttention:
    """Run a training checkpoint over the whole cached recording ``session``.

    ``checkpoint``: a ``.pt`` path or a loaded checkpoint dict; ``cache``
    defaults to the run's ``data.cache``. Raises :class:`ConfigError` /
    :class:`DataError` naming the file for an unknown session or a cache
    whose inputs do not fit the model.
    """
    from mmaffect.checkpoints import build_model_from_checkpoint, load_checkpoint
    from mmaffect.data.cache import Cache, read_stream
    from mmaffect.data.dataset import load_frames, load_reference, reference_candidates
    from mmaffect.models import get_spec
    from mmaffect.training.evaluate import dataset_options

    label = str(checkpoint) if isinstance(checkpoint, (str, Path)) else "checkpoint"
    ckpt = load_checkpoint(checkpoint) if isinstance(checkpoint, (str, Path)) else dict(checkpoint)
    cfg = ckpt.get("config") or {}
    if "model_name" not in cfg:
        raise ConfigError(f"{label}: the checkpoint's config has no model_name")
    data_cfg = cfg.get("data") or {}
    root = cache if cache is not None else data_cfg.get("cache")
    if root is None:
        raise ConfigError(f"{label}: the checkpoint names no cache; pass one (--cache)")
    cache_obj = Cache(root)
    sess = _find_session(cache_obj, session)
    prep = cache_obj.config()
    modalities = tuple(data_cfg.get("modalities") or get_spec(str(cfg["model_name"])).modalities)
    model = build_model_from_checkpoint(ckpt)
    model.to(torch.device(device))

    text = read_stream(sess.streams["text"], keys=["word_tokens", "word_index"]) if sess.has("text") else None
    item = load_frames(sess, slice(0, sess.n_frames), modalities=modalities,
                       embed_dim=_embed_dim(cfg, modalities, sess, label), **dataset_options(prep))
    if getattr(model, "audio_reference", 0):  # the speaker's yardstick, as evaluate takes it
        item.update(load_reference(sess, reference_candidates(sess), model.audio_reference,
                                   int(dataset_options(prep)["audio_frame"])))
    try:
        pred, attention = collect_attention(model, item, chunk=chunk)
    except RuntimeError as exc:
        raise ConfigError(f"{cache_obj.root}: its inputs do not fit the model of {label} ({exc})") from None

    label_rate = float(prep.get("label_rate", 10.0))
    fusion = getattr(model, "fusion", None)
    pairs = tuple(tuple(int(i) for i in p) for p in fusion.pairs) if hasattr(fusion, "pairs") else None
    delay_s = float(data_cfg.get("annotation_delay", 0.0))
    return SessionAttention(
        name=sess.name,
        partition=sess.partition,
        model_name=str(cfg["model_name"]),
        modalities=tuple(getattr(model, "modalities", modalities)),
        times=_session_times(sess, label_rate),
        pred=pred.astype(np.float64),
        gold=item["labels"].numpy().astype(np.float64) if "labels" in item else None,
        attention=attention,
        presence=_presence(item, modalities),
        words=frame_words(text["word_tokens"], text["word_index"]) if text is not None
        else [[] for _ in range(sess.n_frames)],
        word_tokens=None if text is None else text["word_tokens"],
        word_index=None if text is None else text["word_index"],
        pairs=pairs,
        delay_frames=int(round(delay_s * label_rate)),
    )


def _find_session(cache_obj: Any, session: str) -> Any:
    """The cached session named ``session``, else a :class:`DataError` listing some that are there."""
    found = [s for s in cache_obj.sessions() if s.name == session]
    if not found:
        names = [s.name for s in cache_obj.sessions()]
        raise DataError(f"no prepared session {session!r} (there are {len(names)}: "
                        f"{', '.join(names[:8])}{', …' if len(names) > 8 else ''})", path=cache_obj.root)
    return found[0]


def _embed_dim(cfg: Mapping[str, Any], modalities: Sequence[str], sess: Any, label: str) -> int:
    """The word-vector size the model takes: its ``embed_dim`` option, else the session's vectors (0 without text)."""
    from mmaffect.data.cache import read_stream

    if "text" not in modalities:
        return 0
    opt = (cfg.get("model_options") or {}).get("embed_dim")
    if opt is not None:
        return int(opt)
    if sess.has("text"):
        return int(read_stream(sess.streams["text"], keys=["word_vectors"])["word_vectors"].shape[1])
    raise ConfigError(f"{label}: cannot tell the word vector size; the session has no text")


def _session_times(sess: Any, label_rate: float) -> np.ndarray:
    """The frame times of a cached session (from its first stream that has them, else frame / rate)."""
    from mmaffect.data.cache import read_stream

    times = None
    for stream in ("labels", "audio", "faces", "text"):
        if sess.has(stream):
            try:
                times = np.asarray(read_stream(sess.streams[stream], keys=["times"])["times"], dtype=np.float64)
                break
            except KeyError:
                continue
    if times is None or len(times) != sess.n_frames:
        times = np.arange(sess.n_frames, dtype=np.float64) / label_rate
    return times


def _presence(item: Mapping[str, torch.Tensor], modalities: Sequence[str]) -> dict[str, np.ndarray]:
    """Per modality, whether each frame has it (words, audio, a face)."""
    presence = {}
    for m in modalities:
        flags = item[_PRESENCE_KEYS[m]].numpy()
        presence[m] = flags.any(axis=-1) if flags.ndim == 2 else flags.astype(bool)
    return presence
