"""An example of adding a network: a tiny log-energy audio branch (not a network of the paper).

This file is the whole change that adds ``audio-example-energy`` (docs/models.md, "Adding a
network"): the package imports every module in it, the decorator registers the branch as a
unimodal variant (branch + temporal head) and as a choice for ``audio_branch`` of every fusion
variant, and the registry-wide tests (forward + backward, streaming, ONNX parity) pick it up.

Per frame: the interlocutor vector is cut into ``windows`` equal windows, the log of each
window's mean energy is taken, and a linear layer + tanh maps the ``windows`` log energies to
``out_dim`` features. Attention ``{"windows": (B, T, windows)}``: the softmax of the log energies
(which windows are loud).
"""

from __future__ import annotations

import torch
from torch import nn

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import frame_presence
from mmaffect.models.registry import register_branch

__all__ = ["ExampleEnergy"]


@register_branch(
    "audio-example-energy", modality="audio",
    description="log energy of equal windows + linear (an example of adding a network)",
    paper_ref="none (example)", tiny={"windows": 6, "out_dim": 4},
)
class ExampleEnergy(Branch):
    """Log window energies → linear → tanh; ``out_dim`` features per 100-ms frame."""

    modality = "audio"
    ATTENTION_AXES = {"windows": ("window",)}

    def __init__(self, *, windows: int = 20, out_dim: int = 32, frame_samples: int = 4410) -> None:
        super().__init__()
        if not 1 <= windows <= frame_samples:
            raise ValueError(f"windows must be from 1 to frame_samples ({frame_samples}), got {windows}")
        self.windows, self.frame_samples, self.out_dim = windows, frame_samples, out_dim
        self.width = frame_samples // windows
        self.proj = nn.Linear(windows, out_dim)

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, frame_samples) → features (N, out_dim), ``{"windows": (N, windows)}``."""
        energy = x[:, : self.windows * self.width].reshape(-1, self.windows, self.width).square().mean(-1)
        log_energy = torch.log(energy + 1e-6)
        return torch.tanh(self.proj(log_energy)), {"windows": torch.softmax(log_energy, dim=-1)}

    def forward(self, batch: Batch) -> BranchOutput:
        audio = batch["audio"]
        b, t = audio.shape[:2]
        present = frame_presence(batch, "audio_mask", (b, t), audio.device)
        feats, att = self.frame_forward(audio.reshape(b * t, -1), present.reshape(-1))
        keep = present.reshape(b, t, 1)
        return BranchOutput(
            features=torch.where(keep, feats.reshape(b, t, -1), torch.zeros((), dtype=feats.dtype)),
            present=present,
            attention={k: torch.where(keep, v.reshape(b, t, -1), torch.zeros((), dtype=v.dtype))
                       for k, v in att.items()},
        )
