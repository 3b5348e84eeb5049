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

Two further options make such a model usable on a recording in which the speaker keeps one state
(a short clip: its only yardstick is itself, so standardised features read it as the speaker's
average). ``audio_reference_prior=N`` (frames) shrinks the recording's statistics towards those of
the training speakers, as online cepstral mean normalisation does with a global prior (Kaldi's
``--global-frames``): with ``n`` speech frames in the recording (``audio_ref_count``), the
yardstick is weighted ``n / (n + N)`` and the population ``N / (n + N)``
(:class:`ReferencePrior`): a long recording is read against its speaker, a few seconds mostly
against everybody, as a network without a reference reads them. ``audio_reference_self=p`` makes,
in training only, an item a recording of its own window with probability p (its own frames and
their count), so that the network also learns from features standardised mostly by the population.
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

__all__ = ["MultimodalModel", "ReferencePrior", "UnimodalModel", "reference_normalise"]

MODALITIES = ("text", "audio", "visual")
_REF_EPS = 1e-4  # variance floor of the reference statistics (a feature constant over the reference)
_PRIOR_MOMENTUM = 0.05  # per training batch, as batch-norm's running statistics (first batch: taken as is)


def _prefixed(prefix: str, attention: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in attention.items()}


def _frame_mask(batch: Batch, like: torch.Tensor) -> torch.Tensor:
    mask = batch.get("mask")
    if mask is None:
        return torch.ones(like.shape[:2], dtype=torch.bool, device=like.device)
    return mask.to(torch.bool)


