"""Visual branch: a 3-stage HRNet with hierarchical attentional pooling (Section 4.1.3)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import checkpointed, frame_presence, scatter_frames

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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
        return F.relu(x + self.body(x))


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
        return F.relu(self.shortcut(x) + self.body(x))


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
            out.append(F.relu(total))
        return out


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

    ``checkpoint=True`` (default): in training with grad enabled the stem, each
    stage-1 bottleneck, each transition, each HR module and the attentional
    pooling run under activation checkpointing (only their inputs are kept,
    recomputed in backward; ``layers.checkpointed``). Outputs, gradients and
    batch-norm running statistics are identical to ``checkpoint=False``;
    peak memory of a training step is about 40 % lower for this branch, its
    forward + backward about 1.4× slower.
    """

    modality = "visual"

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
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError("HRNetAttPool has 3 stages, so exactly 3 branch widths")
        if image_size % 16:
            raise ValueError("image_size must be a multiple of 16 (branches down to 1/16)")
        self.image_size, self.rank, self.k = image_size, attention_rank, n_attention_classes
        self.spatial_softmax = spatial_softmax
        self.checkpoint = checkpoint
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
        vectors (n, branches, K) (step 1 of the head)."""
        size = xs[0].shape[-2:]

        def up(t: torch.Tensor) -> torch.Tensor:
            return t if t.shape[-2:] == size else F.interpolate(t, size=size, mode="bilinear", align_corners=False)

        # conv1×1 over the concatenated maps = sum of per-branch conv1×1s.
        a = sum(up(conv(t)) for conv, t in zip(self.saliency, xs))  # (n, r, h, w)
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
        """(n, 3, S, S) → features (n, K), saliency (n, h, w), branch weights (n, n_branches)."""
        xs = self.backbone(x)
        a, stacked = checkpointed(
            self.top_down, lambda *xs: self.attention_pool(list(xs)), *xs, enabled=self.checkpoint
        )  # stacked: (n, branches, K)
        beta = torch.softmax(self.branch_score(stacked).squeeze(-1) / math.sqrt(self.k), dim=-1)
        feats = self.drop(torch.einsum("nb,nbk->nk", beta, stacked))
        return feats, a.mean(dim=1), beta

    def forward(self, batch: Batch) -> BranchOutput:
        faces = batch["faces"]
        b, t = faces.shape[:2]
        present = frame_presence(batch, "face_mask", (b, t), faces.device)
        keep = rearrange(present, "b t -> (b t)")
        flat = rearrange(faces, "b t c h w -> (b t) c h w")
        idx = keep.nonzero(as_tuple=True)[0]
        hw = math.ceil(math.ceil(faces.shape[-1] / 2) / 2)  # 1/4 resolution after the stride-2 stem
        if idx.numel():
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
