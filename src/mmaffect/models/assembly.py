"""Whole networks: branch(es) + fusion + temporal head (Sections 4.3, 5.3, Fig. 2).

Both model classes take a batch dict (docs/architecture.md, section 3) and
return :class:`~mmaffect.models.base.ModelOutput` with ``pred`` (B, T, 2) and
an ``attention`` dict whose keys are prefixed by where the weights come from:
``"text.<name>"``, ``"audio.<name>"``, ``"visual.<name>"`` for branch weights
and ``"fusion.<name>"`` for fusion weights (fusion weights reshaped to
(B, T, ...)).

``forward_frames(batch, state=None) -> (ModelOutput, state)`` is the
streaming path: the LSTM state after the chunk is returned and can be fed to
the next chunk of the same recordings.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from einops import rearrange
from torch import nn

from mmaffect.errors import ConfigError
from mmaffect.models.base import Batch, Branch, BranchOutput, ModelOutput
from mmaffect.models.fusion import Fusion
from mmaffect.models.temporal import State, TemporalHead

__all__ = ["UnimodalModel", "MultimodalModel"]

MODALITIES = ("text", "audio", "visual")


def _prefixed(prefix: str, attention: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in attention.items()}


def _frame_mask(batch: Batch, like: torch.Tensor) -> torch.Tensor:
    mask = batch.get("mask")
    if mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return mask.to(torch.bool)


class UnimodalModel(nn.Module):
    """One modality network + 1-layer LSTM head (Section 5.3, unimodal training).

    The branch's per-frame features go to the head as they are (the branch
    decides what it emits for frames where its modality is absent); sequence
    padding is handled by the head through ``batch["mask"]``. Attention keys
    are the branch's, prefixed with its modality.
    """

    def __init__(
        self,
        *,
        branch: Branch,
        head_hidden: int = 256,
        head_layers: int = 1,
        head_dropout: float = 0.5,
        outputs: int = 2,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.modality = branch.modality
        self.head = TemporalHead(
            in_dim=branch.out_dim, hidden=head_hidden, layers=head_layers, dropout=head_dropout, outputs=outputs
        )

    def forward_frames(self, batch: Batch, state: State | None = None) -> tuple[ModelOutput, State]:
        out: BranchOutput = self.branch(batch)
        mask = batch.get("mask")
        pred, state = self.head(out.features, mask, state)
        return ModelOutput(pred, _prefixed(self.modality, out.attention)), state

    def forward(self, batch: Batch) -> ModelOutput:
        return self.forward_frames(batch)[0]


class MultimodalModel(nn.Module):
    """Multimodal network of Section 4.3 / Fig. 2: branches → fusion → LSTM head.

    ``text``, ``audio`` and ``visual`` are :class:`Branch` modules (any may be
    None to build a bi-modal model); ``fusion`` is a Section 4.2 strategy whose
    ``in_dims`` are the branches' ``out_dim`` in (text, audio, visual) order.
    A modality is present in a frame when its branch says so and the frame is
    not sequence padding. Branch weights can be initialised from trained
    unimodal checkpoints with :func:`mmaffect.checkpoints.load_branch_weights`
    (Section 5.3).
    """

    def __init__(
        self,
        *,
        text: Branch | None,
        audio: Branch | None,
        visual: Branch | None,
        fusion: Fusion,
        head_hidden: int = 256,
        head_layers: int = 1,
        head_dropout: float = 0.5,
        outputs: int = 2,
    ) -> None:
        super().__init__()
        given = {"text": text, "audio": audio, "visual": visual}
        self.branches = nn.ModuleDict({k: v for k, v in given.items() if v is not None})
        if len(self.branches) < 2:
            raise ConfigError("a multimodal model needs at least two branches")
        dims = tuple(b.out_dim for b in self.branches.values())
        if tuple(fusion.in_dims) != dims:
            raise ConfigError(f"fusion expects input sizes {tuple(fusion.in_dims)}, branches give {dims}")
        self.fusion = fusion
        self.head = TemporalHead(
            in_dim=fusion.out_dim, hidden=head_hidden, layers=head_layers, dropout=head_dropout, outputs=outputs
        )

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(self.branches.keys())

    def fused_features(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Per-frame fused features (B, T, fusion.out_dim), frame mask and attention."""
        attention: dict[str, torch.Tensor] = {}
        feats, present = [], []
        mask = None
        for name, branch in self.branches.items():
            out: BranchOutput = branch(batch)
            if mask is None:
                mask = _frame_mask(batch, out.features)
            feats.append(rearrange(out.features, "b t d -> (b t) d"))
            present.append(rearrange(out.present.to(torch.bool) & mask, "b t -> (b t)"))
            attention.update(_prefixed(name, out.attention))
        b, t = mask.shape
        fused, fusion_att = self.fusion(feats, present)
        for k, v in fusion_att.items():
            attention[f"fusion.{k}"] = rearrange(v, "(b t) ... -> b t ...", b=b, t=t)
        return rearrange(fused, "(b t) d -> b t d", b=b, t=t), mask, attention

    def forward_frames(self, batch: Batch, state: State | None = None) -> tuple[ModelOutput, State]:
        fused, _, attention = self.fused_features(batch)
        pred, state = self.head(fused, batch.get("mask"), state)
        return ModelOutput(pred, attention), state

    def forward(self, batch: Batch) -> ModelOutput:
        return self.forward_frames(batch)[0]
