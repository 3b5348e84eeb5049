"""Visual branch: a 3-stage HRNet with hierarchical attentional pooling (Section 4.1.3)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import checkpointed, frame_presence, scatter_frames
from mmaffect.models.optimize import to_channels_last
from mmaffect.models.registry import register_branch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _linear_weights_1d(src: int, dst: int) -> np.ndarray:
    """(dst, src) weights of 1-D linear interpolation as ``F.interpolate``
    computes them for ``align_corners=False`` without a scale factor."""
    w = np.zeros((dst, src))
    scale = src / dst
    for o in range(dst):
        pos = max(scale * (o + 0.5) - 0.5, 0.0)
        i0 = int(pos)
        i1 = i0 + 1 if i0 < src - 1 else i0
        frac = pos - i0
        w[o, i0] += 1.0 - frac
        w[o, i1] += frac
    return w


@functools.lru_cache(maxsize=32)
def _upsampling_matrix_np(src: tuple[int, int], dst: tuple[int, int]) -> np.ndarray:
    return np.kron(_linear_weights_1d(src[0], dst[0]), _linear_weights_1d(src[1], dst[1]))


def upsampling_matrix(src: tuple[int, int], dst: tuple[int, int], device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(dst_h·dst_w, src_h·src_w) matrix U of bilinear upsampling
    (``align_corners=False``): ``up(x).flatten(-2) = x.flatten(-2) @ U.T``.
    Built from numbers (not torch ops), so it is a constant under tracing."""
    return torch.from_numpy(_upsampling_matrix_np(tuple(src), tuple(dst))).to(device=device, dtype=dtype)


def conv_bn(c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, relu: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (two conv3×3 + BN, identity shortcut), HRNet's branch unit."""

    def __init__(self, *, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.body(x) + x)  # in place on the fresh sum: one tensor less


class Bottleneck(nn.Module):
    """ResNet bottleneck (1×1 → 3×3 → 1×1, expansion 4), HRNet's stage-1 unit."""

    def __init__(self, *, c_in: int, planes: int) -> None:
        super().__init__()
        c_out = planes * 4
        self.body = nn.Sequential(
            conv_bn(c_in, planes, kernel=1), conv_bn(planes, planes), conv_bn(planes, c_out, kernel=1, relu=False)
        )
        self.shortcut = nn.Identity() if c_in == c_out else conv_bn(c_in, c_out, kernel=1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu_(self.shortcut(x) + self.body(x))


class HRModule(nn.Module):
    """One HRNet module (Wang et al.; reference notes, Visual branch): ``blocks``
    basic blocks per parallel branch, then multi-resolution fusion
    ``y_i = ReLU(Σ_j f_ij(x_j))`` with f_ij = identity (i = j), conv1×1 + BN +
    nearest upsampling (j > i), chained stride-2 conv3×3 + BN (j < i)."""

    def __init__(self, *, widths: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(BasicBlock(channels=w) for _ in range(blocks))) for w in widths
        )
        self.fuse = nn.ModuleList()
        for i, wi in enumerate(widths):
            row = nn.ModuleList()
            for j, wj in enumerate(widths):
                if j == i:
                    row.append(nn.Identity())
                elif j > i:
                    row.append(conv_bn(wj, wi, kernel=1, relu=False))
                else:  # i - j stride-2 convs, ReLU between them, none after the last
                    steps = [conv_bn(wj, wj, stride=2) for _ in range(i - j - 1)]
                    steps.append(conv_bn(wj, wi, stride=2, relu=False))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse):
            total = xs[i]
            for j, f in enumerate(row):
                if j == i:
                    continue
                y = f(xs[j])
                if j > i:
                    y = F.interpolate(y, size=xs[i].shape[-2:], mode="nearest")
                total = total + y
            out.append(F.relu(total) if total is xs[i] else torch.relu_(total))
        return out


INFERENCE_FRAMES = 32
"""Faces per HRNet-3 forward pass without gradients (:meth:`HRNetAttPool.forward`)."""


