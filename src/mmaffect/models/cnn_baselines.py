"""Visual baselines of the ablation (Section 5.5, Table 2) in plain torch.

VGG-16, ResNet-50, DenseNet-121 and MobileNet (v1), standard architectures
applied to 96×96 face crops: the convolutional body unchanged, the ImageNet
classifier replaced by global average pooling, so the feature is the width
of the last convolutional stage (VGG-16 512, ResNet-50 2,048, DenseNet-121
1,024, MobileNet 1,024). VGG's fc6/fc7 are not used: they assume a 7×7 map
(224-px input) and would add 120 M parameters for a 3×3 map.

Module names follow torchvision's, so ``pretrained=<local file>`` loads a
torchvision ImageNet state dict as is (classifier keys are ignored; DenseNet's
legacy ``norm.1``-style keys are renamed). torchvision has no MobileNet v1;
its weights use this module's names (``features.<i>.<j>``). Nothing is
downloaded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from mmaffect.models.base import Batch, Branch, BranchOutput
from mmaffect.models.layers import frame_presence, run_on_present
from mmaffect.models.registry import register_branch
from mmaffect.models.visual import IMAGENET_MEAN, IMAGENET_STD

_DENSENET_LEGACY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def load_torchvision_weights(model: nn.Module, path: str | Path, *, head_prefixes: tuple[str, ...]) -> None:
    """Load a local torchvision-format state dict into ``model``.

    Accepts a bare state dict or one under ``state_dict``/``model``; strips a
    ``module.`` (DataParallel) prefix; renames DenseNet's legacy keys; drops
    the classifier (``head_prefixes``). Every other key must match exactly.
    """
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        match = _DENSENET_LEGACY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        if key.startswith(head_prefixes):
            continue
        cleaned[key] = value
    result = model.load_state_dict(cleaned, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit {type(model).__name__}: missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


class _GapBaseline(Branch):
    """Shared per-frame plumbing: ImageNet normalisation, body → global
    average pooling, computation on frames with a face only."""

    modality = "visual"
    head_prefixes: tuple[str, ...] = ("classifier.", "fc.")

    def _finish_init(self, pretrained: str | None) -> None:
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pretrained is not None:
            load_torchvision_weights(self, pretrained, head_prefixes=self.head_prefixes)

    def body(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.std).mean(dim=(-2, -1))

    def frame_forward(self, x: torch.Tensor, x_mask: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every frame (N, 3, S, S) → features (N, out_dim), no attention (traceable as it is)."""
        return self.frame_features(x), {}

    def forward(self, batch: Batch) -> BranchOutput:
        faces = batch["faces"]
        present = frame_presence(batch, "face_mask", tuple(faces.shape[:2]), faces.device)
        return BranchOutput(run_on_present(self.frame_features, faces, present, self.out_dim), present, {})


@register_branch("visual-vgg16", modality="visual", description="VGG-16 (ablation)",
                 paper_ref="Sec. 5.5, Table 2")
class VGG16(_GapBaseline):
    """VGG-16 (Simonyan & Zisserman; Table 2 baseline, Section 5.5): 13 conv3×3
    + ReLU layers in 5 max-pooled stages, no batch norm (torchvision
    ``vgg16``), global average pooling; ``out_dim = 512``."""

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c_in, int(v), 3, padding=1), nn.ReLU(inplace=True)]
                c_in = int(v)
        self.features = nn.Sequential(*layers)
        self.out_dim = 512
        self._finish_init(pretrained)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class _ResNetBottleneck(nn.Module):
    """torchvision ``Bottleneck`` (ResNet v1.5: stride on the 3×3 conv)."""

    def __init__(self, c_in: int, planes: int, stride: int) -> None:
        super().__init__()
        c_out = planes * 4
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
            if stride != 1 or c_in != c_out
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + (x if self.downsample is None else self.downsample(x)))