class ReferencePrior(nn.Module):
    """The training speakers' feature statistics, a prior of ``frames`` speech frames on a recording's own.

    Buffers ``mean`` and ``var`` (D,): running averages over training batches (momentum
    ``_PRIOR_MOMENTUM``; the first batch sets them) of the recordings' reference means and of their
    total variance (within recordings + between their means). :meth:`shrink` blends a recording's
    mean and variance with them, weighted by its speech frames ``n`` against ``frames``.
    """

    def __init__(self, *, dim: int, frames: int) -> None:
        super().__init__()
        self.frames = int(frames)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("var", torch.ones(dim))
        self.register_buffer("batches", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, mu: torch.Tensor, var: torch.Tensor, use: torch.Tensor) -> None:
        """Fold in the recordings ``use`` (B,) of a training batch: their means and variances (B, D)."""
        if not bool(use.any()):
            return
        m, v = mu[use], var[use]
        mean = m.mean(0)
        total = v.mean(0) + (m - mean).square().mean(0)  # within + between recordings
        k = 1.0 if int(self.batches) == 0 else _PRIOR_MOMENTUM
        self.mean.lerp_(mean, k)
        self.var.lerp_(total, k)
        self.batches += 1

    def shrink(self, mu: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance (B, D) of the mixture ``w`` × the recording + ``1 − w`` × the population,
        ``w = n / (n + frames)`` from the recordings' speech frames ``n`` (B, 1)."""
        w = n / (n + self.frames)
        mean = w * mu + (1 - w) * self.mean
        var = w * (var + (mu - mean).square()) + (1 - w) * (self.var + (self.mean - mean).square())
        return mean, var


def _statistics(features: torch.Tensor, present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per recording and feature: mean, variance (B, D) of ``features`` (B, N, D) over the ``present``
    (B, N) rows, and (B, 1) whether two or more rows are present."""
    w = present.to(features.dtype).unsqueeze(-1)  # (B, N, 1)
    n = w.sum(dim=1)  # (B, 1)
    mu = (features * w).sum(dim=1) / n.clamp(min=1.0)
    var = ((features - mu.unsqueeze(1)).square() * w).sum(dim=1) / n.clamp(min=1.0)
    return mu, var, n >= 2


def reference_normalise(branch: Branch, out: BranchOutput, batch: Batch, *, prior: ReferencePrior | None = None,
                        self_reference: float = 0.0, training: bool = False) -> BranchOutput:
    """``out`` of the audio ``branch`` standardised per recording by the reference frames of ``batch``.

    The branch is run on ``batch["audio_ref"]`` (B, R, samples), present where ``audio_ref_mask``
    (B, R) is True, in the branch's own mode (batch-norm and dropout as for the frames it normalises;
    in training, batch-norm running statistics also see the reference frames)
    and without gradients (a yardstick the network cannot learn through; about a third of the cost
    of a trained pass); per recording and feature, ``mu`` and ``sd`` =
    the mean and the standard deviation (+ a floor) over the present reference frames, and
    ``features = (features - mu) / sd`` on the frames where the audio is present (absent frames stay
    zero). A recording with fewer than two reference frames (no speech heard) keeps mu = 0, sd = 1
    (with a ``prior``: the population's statistics).

    With ``training`` and ``self_reference`` = p > 0, each recording of the batch is, with
    probability p, a recording of its own window: its present frames of ``out`` (detached) are the
    yardstick and their number its speech frames (where it has two or more). With ``prior``, mu and
    the variance are first shrunk towards the population's by :meth:`ReferencePrior.shrink`, with
    ``batch["audio_ref_count"]`` (B, 1) the recordings' speech frames; in training, the prior's
    statistics are updated from the references of the batch (not from the windows' own).

    Raises:
        ConfigError: the batch has no ``audio_ref`` (the model was trained with a reference; the
            data path must give one), or, with a ``prior``, no ``audio_ref_count``.
    """
    if "audio_ref" not in batch:
        raise ConfigError("this model normalises its audio features by a reference of the speaker "
                          "(model option audio_reference > 0), but the batch has no audio_ref; build batches "
                          "with mmaffect.data.dataset (SessionWindows(audio_reference=...)) or the Predictor")
    if prior is not None and "audio_ref_count" not in batch:
        raise ConfigError("this model weighs its speaker reference by the recording's speech frames (model option "
                          "audio_reference_prior > 0), but the batch has no audio_ref_count; build batches with "
                          "mmaffect.data.dataset or the Predictor")
    with torch.no_grad():
        ref: BranchOutput = branch({"audio": batch["audio_ref"], "audio_mask": batch["audio_ref_mask"]})
    mu, var, enough = _statistics(ref.features, ref.present)
    if prior is not None:
        count = batch["audio_ref_count"].to(mu.dtype).reshape(-1, 1) * enough
        if training:
            prior.update(mu, var, enough[:, 0])
    if training and self_reference > 0:
        own_mu, own_var, own_enough = _statistics(out.features.detach(), out.present)
        own = (torch.rand(mu.shape[0], 1, device=mu.device) < self_reference) & own_enough
        mu, var, enough = torch.where(own, own_mu, mu), torch.where(own, own_var, var), enough | own
        if prior is not None:
            count = torch.where(own, out.present.sum(1, keepdim=True).to(mu.dtype), count)
    if prior is not None:
        mu, var = prior.shrink(mu, var, count)
        enough = torch.ones_like(enough)  # no speech heard: the population's statistics
    mu = torch.where(enough, mu, torch.zeros_like(mu))
    sd = torch.where(enough, torch.sqrt(var + _REF_EPS), torch.ones_like(var))
    keep = out.present.to(out.features.dtype).unsqueeze(-1)
    features = (out.features - mu.unsqueeze(1)) / sd.unsqueeze(1) * keep
    return BranchOutput(features, out.present, out.attention)


def _check_reference(audio_reference: int, branch: Branch | None, prior: int,
                     self_reference: float) -> tuple[int, ReferencePrior | None, float]:
    """The checked reference options: (R, the prior or None, p)."""
    if audio_reference < 0:
        raise ConfigError(f"audio_reference must be >= 0 (reference frames; 0 = off), got {audio_reference}")
    if audio_reference and (branch is None or branch.modality != "audio"):
        raise ConfigError("audio_reference needs an audio branch")
    if prior < 0:
        raise ConfigError(f"audio_reference_prior must be >= 0 (frames of the population; 0 = none), got {prior}")
    if not 0.0 <= float(self_reference) < 1.0:
        raise ConfigError(f"audio_reference_self must be in [0, 1) (a probability), got {self_reference}")
    if not audio_reference and (prior or self_reference):
        raise ConfigError("audio_reference_prior and audio_reference_self need audio_reference > 0")
    module = ReferencePrior(dim=branch.out_dim, frames=prior) if audio_reference and prior else None
    return int(audio_reference), module, float(self_reference)


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
        audio_reference_prior: int = 0,
        audio_reference_self: float = 0.0,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.modality = branch.modality
        self.audio_reference, self.reference_prior, self.audio_reference_self = _check_reference(
            audio_reference, branch, audio_reference_prior, audio_reference_self)
        self.head = TemporalHead(
            in_dim=branch.out_dim, hidden=head_hidden, layers=head_layers, dropout=head_dropout, outputs=outputs
        )

    def forward_frames(self, batch: Batch, state: State | None = None) -> tuple[ModelOutput, State]:
        out: BranchOutput = self.branch(batch)
        if self.audio_reference:
            out = reference_normalise(self.branch, out, batch, prior=self.reference_prior,
                                      self_reference=self.audio_reference_self, training=self.training)
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
        audio_reference_prior: int = 0,
        audio_reference_self: float = 0.0,
    ) -> None:
        super().__init__()
        self.audio_reference, self.reference_prior, self.audio_reference_self = _check_reference(
            audio_reference, audio, audio_reference_prior, audio_reference_self)
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
                out = reference_normalise(branch, out, batch, prior=self.reference_prior,
                                          self_reference=self.audio_reference_self, training=self.training)
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
