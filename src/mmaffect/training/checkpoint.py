"""Training checkpoints: plain state dicts, written atomically.

A checkpoint is a dict of tensors and plain Python values only (no pickled
modules or classes), so ``torch.load(path, weights_only=True)`` reads it:

==================  ==========================================================
key                 content
==================  ==========================================================
``format``          :data:`CHECKPOINT_FORMAT`
``model``           the model's ``state_dict()`` (never the DDP wrapper's)
``optimizer``       the optimizer's ``state_dict()``
``scheduler``       the LR scheduler's ``state_dict()`` or ``None``
``epoch``           epochs completed (1-based count; 0 = before training)
``step``            optimizer steps taken
``best_score``      best selection score so far (mean dev CCC, higher = better)
``best_epoch``      the epoch that reached it
``stale_epochs``    epochs since the best one (early stopping)
``history``         one dict per finished epoch (the rows of ``log.csv``)
``rng``             random states of python, numpy, torch (and CUDA)
``config``          the resolved training configuration (``model_name`` at the
                    top level, as :func:`mmaffect.models.assembly.load_branch_weights`
                    expects)
``prepare_config``  the cache's preprocessing configuration
==================  ==========================================================
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmaffect.errors import ConfigError
from mmaffect.utils.io import atomic_path

CHECKPOINT_FORMAT = 1


def plain(obj: Any) -> Any:
    """``obj`` as JSON-like plain values (tuples become lists), for configs in checkpoints.

    >>> plain({"a": (1, 2), "b": {"c": None}})
    {'a': [1, 2], 'b': {'c': None}}
    """
    return json.loads(json.dumps(obj, default=str))


def capture_rng_state() -> dict[str, Any]:
    """Random states of python, numpy and torch (CPU and every CUDA device) as plain values."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    epoch: int,
    step: int,
    best_score: float,
    best_epoch: int,
    stale_epochs: int,
    history: list[dict[str, Any]],
    config: dict[str, Any],
    prepare_config: dict[str, Any] | None,
    rng: dict[str, Any] | None = None,
) -> None:
    """Write a checkpoint atomically (a killed process never leaves half a file)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "best_score": float(best_score),
        "best_epoch": int(best_epoch),
        "stale_epochs": int(stale_epochs),
        "history": plain(history),
        "rng": rng if rng is not None else capture_rng_state(),
        "config": plain(config),
        "prepare_config": plain(prepare_config),
    }
    write_torch_file(path, payload)


def write_torch_file(path: str | Path, payload: Any) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically and durably.

    The bytes are serialised in memory, written to a temporary file, flushed
    to disk and only then renamed over ``path``: a kill, a full disk or a
    read-only folder leaves the previous file (e.g. the last ``last.pt`` of a
    run, which stays resumable) untouched. An I/O failure is an
    :class:`OSError` naming ``path``.
    """
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def _torch_reason(path: Path, exc: BaseException) -> str:
    """What is wrong with a file torch.load refused, in a few words, without torch's advice about
    ``weights_only=False`` (mmaffect's checkpoints never need code unpickled; a bad file is not fixed by it)."""
    import re

    text = str(exc)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head != b"PK\x03\x04":
        return "not a PyTorch checkpoint file"
    if "Weights only load failed" in text or "Unpickl" in type(exc).__name__:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled objects{what}, not only tensors and plain values; not an mmaffect checkpoint"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"the file is truncated or damaged: {first}"


def read_torch_file(path: str | Path, *, map_location: str | torch.device = "cpu", label: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line :class:`ConfigError` s for an empty, truncated,
    foreign or code-carrying file (``label`` prefixes them; default: the path)."""
    path = Path(path)
    where = label or str(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ConfigError(f"{where}: the checkpoint file is empty (0 bytes); it was not written completely")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad file
        raise ConfigError(f"{where}: not a readable checkpoint ({_torch_reason(path, exc)})") from None


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code is unpickled).

    A missing, empty, truncated or foreign file is a one-line :class:`ConfigError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    ckpt = read_torch_file(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ConfigError(f"{path}: not an mmaffect training checkpoint (no 'model'/'config' entries)")
    return ckpt