@register_branch("visual-resnet50", modality="visual", description="ResNet-50 (ablation)",
                 paper_ref="Sec. 5.5, Table 2")
class ResNet50(_GapBaseline):
    """ResNet-50 (He et al.; Table 2 baseline, Section 5.5), torchvision
    layout (v1.5), global average pooling; ``out_dim = 2,048``."""

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c_in = 64
        for i, (planes, n, stride) in enumerate(((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)), start=1):
            blocks = [_ResNetBottleneck(c_in, planes, stride)]
            c_in = planes * 4
            blocks += [_ResNetBottleneck(c_in, planes, 1) for _ in range(n - 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.out_dim = 2048
        self._finish_init(pretrained)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        h = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        for i in range(1, 5):
            h = getattr(self, f"layer{i}")(h)
        return h


class _DenseLayer(nn.Module):
    """torchvision ``_DenseLayer``: BN-ReLU-conv1×1 (bn_size·growth) → BN-ReLU-conv3×3 (growth)."""

    def __init__(self, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, bn_size * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth)
        self.conv2 = nn.Conv2d(bn_size * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(torch.cat(features, dim=1))))
        return self.conv2(F.relu(self.norm2(h)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, n_layers: int, c_in: int, growth: int, bn_size: int) -> None:
        super().__init__(
            {f"denselayer{i + 1}": _DenseLayer(c_in + i * growth, growth, bn_size) for i in range(n_layers)}
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, dim=1)


@register_branch("visual-densenet121", modality="visual", description="DenseNet-121 (ablation)",
                 paper_ref="Sec. 5.5, Table 2")
class DenseNet121(_GapBaseline):
    """DenseNet-121 (Huang et al.; Table 2 baseline, Section 5.5), torchvision
    layout: growth 32, blocks (6, 12, 24, 16), bn_size 4, compression 0.5,
    final BN + ReLU, global average pooling; ``out_dim = 1,024``."""

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        growth, bn_size, c = 32, 4, 64
        modules: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, c, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(c),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        for i, n in enumerate((6, 12, 24, 16), start=1):
            modules[f"denseblock{i}"] = _DenseBlock(n, c, growth, bn_size)
            c += n * growth
            if i != 4:
                modules[f"transition{i}"] = nn.Sequential(
                    OrderedDict(
                        norm=nn.BatchNorm2d(c),
                        relu=nn.ReLU(inplace=True),
                        conv=nn.Conv2d(c, c // 2, 1, bias=False),
                        pool=nn.AvgPool2d(2, 2),
                    )
                )
                c //= 2
        modules["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(modules)
        self.out_dim = c
        self._finish_init(pretrained)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))


@register_branch("visual-mobilenet", modality="visual", description="MobileNet v1 (ablation)",
                 paper_ref="Sec. 5.5, Table 2")
class MobileNetV1(_GapBaseline):
    """MobileNet v1 (Howard et al. 2017; Table 2 baseline, Section 5.5), width
    1.0: conv3×3/2 (32) then 13 depthwise-separable blocks (depthwise conv3×3
    + BN + ReLU, pointwise conv1×1 + BN + ReLU), global average pooling;
    ``out_dim = 1,024``. Keys: ``features.<i>.<j>`` (no torchvision model)."""

    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *((512, 1),) * 5, (1024, 2), (1024, 1))

    def __init__(self, *, pretrained: str | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True))
        ]
        c_in = 32
        for c_out, stride in self.BLOCKS:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(c_in, c_in, 3, stride, 1, groups=c_in, bias=False),
                    nn.BatchNorm2d(c_in),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(c_in, c_out, 1, bias=False),
                    nn.BatchNorm2d(c_out),
                    nn.ReLU(inplace=True),
                )
            )
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.out_dim = c_in
        self._finish_init(pretrained)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


__all__ = ["VGG16", "ResNet50", "DenseNet121", "MobileNetV1", "load_torchvision_weights"]
