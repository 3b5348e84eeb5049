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

``audio_reference=R`` (> 0; default 0, the paper) normalises the audio
branch's per-frame features by the speaker: the batch carries ``audio_ref``
(B, R, samples) and ``audio_ref_mask`` (B, R), R speech frames of the target
speaker drawn from the same recording (:mod:`mmaffect.data.dataset`,
``predict``), and each feature is standardised by its mean and standard
deviation over those frames (:func:`reference_normalise`). It is the network
counterpart of z-scoring acoustic features per speaker (issue #12:
``benchmarks/bench_emodb_speaker_norm.py``).
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

__all__ = ["UnimodalModel", "MultimodalModel", "reference_normalise"]

MODALITIES = ("text", "audio", "visual")
_REF_EPS = 1e-4  # variance floor of the reference statistics (a feature constant over the reference)


def _prefixed(prefix: str, attention: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in attention.items()}


def _frame_mask(batch: Batch, like: torch.Tensor) -> torch.Tensor:
    mask = batch.get("mask")
    if mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return mask.to(torch.bool)


def reference_normalise(branch: Branch, out: BranchOutput, batch: Batch) -> BranchOutput:
    """``out`` of the audio ``branch`` standardised per recording by the reference frames of ``batch``.

    The branch is run on ``batch["audio_ref"]`` (B, R, samples), present where ``audio_ref_mask``
    (B, R) is True, in the branch's own mode (batch-norm and dropout as for the frames it normalises;
    in training, batch-norm running statistics also see the reference frames)
    and without gradients (a yardstick the network cannot learn through; about a third of the cost
    of a trained pass); per recording and feature, ``mu`` and ``sd`` =
    the mean and the standard deviation (+ a floor) over the present reference frames, and
    ``features = (features - mu) / sd`` on the frames where the audio is present (absent frames stay
    zero). A recording with fewer than two reference frames (no speech heard) keeps mu = 0, sd = 1.

    Raises:
        ConfigError: the batch has no ``audio_ref`` (the model was trained with a reference; the
            data path must give one).
    """
    if "audio_ref" not in batch:
        raise ConfigError("this model normalises its audio features by a reference of the speaker "
                          "(model option audio_reference > 0), but the batch has no audio_ref; build batches "
                          "with mmaffect.data.dataset (SessionWindows(audio_reference=...)) or the Predictor")
    with torch.no_grad():
        ref: BranchOutput = branch({"audio": batch["audio_ref"], "audio_mask": batch["audio_ref_mask"]})
    w = ref.present.to(ref.features.dtype).unsqueeze(-1)  # (B, R, 1)
    n = w.sum(dim=1)  # (B, 1)
    mu = (ref.features * w).sum(dim=1) / n.clamp(min=1.0)
    var = ((ref.features - mu.unsqueeze(1)).square() * w).sum(dim=1) / n.clamp(min=1.0)
    enough = n >= 2
    mu = torch.where(enough, mu, torch.zeros_like(mu))
    sd = torch.where(enough, torch.sqrt(var + _REF_EPS), torch.ones_like(var))
    keep = out.present.to(out.features.dtype).unsqueeze(-1)
    features = (out.features - mu.unsqueeze(1)) / sd.unsqueeze(1) * keep
    return BranchOutput(features, out.present, out.attention)


def _check_reference(audio_reference: int, branch: Branch | None) -> int:
    if audio_reference < 0:
        raise ConfigError(f"audio_reference must be >= 0 (reference frames; 0 = off), got {audio_reference}")
    if audio_reference and (branch is None or branch.modality != "audio"):
        raise ConfigError("audio_reference needs an audio branch")
    return int(audio_reference)


class UnimodalModel(nn.Module):
    """One modality network + 1-layer LSTM head (Section 5.3, unimodal training).

    The branch's per-frame features go to the head as they are (the branch
    decides what it emits for frames where its modality is absent); sequence
    padding is handled by the head through ``batch["mask"]``. Attention keys
    are the branch's, prefixed with its modality. ``audio_reference``: see
    the module docstring.
    """

    def __init__(
        self,
        *,
        branch: Branch,
        head_hidden: int = 256,
        head_layers: int = 1,
        head_dropout: float = 0.5,
        outputs: int = 2,
        audio_reference: int = 0,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.modality = branch.modality
        self.audio_reference = _check_reference(audio_reference, branch)
        self.head = TemporalHead(
            in_dim=branch.out_dim, hidden=head_hidden, layers=head_layers, dropout=head_dropout, outputs=outputs
        )

    def forward_frames(self, batch: Batch, state: State | None = None) -> tuple[ModelOutput, State]:
        out: BranchOutput = self.branch(batch)
        if self.audio_reference:
            out = reference_normalise(self.branch, out, batch)
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
    (Section 5.3). ``audio_reference``: see the module docstring.
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
        audio_reference: int = 0,
    ) -> None:
        super().__init__()
        self.audio_reference = _check_reference(audio_reference, audio)
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
            if name == "audio" and self.audio_reference:
                out = reference_normalise(branch, out, batch)
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
