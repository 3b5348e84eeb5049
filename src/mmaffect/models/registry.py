"""Registry of named model variants (timm style).

Each variant is a factory plus its default configuration; any default can be
overridden by keyword. ``create_model("audio-tzirakis2018", dropout=0.3)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mmaffect.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    factory: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    description: str = ""
    paper_ref: str = ""


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    description: str = "",
    paper_ref: str = "",
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register ``factory`` under ``name`` with default keyword arguments."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ConfigError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelSpec(name, factory, dict(defaults), modalities, description, paper_ref)
        return factory

    return deco


def _ensure_loaded() -> None:
    # Importing the package registers every variant.
    import mmaffect.models  # noqa: F401


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    _ensure_loaded()
    return sorted(_REGISTRY)


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the variant ``name`` with its defaults updated by ``overrides``."""
    spec = get_spec(name)
    unknown = set(overrides) - set(spec.defaults)
    if unknown:
        raise ConfigError(
            f"model {name!r} has no option(s) {sorted(unknown)}; options: {sorted(spec.defaults)}"
        )
    return spec.factory(**{**spec.defaults, **overrides})
