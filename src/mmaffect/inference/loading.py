""":func:`load`: the right predictor for a checkpoint (what :func:`mmaffect.load` returns).

It sits above :mod:`mmaffect.inference.predictor` and
:mod:`mmaffect.inference.faces` (a face predictor wraps a
:class:`~mmaffect.inference.predictor.Predictor` for visual-only runs), so that
neither of them imports the other in a cycle.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmaffect.checkpoints import default_checkpoint, load_checkpoint
from mmaffect.inference.faces import FacePredictor, checkpoint_file
from mmaffect.inference.predictor import Predictor

if TYPE_CHECKING:
    import torch

__all__ = ["load"]


def load(checkpoint: str | Path | None = None, *, device: str | torch.device | None = None) -> Any:
    """A :class:`~mmaffect.inference.predictor.Predictor` for a ``mmaffect train`` checkpoint (file, run folder or
    ``pretrained:NAME``); None = what ``mmaffect predict`` uses without ``--checkpoint``
    (``$MMAFFECT_CHECKPOINT``, else the shipped default model). A face classifier
    (``mmaffect pretrain-faces``'s ``model.pt``, a shipped ``branch`` model) gives a
    :class:`mmaffect.inference.faces.FacePredictor` (``predict_video``, ``predict_images``)."""
    if checkpoint is None:
        checkpoint = default_checkpoint()
    path = checkpoint_file(checkpoint)
    if (load_checkpoint(path).get("config") or {}).get("pretrain") == "faces":
        return FacePredictor.from_checkpoint(path, device=device)
    return Predictor.from_checkpoint(path, device=device)
