"""Interfaces shared by every network.

A *branch* turns one modality of a batch (see docs/architecture.md, section 3)
into per-frame features; a *model* maps a whole batch to per-frame arousal and
valence. Keeping these two shapes uniform lets training, tuning, prediction,
export and the fusion strategies treat every registered variant alike.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class BranchOutput(NamedTuple):
    """Per-frame features of one modality.

    ``features``: (B, T, D) float; ``present``: (B, T) bool, False where the
    modality is absent in that frame (no words, no face, no audio) so fusion
    can mask it out instead of attending to a pretend value; ``attention``:
    named weight tensors for visualisation (may be empty).
    """

    features: torch.Tensor
    present: torch.Tensor
    attention: dict[str, torch.Tensor]


class Branch(nn.Module):
    """Base class of the modality networks (text, audio, visual).

    Subclasses set ``modality`` (``"text"``, ``"audio"`` or ``"visual"``) and
    ``out_dim`` and implement ``forward(batch) -> BranchOutput``.
    """

    modality: str = ""
    out_dim: int = 0

    def forward(self, batch: Batch) -> BranchOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class ModelOutput(NamedTuple):
    """``pred``: (B, T, 2) arousal, valence; ``attention``: named weights."""

    pred: torch.Tensor
    attention: dict[str, torch.Tensor]
