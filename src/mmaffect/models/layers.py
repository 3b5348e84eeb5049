"""Small layers shared by the modality branches.

Masked softmax (the text selector and the visual branch attention must give
padding exactly zero weight), the highway layer of Eq. 2, the selector score
of the reference notes, and helpers that run a per-frame network only on the
frames where a modality is present.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint as _torch_checkpoint

from mmaffect.models.base import Batch


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` over ``dim`` where ``mask`` is False gets exactly 0.

    A slice with no True entry gives all zeros (never NaN, also in backward):
    masked scores are set to the most negative finite value instead of -inf,
    so an all-masked slice is a finite uniform softmax that the final
    multiplication by the mask zeroes.
    """
    mask = mask.to(torch.bool)
    filled = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(filled, dim=dim) * mask.to(scores.dtype)


class SelectorScore(nn.Module):
    """Selector score of Section 4.1.1 (reference notes, Text branch):
    ``s = (w·h + b) / sqrt(scale)`` for every position of ``h`` (..., D)."""

    def __init__(self, *, in_dim: int, scale: float) -> None:
        super().__init__()
        self.proj = nn.Linear(in_dim, 1)
        self.inv_sqrt = 1.0 / math.sqrt(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.proj(h).squeeze(-1) * self.inv_sqrt


class Highway(nn.Module):
    """Highway layer, Eq. 2 of Section 4.1.1:
    ``z~ = o ⊙ g(W_z z + b_z) + (1 − o) ⊙ z`` with ``o = σ(W_o z + b_o)``.

    ``activation`` is ``"tanh"`` (the paper) or ``"relu"`` (the authors' code,
    reference notes); the gate bias starts at ``gate_bias`` (−2 in their code)
    so that the layer initially passes its input through.
    """

    def __init__(self, *, dim: int, activation: str = "tanh", gate_bias: float = -2.0) -> None:
        super().__init__()
        if activation not in ("tanh", "relu"):
            raise ValueError(f"highway activation must be 'tanh' or 'relu', got {activation!r}")
        self.transform = nn.Linear(dim, dim)
        self.gate = nn.Linear(dim, dim)
        self.act = torch.tanh if activation == "tanh" else F.relu
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        o = torch.sigmoid(self.gate(z))
        return o * self.act(self.transform(z)) + (1.0 - o) * z


def same_pad1d(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """Zero-pad the last axis for a stride-1 'same' convolution of width
    ``kernel``; an even width puts the extra sample on the right, as
    PyTorch's and TensorFlow's ``padding='same'`` do (explicit padding avoids
    PyTorch's warning and extra copy for even widths)."""
    return F.pad(x, ((kernel - 1) // 2, kernel // 2))


def frame_presence(batch: Batch, key: str, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(B, T) bool presence: ``batch[key]`` if given, else ``batch['mask']``,
    else all True. Sequence padding (``mask`` False) is never present."""
    present = batch.get(key)
    if present is None:
        present = batch.get("mask")
    if present is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    present = present.to(device=device, dtype=torch.bool)
    if "mask" in batch and key in batch:
        present = present & batch["mask"].to(device=device, dtype=torch.bool)
    return present


def run_on_present(
    fn: Callable[[torch.Tensor], torch.Tensor],
    frames: torch.Tensor,
    present: torch.Tensor,
    out_dim: int,
) -> torch.Tensor:
    """Apply the per-frame network ``fn`` to the present frames only.

    ``frames``: (B, T, ...); ``present``: (B, T) bool. Returns (B, T, out_dim)
    with zeros for absent frames, so absent frames cost nothing and never put
    a pretend value into the gradients.
    """
    b, t = present.shape
    flat = rearrange(frames, "b t ... -> (b t) ...")
    keep = rearrange(present, "b t -> (b t)")
    out = frames.new_zeros(b * t, out_dim)
    if bool(keep.any()):
        idx = keep.nonzero(as_tuple=True)[0]
        out = out.index_put((idx,), fn(flat[idx]).to(out.dtype))
    return rearrange(out, "(b t) d -> b t d", b=b)


def scatter_frames(values: torch.Tensor, keep: torch.Tensor, fill_shape: tuple[int, ...]) -> torch.Tensor:
    """Place per-kept-frame ``values`` (n, *fill_shape) back into a zero
    tensor (N, *fill_shape) at the rows where ``keep`` (N,) is True."""
    out = values.new_zeros(keep.shape[0], *fill_shape)
    if values.shape[0]:
        out = out.index_put((keep.nonzero(as_tuple=True)[0],), values)
    return out


@contextlib.contextmanager
def _restored_running_stats(module: nn.Module) -> Iterator[None]:
    """Batch-norm layers in ``module`` run as usual (training mode: batch
    statistics, the same saved tensors) but their running statistics and
    ``num_batches_tracked`` are put back afterwards."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None] for m in bns]
    try:
        yield
    finally:
        for m, values in zip(bns, saved):
            buffers = [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
            for b, v in zip(buffers, values):
                b.copy_(v)


def checkpointed(module: nn.Module, fn: Callable[..., Any], *args: Any, enabled: bool = True) -> Any:
    """``fn(*args)`` (the forward of a part of ``module``) under activation
    checkpointing (``torch.utils.checkpoint``, ``use_reentrant=False``): only
    the tensors in ``args`` are kept for backward and the part is recomputed
    there. Active only if ``enabled``, ``module.training`` and grad mode;
    otherwise a plain call.

    The recomputation replays the forward exactly (same RNG state, so dropout
    draws the same masks) and restores the running statistics of the
    batch-norm layers in ``module`` after it, so they are updated once per
    step as without checkpointing. Outputs and gradients equal the plain
    computation's bit for bit.
    """
    if not (enabled and module.training and torch.is_grad_enabled()):
        return fn(*args)
    calls = 0

    def run(*inputs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return fn(*inputs)
        with _restored_running_stats(module):  # the recomputation in backward
            return fn(*inputs)

    return _torch_checkpoint(run, *args, use_reentrant=False)
