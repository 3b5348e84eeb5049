"""Face augmentation: make training faces look like the face crops of real video.

The face branch sees, at prediction time, the 96×96 (or 48×48) colour crops
that :mod:`mmaffect.preprocess.faces` cuts around a Haar detection in a
compressed video; FER+ gives it grey, tightly cropped 48×48 stills. This
module closes the gap on the training side with kornia's batch augmentations
(pure PyTorch, on the training device), in this order:

1. **crop box**: random rotation, zoom and shift (``kornia.augmentation.
   RandomAffine``, edges replicated as :mod:`mmaffect.preprocess.faces` pads
   a crop), then a horizontal mirror;
2. **skin tint**: a grey face multiplied per channel by the gains of a random
   skin tone (:class:`RandomSkinTint`; FER+ has no colour at all, so without
   it the network never sees a colour face);
3. **camera colour**: brightness, contrast, saturation (and optionally hue)
   jitter, then a random conversion to greyscale;
4. **optics and codec**: Gaussian blur, JPEG compression.

:class:`FaceAugment` is built from a mapping (:meth:`FaceAugment.from_config`;
the keys are :data:`DEFAULTS`, documented in ``configs/pretrain_faces.yaml``
``augment`` and ``configs/train.yaml`` ``augment.faces``). It works on float
batches in [0, 1]:

* stills ``(N, 3, S, S)`` (``mmaffect pretrain-faces``): independent
  parameters per image;
* sequences ``(B, T, 3, S, S)`` with ``face_mask`` ``(B, T)`` (``mmaffect
  train``): **one** parameter set per sequence — a 10-s window shows one
  person under one camera — plus an optional small per-frame shift/zoom
  (``frame_jitter``: the detector's box moves a little from frame to frame).
  Only frames whose mask is True are touched; masked frames keep their zeros.

``seed=`` makes a call deterministic without disturbing the caller's random
stream (kornia draws its parameters from the global CPU generator; the call
runs inside :func:`torch.random.fork_rng`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import kornia.augmentation as K
import torch
from torch import nn

from mmaffect.errors import ConfigError

__all__ = ["DEFAULTS", "SKIN_TONES", "RandomSkinTint", "FaceAugment", "face_augment_from_config"]

SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (255, 224, 196), (241, 194, 167), (234, 192, 134), (224, 172, 138), (198, 134, 101),
    (181, 128, 94), (161, 102, 73), (141, 85, 60), (120, 78, 56),
)
"""RGB skin colours from light to dark (the palette of the composite corpus' renderer)."""

_LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, what RandomGrayscale and the video's luma use

DEFAULTS: dict[str, Any] = {
    "rotate": 10.0,         # degrees, +-
    "scale": 0.1,           # zoom +- (crop box size): content scale in zoom * [1 - scale, 1 + scale]
    "zoom": 1.0,            # mean content scale (< 1: the face fills less of the crop, as in video crops)
    "translate": 0.1,       # shift +- fraction of the side (crop box position)
    "flip": True,           # horizontal mirror with probability 0.5
    "tint": 0.8,            # probability of a skin-tone tint
    "tint_jitter": 0.05,    # +- relative per-channel variation of the tone's gains
    "brightness": 0.3,      # factor 1 +- this
    "contrast": 0.3,        # factor 1 +- this
    "saturation": 0.3,      # factor 1 +- this
    "hue": 0.0,             # +- fraction of the hue circle (0 = off; costs a colour-space conversion)
    "color_p": 0.8,         # probability of the brightness/contrast/saturation/hue jitter
    "grayscale": 0.2,       # probability of a grey image
    "blur": 0.3,            # probability of a Gaussian blur
    "blur_sigma": [0.002, 0.025],  # sigma range as a fraction of the side (0.1-1.2 px at 48, 0.2-2.4 at 96)
    "jpeg": 0.25,           # probability of JPEG compression
    "jpeg_quality": [30, 90],      # JPEG quality range
    "frame_jitter": 0.02,   # sequences only: per-frame shift and zoom +- this (0 = none)
}
"""Keys of a face-augmentation mapping and their defaults (0 / false turns a step off)."""


class RandomSkinTint(K.IntensityAugmentationBase2D):
    """Multiply an image per channel by the gains of a random skin tone (a kornia augmentation).

    The tone is drawn uniformly from :data:`SKIN_TONES`, each gain varied by
    ``± jitter`` (relative), and the gains are scaled so that the tone's luma
    is 1: the tint adds colour, the brightness jitter changes the brightness.
    Output clamped to [0, 1].
    """

    def __init__(self, *, jitter: float = 0.05, p: float = 0.8) -> None:
        super().__init__(p=p)
        self.jitter = float(jitter)

    def generate_parameters(self, batch_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
        """(n, 3) per-channel ``gains`` drawn from the global CPU generator, as kornia's own generators."""
        n = int(batch_shape[0])
        tones = torch.tensor(SKIN_TONES, dtype=torch.float32) / 255.0
        gains = tones[torch.randint(len(tones), (n,))]
        gains = gains * (1.0 + self.jitter * (2.0 * torch.rand(n, 3) - 1.0))
        gains = gains / (gains @ torch.tensor(_LUMA))[:, None]
        return {"gains": gains}

    def apply_transform(self, input: torch.Tensor, params: dict[str, torch.Tensor], flags: dict[str, Any],
                        transform: torch.Tensor | None = None) -> torch.Tensor:
        """``input`` × the gains, clamped to [0, 1]."""
        gains = params["gains"].to(device=input.device, dtype=input.dtype)
        return (input * gains[:, :, None, None]).clamp(0.0, 1.0)


def _number(cfg: Mapping[str, Any], key: str, *, low: float, high: float, where: str) -> float:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= float(value) <= high:
        raise ConfigError(f"{where}.{key}: must be a number from {low:g} to {high:g}, got {value!r}")
    return float(value)


def _pair(cfg: Mapping[str, Any], key: str, *, low: float, high: float, where: str) -> tuple[float, float]:
    value = cfg[key]
    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) for v in value)
    if not ok or not low <= float(value[0]) <= float(value[1]) <= high:
        raise ConfigError(f"{where}.{key}: must be [min, max] with {low:g} <= min <= max <= {high:g}, got {value!r}")
    return float(value[0]), float(value[1])


