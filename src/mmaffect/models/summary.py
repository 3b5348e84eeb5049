"""Size and cost of the registered networks (``mmaffect models``).

``model_table()`` lists every registered model with its parameter count and
forward FLOPs per 100 ms frame, counted with
:class:`torch.utils.flop_counter.FlopCounterMode` on a small batch and divided
by its number of frames. FlopCounterMode has no formula for the fused LSTM
kernels (on CPU they run as ``mkldnn_rnn_layer``, on CUDA as ``_cudnn_rnn``),
so :data:`EXTRA_FLOP_FORMULAS` adds them: 2·steps·G·(D + H) FLOPs for a
layer with G gate rows, input size D and hidden size H (backward 2× forward).
It also replaces torch's convolution-backward formula, which does not divide
the input gradient of a grouped convolution by the number of groups
(depthwise layers, e.g. MobileNet, were over-counted up to 65×).
Element-wise work (activations, softmax, pooling) is not counted, as usual.

``example_batch()`` builds a random batch in the layout of
docs/architecture.md, section 3, for tests, summaries and benchmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from mmaffect.models.base import Batch

__all__ = ["example_batch", "count_parameters", "count_flops", "EXTRA_FLOP_FORMULAS", "model_table"]

aten = torch.ops.aten


def _steps(input_shape: Sequence[int]) -> int:
    # (T, B, D), (B, T, D) or packed (N, D): every leading dimension is a step.
    return math.prod(input_shape[:-1])


def _mkldnn_rnn_flops(input, weight0, weight1, *args, out_shape=None, **kwargs) -> int:
    gates, in_dim = weight0
    hidden = weight1[1]
    return 2 * _steps(input) * gates * (in_dim + hidden)


def _mkldnn_rnn_backward_flops(input, weight0, weight1, *args, out_shape=None, **kwargs) -> int:
    return 2 * _mkldnn_rnn_flops(input, weight0, weight1)


def _cudnn_rnn_flops(input, weights, weight_stride0, *args, out_shape=None, **kwargs) -> int:
    batch_sizes = args[11] if len(args) > 11 else kwargs.get("batch_sizes")
    steps = input[0] if batch_sizes else _steps(input)
    total = 0
    for i in range(0, len(weights), weight_stride0):
        (gates, in_dim), (_, hidden) = weights[i], weights[i + 1]
        total += 2 * steps * gates * (in_dim + hidden)
    return total


def _cudnn_rnn_backward_flops(input, weights, weight_stride0, *args, out_shape=None, **kwargs) -> int:
    return 2 * _cudnn_rnn_flops(input, weights, weight_stride0)


def _conv_backward_flops(grad_out, input, weight, bias_sizes, stride, padding, dilation, transposed,
                         output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    # Each requested gradient (input, weight) costs one forward convolution. torch's own
    # formula does not divide the input gradient by ``groups`` (65x too high for depthwise).
    fwd = conv_flop_count(list(input), list(weight), list(grad_out), transposed=transposed)
    return fwd * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


EXTRA_FLOP_FORMULAS: dict[Any, Any] = {
    aten.mkldnn_rnn_layer: _mkldnn_rnn_flops,
    aten.mkldnn_rnn_layer_backward: _mkldnn_rnn_backward_flops,
    aten._cudnn_rnn: _cudnn_rnn_flops,
    aten._cudnn_rnn_backward: _cudnn_rnn_backward_flops,
    aten.convolution_backward: _conv_backward_flops,
}


def example_batch(
    modalities: Sequence[str] = ("text", "audio", "visual"),
    *,
    batch: int = 2,
    frames: int = 3,
    embed_dim: int = 384,
    image_size: int = 96,
    words: int = 30,
    frame_samples: int = 4410,
    padded: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> Batch:
    """A random batch with realistic gaps.

    Frames alternate between target and partner speech (the unused half of
    each interlocutor vector is zero, as in the paper's input), about a fifth
    of the frames have no face and a third no words. With ``padded`` the last
    frame of the last sequence is sequence padding (``mask`` False).
    """
    g = torch.Generator().manual_seed(seed)
    out: Batch = {}
    mask = torch.ones(batch, frames, dtype=torch.bool)
    if padded and frames > 1:
        mask[-1, -1] = False
    out["mask"] = mask
    if "audio" in modalities:
        audio = (torch.rand(batch, frames, frame_samples, generator=g) * 2 - 1) * 0.3
        half = frame_samples // 2
        target = torch.rand(batch, frames, generator=g) < 0.5
        audio[..., half:] *= target.unsqueeze(-1).float()
        audio[..., :half] *= (~target).unsqueeze(-1).float()
        out["audio"] = audio
    if "visual" in modalities:
        out["faces"] = torch.rand(batch, frames, 3, image_size, image_size, generator=g)
        face_mask = torch.rand(batch, frames, generator=g) > 0.2
        face_mask[0, 0] = True
        out["face_mask"] = face_mask
        out["faces"] *= face_mask[..., None, None, None].float()
    if "text" in modalities:
        n_words = torch.randint(1, words + 1, (batch, frames), generator=g)
        n_words[torch.rand(batch, frames, generator=g) < 0.33] = 0
        n_words[0, 0] = max(1, words // 2)
        word_mask = torch.arange(words)[None, None, :] < n_words[..., None]
        out["words"] = torch.randn(batch, frames, words, embed_dim, generator=g) * word_mask[..., None].float()
        out["word_mask"] = word_mask
    return {k: v.to(device) for k, v in out.items()}


def count_parameters(model: nn.Module, *, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, batch: Batch, *, backward: bool = False) -> int:
    """FLOPs of one forward (and backward of ``pred.sum()``) pass on ``batch``."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        if backward:
            model(batch).pred.sum().backward()
        else:
            with torch.no_grad():
                model(batch)
    return int(counter.get_total_flops())


def _size_overrides(name: str, *, image_size: int, embed_dim: int) -> dict[str, Any]:
    from mmaffect.models.registry import get_spec

    defaults = get_spec(name).defaults
    out: dict[str, Any] = {}
    if "image_size" in defaults:
        out["image_size"] = image_size
    if "embed_dim" in defaults:
        out["embed_dim"] = embed_dim
    return out


def model_table(
    names: Sequence[str] | None = None,
    *,
    image_size: int = 96,
    words: int = 30,
    embed_dim: int = 384,
    frames: int = 2,
) -> list[dict[str, Any]]:
    """One row per model: name, modalities, params, flops_per_frame, paper_ref, description.

    FLOPs are forward FLOPs per frame (eval mode) for ``image_size`` faces,
    ``words`` word slots of ``embed_dim`` and the model's audio frame size,
    measured on a batch of 1 × ``frames`` frames (every slot filled).
    """
    from mmaffect.models.registry import create_model, get_spec, list_models
    from mmaffect.models.zoo import input_options

    rows = []
    for name in names or list_models():
        spec = get_spec(name)
        overrides = _size_overrides(name, image_size=image_size, embed_dim=embed_dim)
        model = create_model(name, **overrides).eval()
        sizes = input_options(name, overrides, image_size=image_size)
        batch = example_batch(
            spec.modalities, batch=1, frames=frames, embed_dim=sizes["embed_dim"],
            image_size=sizes["image_size"], words=words, frame_samples=sizes["frame_samples"],
        )
        if "word_mask" in batch:  # the cost of full word slots (the worst case)
            batch["word_mask"][:] = True
        if "face_mask" in batch:
            batch["face_mask"][:] = True
        flops = count_flops(model, batch)
        rows.append({
            "name": name,
            "modalities": ",".join(spec.modalities),
            "params": count_parameters(model),
            "flops_per_frame": flops / frames,
            "paper_ref": spec.paper_ref,
            "description": spec.description,
        })
    return rows