@register_branch(
    "visual-hrnet3-attpool", modality="visual",
    description="3-stage HRNet with attentional (low-rank second-order) pooling (the paper's visual network)",
    paper_ref="Sec. 4.1.3",
    tiny={"widths": (4, 8, 16), "blocks": 1, "stem_channels": 8, "image_size": 32, "n_attention_classes": 8},
)
class HRNetAttPool(Branch):
    """Visual network of Section 4.1.3: HRNet (Wang et al.) of 3 stages with the
    final average pooling replaced by hierarchical attention (reference notes,
    Visual branch).

    Backbone: stem of two stride-2 conv3×3 (``stem_channels``) → stage 1
    (``blocks`` bottlenecks, 4·stem_channels wide) → stage 2 (branches at 1/4
    and 1/8, ``widths[:2]``) → stage 3 (1/4, 1/8, 1/16, ``widths``); each
    stage ``stage_modules`` HR modules with multi-resolution fusion. Stage 4 of
    HRNet is dropped ("3 stages", reading of the notes).

    Head (our reading of "attentional pooling [45] ... another attention
    between the feature maps"):

    1. Attentional pooling (Girdhar & Ramanan 2017, low-rank second-order
       pooling, rank ``attention_rank``): a bottom-up saliency map
       ``a_r = conv1×1(X → 1)`` over the HRNetV2 representation X (all
       branches upsampled to 1/4 and concatenated), and per resolution branch
       i a top-down map ``T_i = conv1×1(X_i → K·rank)``;
       ``out_{i,k} = Σ_r mean_s a_{r,s} T_{i,k,r,s}`` (K =
       ``n_attention_classes``). Both 1×1 maps are computed at each branch's
       own resolution and upsampled (bilinear), which equals computing them
       on the upsampled maps (linear ops commute). With
       ``spatial_softmax=True`` the saliency is a softmax over positions and
       the mean becomes the weighted sum (attention weights that sum to one).
    2. Attention between the feature maps: each branch's pooled vector gets a
       selector score ``(w·out_i + b)/sqrt(K)``, softmax over the branches,
       weighted sum → dropout → features. ``out_dim = K``.

    ``attention = {'spatial': (B, T, h, w) saliency (mean over ranks),
    'branches': (B, T, n_branches)}``. Input ``batch['faces']`` (B, T, 3, S, S)
    in [0, 1], normalised inside with the ImageNet mean/std; only frames with
    ``batch['face_mask']`` are computed, others get zero features and
    ``present=False``.

    ``mirror_average=True`` (not in the paper; default off): every face is
    seen twice, as cropped and mirrored left-right, and the two views'
    features are averaged, so the features — and the affect read from them —
    do not depend on which way the camera mirrors the picture (phones'
    front cameras do) or on the face's left-right asymmetries of lighting
    and pose. Twice the branch's compute; same weights, so a checkpoint
    trained without it loads with it.

    ``checkpoint=True`` (default): in training with grad enabled the stem, each
    stage-1 bottleneck, each transition, each HR module and the attentional
    pooling run under activation checkpointing (only their inputs are kept,
    recomputed in backward; ``layers.checkpointed``). Outputs, gradients and
    batch-norm running statistics are identical to ``checkpoint=False``;
    peak memory of a training step is about 40 % lower for this branch, its
    forward + backward about 1.4× slower.
    """

    modality = "visual"
    #: the axes of each attention tensor after (batch, time)
    ATTENTION_AXES = {"spatial": ("height", "width"), "branches": ("resolution branch",)}

    def __init__(
        self,
        *,
        widths: tuple[int, ...] = (18, 36, 72),
        blocks: int = 2,
        stem_channels: int = 64,
        image_size: int = 96,
        attention_rank: int = 1,
        n_attention_classes: int = 256,
        dropout: float = 0.2,
        stage_modules: tuple[int, int] = (1, 1),
        spatial_softmax: bool = False,
        checkpoint: bool = True,
        mirror_average: bool = False,
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError("HRNetAttPool has 3 stages, so exactly 3 branch widths")
        if image_size % 16:
            raise ValueError("image_size must be a multiple of 16 (branches down to 1/16)")
        self.image_size, self.rank, self.k = image_size, attention_rank, n_attention_classes
        self.spatial_softmax = spatial_softmax
        self.checkpoint = checkpoint
        self.mirror_average = mirror_average
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            conv_bn(3, stem_channels, stride=2), conv_bn(stem_channels, stem_channels, stride=2)
        )
        c1 = stem_channels * 4
        self.stage1 = nn.Sequential(
            Bottleneck(c_in=stem_channels, planes=stem_channels),
            *(Bottleneck(c_in=c1, planes=stem_channels) for _ in range(blocks - 1)),
        )
        self.transition1 = nn.ModuleList([conv_bn(c1, widths[0]), conv_bn(c1, widths[1], stride=2)])
        self.stage2 = nn.ModuleList(HRModule(widths=widths[:2], blocks=blocks) for _ in range(stage_modules[0]))
        self.transition2 = conv_bn(widths[1], widths[2], stride=2)
        self.stage3 = nn.ModuleList(HRModule(widths=widths, blocks=blocks) for _ in range(stage_modules[1]))
        self.saliency = nn.ModuleList(nn.Conv2d(w, attention_rank, 1, bias=(i == 0)) for i, w in enumerate(widths))
        self.top_down = nn.ModuleList(nn.Conv2d(w, n_attention_classes * attention_rank, 1) for w in widths)
        self.branch_score = nn.Linear(n_attention_classes, 1)
        self.drop = nn.Dropout(dropout)
        self.n_branches = len(widths)
        self.out_dim = n_attention_classes
        # Speed only: channels-last convolution weights make oneDNN run every
        # convolution (and the batch norms, additions and ReLUs after it) in
        # NHWC without a reorder around each call; 1.3-1.7x faster training
        # and inference on CPU (docs/benchmarks.md, "Side by side with
        # End2You"). Same values, and a state dict holds the same numbers.
        to_channels_last(self)

    def backbone(self, x: torch.Tensor) -> list[torch.Tensor]:
        def ckpt(module: nn.Module, fn, *args):
            return checkpointed(module, fn, *args, enabled=self.checkpoint)

        h = ckpt(self.stem, lambda x: self.stem((x - self.mean) / self.std), x)
        for block in self.stage1:
            h = ckpt(block, block, h)
        xs = ckpt(self.transition1, lambda h: [t(h) for t in self.transition1], h)
        for m in self.stage2:
            xs = ckpt(m, lambda *xs, m=m: m(list(xs)), *xs)
        xs = [*xs, ckpt(self.transition2, self.transition2, xs[-1])]
        for m in self.stage3:
            xs = ckpt(m, lambda *xs, m=m: m(list(xs)), *xs)
        return xs

    def attention_pool(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Branch maps → saliency ``a`` (n, rank, h, w) and per-branch pooled
        vectors (n, branches, K) (step 1 of the head).

        Computed in the cheap order: with ``U_i`` the bilinear upsampling of
        branch i (a linear map whose rows sum to one) and ``T_i = W_i X_i +
        b_i`` its top-down 1×1 map, ``Σ_s a_s (U_i T_i)_s = W_i (X_i U_iᵀ a)
        + b_i Σ_s a_s``: the saliency is pulled back to the branch's own grid
        (``U_iᵀ a``), the branch's w_i-channel maps are pooled with it, and
        only then projected to K·rank channels. The same numbers as
        :meth:`attention_pool_reference` (the formula as written, upsampled
        K·rank-channel maps times the saliency) to float rounding, without the
        (n, K·rank, h, w) tensors."""
        size = xs[0].shape[-2:]
        a = self._saliency(xs)
        if self.spatial_softmax:
            a = torch.softmax(a.flatten(2), dim=-1).view_as(a)
        flat = a.flatten(2)  # (n, r, S)
        total = flat.sum(dim=-1)  # (n, r): Σ_s a_s
        scale = 1.0 if self.spatial_softmax else 1.0 / (size[0] * size[1])
        pooled = []
        for conv, t in zip(self.top_down, xs):
            if t.shape[-2:] == size:
                weights = flat
            else:  # U_iᵀ a: (n, r, S) @ (S, S_i)
                weights = flat @ upsampling_matrix(tuple(t.shape[-2:]), tuple(size), t.device, t.dtype)
            p = torch.bmm(weights, t.flatten(2).transpose(1, 2))  # (n, r, w_i): X_i U_iᵀ a
            w = conv.weight.view(self.k, self.rank, -1)  # channel k·rank + r, as "(k r)"
            out = torch.einsum("nrc,krc->nk", p, w)
            if conv.bias is not None:
                out = out + total @ conv.bias.view(self.k, self.rank).t()
            pooled.append(out * scale)
        return a, torch.stack(pooled, dim=1)

    def _saliency(self, xs: list[torch.Tensor]) -> torch.Tensor:
        """Bottom-up saliency (n, rank, h, w) before any softmax: conv1×1 over
        the concatenated upsampled maps = sum of per-branch conv1×1s."""
        size = xs[0].shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        return sum(up(conv(t)) for conv, t in zip(self.saliency, xs))

    def attention_pool_reference(self, xs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`attention_pool` as the formula reads (upsample every top-down
        map, multiply by the saliency, average): the ground truth it is tested
        against."""
        size = xs[0].shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        a = self._saliency(xs)  # (n, r, h, w)
        if self.spatial_softmax:
            a = torch.softmax(rearrange(a, "n r h w -> n r (h w)"), dim=-1).view_as(a)
            reduce = torch.sum
        else:
            reduce = torch.mean
        pooled = []
        for conv, t in zip(self.top_down, xs):
            td = rearrange(up(conv(t)), "n (k r) h w -> n k r h w", r=self.rank)
            pooled.append(reduce(td * a.unsqueeze(1), dim=(-2, -1)).sum(dim=-1))  # (n, K)
        return a, torch.stack(pooled, dim=1)

    def frame_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(n, 3, S, S) → features (n, K), saliency (n, h, w), branch weights (n, n_branches).

        With ``mirror_average``: the means over the crop and its mirror image (the mirror's saliency
        flipped back), so a face and its mirror image give the same features."""
        if not self.mirror_average:
            return self._view_features(x)
        n = x.shape[0]
        feats, sal, beta = self._view_features(torch.cat([x, x.flip(-1)]))
        return ((feats[:n] + feats[n:]) / 2, (sal[:n] + sal[n:].flip(-1)) / 2, (beta[:n] + beta[n:]) / 2)

    def _view_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xs = self.backbone(x)
        a, stacked = checkpointed(
            self.top_down, lambda *xs: self.attention_pool(list(xs)), *xs, enabled=self.checkpoint
        )  # stacked: (n, branches, K)
        beta = torch.softmax(self.branch_score(stacked).squeeze(-1) / math.sqrt(self.k), dim=-1)
        feats = self.drop(torch.einsum("nb,nbk->nk", beta, stacked))
        return feats, a.mean(dim=1), beta

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, 3, S, S) → features (N, K), ``{"spatial": (N, h, w), "branches": (N, n_branches)}``
        (traceable as it is: the upsampling matrices are constants)."""
        feats, sal, beta = self.frame_features(x)
        return feats, {"spatial": sal, "branches": beta}

    def forward(self, batch: Batch) -> BranchOutput:
        faces = batch["faces"]
        b, t = faces.shape[:2]
        present = frame_presence(batch, "face_mask", (b, t), faces.device)
        keep = rearrange(present, "b t -> (b t)")
        flat = rearrange(faces, "b t c h w -> (b t) c h w")
        idx = keep.nonzero(as_tuple=True)[0]
        hw = math.ceil(math.ceil(faces.shape[-1] / 2) / 2)  # 1/4 resolution after the stride-2 stem
        if idx.numel() and not torch.is_grad_enabled() and idx.numel() > INFERENCE_FRAMES:
            # Inference: INFERENCE_FRAMES faces at a time (each is computed on its own, so the values
            # are the same), so memory stays flat however long the chunk `predict` passes in.
            parts = [self.frame_features(flat[idx[k:k + INFERENCE_FRAMES]])
                     for k in range(0, idx.numel(), INFERENCE_FRAMES)]
            feats, sal, beta = (torch.cat(p) for p in zip(*parts))
        elif idx.numel():
            feats, sal, beta = self.frame_features(flat[idx])
        else:
            feats = faces.new_zeros(0, self.out_dim)
            sal = faces.new_zeros(0, hw, hw)
            beta = faces.new_zeros(0, self.n_branches)
        features = scatter_frames(feats, keep, (self.out_dim,))
        spatial = scatter_frames(sal, keep, tuple(sal.shape[1:]))
        branches = scatter_frames(beta, keep, (self.n_branches,))
        return BranchOutput(
            features=rearrange(features, "(b t) d -> b t d", b=b),
            present=present,
            attention={
                "spatial": rearrange(spatial, "(b t) h w -> b t h w", b=b),
                "branches": rearrange(branches, "(b t) n -> b t n", b=b),
            },
        )