def _probability(cfg: Mapping[str, Any], key: str, *, where: str) -> float:
    return _number(cfg, key, low=0.0, high=1.0, where=where)


_PER_CALL_KEYS = ("order", "forward_input_shape", "dtype")  # kornia parameters that are not per sample


def _subset(params: Mapping[str, Any], index: torch.Tensor, n: int, shape: torch.Size) -> dict[str, Any]:
    """Kornia parameters of a batch of ``n`` → those of the rows ``index`` (per-sample tensors indexed)."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "forward_input_shape":
            out[key] = torch.tensor(tuple(shape), dtype=torch.long)
        elif key not in _PER_CALL_KEYS and torch.is_tensor(value) and value.ndim >= 1 and value.shape[0] == n:
            out[key] = value[index.to(value.device)]
        else:
            out[key] = value
    return out


@contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Run the block on a private CPU random stream seeded by ``seed`` (no-op for None)."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


class FaceAugment(nn.Module):
    """Random face augmentation for stills ``(N, 3, S, S)`` and sequences ``(B, T, 3, S, S)``.

    Build it with :meth:`from_config`; the options are those of
    :data:`DEFAULTS`. Inputs are float in [0, 1]; outputs keep shape, dtype and
    device and stay in [0, 1].
    """

    def __init__(self, *, rotate: float, scale: float, zoom: float, translate: float, flip: bool, tint: float,
                 tint_jitter: float, brightness: float, contrast: float, saturation: float, hue: float,
                 color_p: float, grayscale: float, blur: float, blur_sigma: tuple[float, float], jpeg: float,
                 jpeg_quality: tuple[float, float], frame_jitter: float) -> None:
        super().__init__()
        self.blur_sigma = (float(blur_sigma[0]), float(blur_sigma[1]))
        self.blur = float(blur)
        stages: list[nn.Module] = []
        if rotate > 0 or scale > 0 or zoom != 1.0 or translate > 0:
            stages.append(K.RandomAffine(degrees=rotate, translate=(translate, translate) if translate > 0 else None,
                                         scale=(zoom * (1.0 - scale), zoom * (1.0 + scale)),
                                         padding_mode="border", p=1.0))
        if flip:
            stages.append(K.RandomHorizontalFlip(p=0.5))
        if tint > 0:
            stages.append(RandomSkinTint(jitter=tint_jitter, p=tint))
        if color_p > 0:
            if brightness > 0:
                stages.append(K.RandomBrightness((1.0 - brightness, 1.0 + brightness), p=color_p))
            if contrast > 0:
                stages.append(K.RandomContrast((1.0 - contrast, 1.0 + contrast), p=color_p))
            if saturation > 0:
                stages.append(K.RandomSaturation((1.0 - saturation, 1.0 + saturation), p=color_p))
            if hue > 0:
                stages.append(K.RandomHue((-hue, hue), p=color_p))
        if grayscale > 0:
            stages.append(K.RandomGrayscale(p=grayscale))
        self._blur_index = -1
        if blur > 0:
            self._blur_index = len(stages)
            stages.append(K.RandomGaussianBlur((3, 3), (1.0, 1.0), p=blur))  # rebuilt for the image size
        if jpeg > 0:
            stages.append(K.RandomJPEG(jpeg_quality=(float(jpeg_quality[0]), float(jpeg_quality[1])), p=jpeg))
        self.stages = nn.ModuleList(stages)
        self.frame_jitter = None
        if frame_jitter > 0:
            self.frame_jitter = K.RandomAffine(degrees=0.0, translate=(frame_jitter, frame_jitter),
                                               scale=(1.0 - frame_jitter, 1.0 + frame_jitter),
                                               padding_mode="border", p=1.0)
        self._blur_size = -1

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None, *, where: str = "augment") -> "FaceAugment":
        """A :class:`FaceAugment` from a mapping of :data:`DEFAULTS` keys (missing keys take the defaults).

        ``enabled`` is accepted and ignored (the caller decides). Raises
        :class:`ConfigError` naming ``where.key`` for an unknown key or a bad value.
        """
        cfg = dict(config or {})
        cfg.pop("enabled", None)
        unknown = sorted(set(cfg) - set(DEFAULTS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: enabled, "
                              f"{', '.join(DEFAULTS)})")
        cfg = {**DEFAULTS, **cfg}
        if not isinstance(cfg["flip"], bool):
            raise ConfigError(f"{where}.flip: must be true or false, got {cfg['flip']!r}")
        return cls(
            rotate=_number(cfg, "rotate", low=0, high=180, where=where),
            scale=_number(cfg, "scale", low=0, high=0.9, where=where),
            zoom=_number(cfg, "zoom", low=0.25, high=2.0, where=where),
            translate=_number(cfg, "translate", low=0, high=0.5, where=where),
            flip=cfg["flip"],
            tint=_probability(cfg, "tint", where=where),
            tint_jitter=_number(cfg, "tint_jitter", low=0, high=0.5, where=where),
            brightness=_number(cfg, "brightness", low=0, high=0.9, where=where),
            contrast=_number(cfg, "contrast", low=0, high=0.9, where=where),
            saturation=_number(cfg, "saturation", low=0, high=0.9, where=where),
            hue=_number(cfg, "hue", low=0, high=0.5, where=where),
            color_p=_probability(cfg, "color_p", where=where),
            grayscale=_probability(cfg, "grayscale", where=where),
            blur=_probability(cfg, "blur", where=where),
            blur_sigma=_pair(cfg, "blur_sigma", low=1e-4, high=0.2, where=where),
            jpeg=_probability(cfg, "jpeg", where=where),
            jpeg_quality=_pair(cfg, "jpeg_quality", low=1, high=100, where=where),
            frame_jitter=_number(cfg, "frame_jitter", low=0, high=0.2, where=where),
        )

    def _fit_blur(self, size: int) -> None:
        """Make the blur's kernel and sigma range follow the image side (sigma is a fraction of it)."""
        if self._blur_index < 0 or size == self._blur_size:
            return
        lo, hi = self.blur_sigma[0] * size, self.blur_sigma[1] * size
        kernel = 2 * max(1, math.ceil(3.0 * hi)) + 1
        self.stages[self._blur_index] = K.RandomGaussianBlur((kernel, kernel), (lo, hi), p=self.blur)
        self._blur_size = size

    @staticmethod
    def _check(images: torch.Tensor, ndim: int, what: str) -> None:
        if images.ndim != ndim or images.shape[-3] != 3 or images.shape[-1] != images.shape[-2]:
            raise ConfigError(f"face augmentation: {what} must be {'(N, 3, S, S)' if ndim == 4 else '(B, T, 3, S, S)'}"
                              f", got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise ConfigError(f"face augmentation: {what} must be float in [0, 1], got {images.dtype}")

    @staticmethod
    def _apply_stage(stage: nn.Module, x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
        """Run ``stage`` only on the rows its ``batch_prob`` selects (kornia would transform all of them)."""
        chosen = params["batch_prob"] > 0.5
        if not bool(chosen.any()):
            return x
        if bool(chosen.all()):
            return stage(x, params=params)
        rows = chosen.nonzero().squeeze(1)
        sub = _subset(params, rows, x.shape[0], torch.Size((len(rows), *x.shape[1:])))
        out = x.clone()
        out[rows.to(x.device)] = stage(x[rows.to(x.device)], params=sub).to(x.dtype)
        return out

    def _run(self, x: torch.Tensor, groups: torch.Tensor | None, n_groups: int) -> torch.Tensor:
        """Every stage on ``x`` (N, 3, S, S); rows of one group share parameters when ``groups`` is given."""
        self._fit_blur(int(x.shape[-1]))
        for stage in self.stages:
            if groups is None:
                params = stage.forward_parameters(x.shape)
            else:
                drawn = stage.forward_parameters(torch.Size((n_groups, *x.shape[1:])))
                params = _subset(drawn, groups, n_groups, x.shape)
            x = self._apply_stage(stage, x, params)
        return x.clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """Stills (N, 3, S, S) → augmented stills, independent parameters per image."""
        self._check(images, 4, "images")
        if images.shape[0] == 0:
            return images.clone()
        with _seeded(seed):
            return self._run(images, None, 0)

    def sequences(self, faces: torch.Tensor, mask: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """Sequences (B, T, 3, S, S) with ``mask`` (B, T) → augmented copy.

        One parameter set per sequence for every stage, the same for all its
        frames, plus the per-frame ``frame_jitter``; frames whose mask is
        False are returned unchanged.
        """
        self._check(faces, 5, "faces")
        if mask.shape != faces.shape[:2]:
            raise ConfigError(f"face augmentation: face_mask {tuple(mask.shape)} does not match faces "
                              f"{tuple(faces.shape[:2])}")
        b_idx, t_idx = mask.to(torch.bool).nonzero(as_tuple=True)
        out = faces.clone()
        if len(b_idx) == 0:
            return out
        with _seeded(seed):
            x = self._run(faces[b_idx, t_idx], b_idx.cpu(), int(faces.shape[0]))
            if self.frame_jitter is not None:
                x = self.frame_jitter(x).clamp(0.0, 1.0)
        out[b_idx, t_idx] = x.to(out.dtype)
        return out


def face_augment_from_config(config: Mapping[str, Any] | None, *, where: str) -> FaceAugment | None:
    """The :class:`FaceAugment` of a mapping with ``enabled: true``, else None (validated either way)."""
    cfg = dict(config or {})
    enabled = cfg.get("enabled", False)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{where}.enabled: must be true or false, got {enabled!r}")
    augment = FaceAugment.from_config(cfg, where=where)
    return augment if enabled else None
