"""Modality dropout: a training window is given with whole modalities missing.

A real recording often lacks a modality for a while or throughout: no face in
view, no transcript, a muted track. A fusion trained only on windows where
every modality is present has never had to read one alone (the composite
fusion shipped on 4 Dec 2026 read EmoDB voices at arousal CCC 0.26 with no face;
trained with this, the one shipped on 5 Dec reads them at 0.67:
``recipes/composite/real-world/README.md``).

With ``augment.modalities.<m> = p``, each training window's modality ``m`` is
masked whole with probability ``p``: its mask (``audio_mask``, ``face_mask``,
``word_mask``) is set to False, exactly as ``predict`` gives a modality that is
absent, never replaced by zeros the network would read as data. The draws use
a generator seeded by (run seed, epoch, item), so runs are reproducible. A
window keeps at least one modality that has frames: if every present modality
was drawn, the one drawn last is kept. Devel and test recordings are never
touched.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mmaffect.errors import ConfigError

__all__ = ["MASK_KEYS", "ModalityDropout"]

MASK_KEYS = {"text": "word_mask", "audio": "audio_mask", "visual": "face_mask"}
"""Modality → the item's mask that says where it is present."""


@dataclass(frozen=True)
class ModalityDropout:
    """Probability per modality that a training window is given without it."""

    p: Mapping[str, float] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> ModalityDropout | None:
        """From ``augment.modalities`` (None or all zeros: None). Unknown modalities and
        probabilities outside [0, 1) are one-line :class:`ConfigError` s naming the key."""
        if not cfg:
            return None
        if not isinstance(cfg, Mapping):
            raise ConfigError(f"augment.modalities must be a mapping of modality: probability, got {cfg!r}")
        p: dict[str, float] = {}
        for name, value in cfg.items():
            if name not in MASK_KEYS:
                raise ConfigError(f"unknown modality augment.modalities.{name} (known: {', '.join(MASK_KEYS)})")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"augment.modalities.{name} must be a probability in [0, 1), got {value!r}")
            if value > 0:
                p[name] = float(value)
        return cls(p) if p else None

    def __call__(self, item: dict[str, torch.Tensor], rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Mask the drawn modalities of one item in place (and return it)."""
        present = [m for m, key in MASK_KEYS.items() if key in item and bool(item[key].any())]
        drawn = [m for m in present if m in self.p and rng.random() < self.p[m]]
        if drawn and len(drawn) == len(present):
            drawn = drawn[:-1]  # a window with nothing left would teach nothing
        for m in drawn:
            item[MASK_KEYS[m]] = torch.zeros_like(item[MASK_KEYS[m]])
        return item
