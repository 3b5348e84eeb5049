"""Registry of named model variants (timm style): each network registers itself beside its class.

A *branch* class (one modality → per-frame features) is registered with
:func:`register_branch`, a *fusion* class (Section 4.2) with
:func:`register_fusion`; both are decorators used in the file that defines the
class::

    @register_branch("audio-li2019", modality="audio", tiny={"lstm_hidden": 4},
                     description="...", paper_ref="Sec. 5.5, Table 2")
    class Li2019(Branch): ...

Each registration declares the variant's name, modality, options (by default
the class's keyword arguments and their defaults), small options for tests
(``tiny``), a description and the paper reference. The whole variant a name
builds — a branch + the temporal head, or a fusion + three branches + the
head — is assembled generically by :mod:`mmaffect.models.zoo`, which installs
its builders here (:func:`set_builder`). Any option can be overridden by
keyword: ``create_model("audio-tzirakis2018", dropout=0.3)``.

The contract a registered class keeps (checked at registration):

* a branch has ``modality`` and ``frame_forward(x, x_mask) -> (features (N, D),
  attention {name: (N, ...)})``: the per-frame network on *every* frame of a
  flattened batch (x: the modality's array, (N, ...); x_mask: its mask, (N,)
  or (N, L) for word slots, already False on sequence padding), written with
  ONNX-exportable operations only. Frames whose mask is all False may hold
  anything; their outputs are replaced by zeros by the caller
  (:mod:`mmaffect.inference.export`). In eval mode it gives what ``forward``
  gives on the present frames.
  Optionally ``ATTENTION_AXES = {name: (axis, ...)}`` names the axes of each
  attention tensor after (batch, time); an axis named ``slots`` (word slots)
  is dynamic in the exported graph.
* a fusion has ``ATTENTION_LAYOUT`` (:class:`AttentionLayout`): what weights
  it emits, their axes and how to draw them (:mod:`mmaffect.viz.attention`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from mmaffect.errors import ConfigError

__all__ = [
    "MODALITIES",
    "AttentionLayout",
    "AttentionWeights",
    "BranchSpec",
    "FusionSpec",
    "ModelSpec",
    "branch_specs",
    "create_model",
    "fusion_specs",
    "get_branch",
    "get_fusion",
    "get_spec",
    "list_models",
    "register_branch",
    "register_fusion",
    "register_model",
    "set_builder",
]

#: The modalities a branch can have, in the order of a fusion's inputs (Eq. 5, ``[x^t, x^a, x^v]``).
MODALITIES = ("text", "audio", "visual")


@dataclass(frozen=True)
class ModelSpec:
    """A buildable variant: its factory, options (defaults) and what it is."""

    name: str
    factory: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    modalities: tuple[str, ...] = ()
    description: str = ""
    paper_ref: str = ""
    #: small options for tests and smoke runs (see :func:`mmaffect.models.zoo.tiny_overrides`)
    tiny: dict[str, Any] = field(default_factory=dict)
    #: "branch" (branch + temporal head), "fusion" (branches + fusion + head) or "" (a plain factory)
    kind: str = ""


@dataclass(frozen=True)
class BranchSpec:
    """A registered branch class: ``cls(**options)`` builds it."""

    name: str
    cls: type
    modality: str
    options: dict[str, Any]
    tiny: dict[str, Any]
    description: str
    paper_ref: str


@dataclass(frozen=True)
class AttentionWeights:
    """One weight tensor a fusion emits: ``name`` in its attention dict, ``axes`` after the frame axis
    (B* rows in the fusion, (B, T) in a model's output), what it means, and whether every forward emits it."""

    name: str
    axes: tuple[str, ...]
    meaning: str = ""
    required: bool = True


@dataclass(frozen=True)
class AttentionLayout:
    """What a fusion's attention dict holds. ``kind`` names the drawing (:mod:`mmaffect.viz.attention`
    draws ``hierarchical``, ``crossmodal-hierarchical`` and ``self-attention``); None = no weights."""

    kind: str | None
    weights: tuple[AttentionWeights, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.weights)

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.weights if w.required)


@dataclass(frozen=True)
class FusionSpec:
    """A registered fusion class: ``cls(in_dims=..., **options)`` builds it; the variant's default
    branches are ``branches`` (modality → branch name)."""

    name: str
    cls: type
    key: str
    options: dict[str, Any]
    tiny: dict[str, Any]
    description: str
    paper_ref: str
    branches: dict[str, str]

    @property
    def layout(self) -> AttentionLayout:
        return self.cls.ATTENTION_LAYOUT


_REGISTRY: dict[str, ModelSpec] = {}
_BRANCHES: dict[str, BranchSpec] = {}
_FUSIONS: dict[str, FusionSpec] = {}
#: kind → function(spec) → ModelSpec (installed by mmaffect.models.zoo)
_BUILDERS: dict[str, Callable[[Any], ModelSpec]] = {}
_PENDING: list[tuple[str, Any]] = []


def _keyword_defaults(cls: type, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The keyword arguments of ``cls`` and their defaults (every one must have a default)."""
    out = {}
    for name, p in inspect.signature(cls).parameters.items():
        if name in skip or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if p.default is p.empty:
            raise ConfigError(f"{cls.__name__}: option {name!r} has no default; pass options= to register it")
        out[name] = p.default
    return out


def _options_and_tiny(
    kind: str, name: str, cls: type, options: Mapping[str, Any] | None, tiny: Mapping[str, Any] | None,
    skip: tuple[str, ...] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A registration's options (default: the keyword arguments of ``cls`` but ``skip``) and its tiny
    overrides, which must all be options: a misspelt tiny key would leave the test model full-size."""
    opts = dict(options) if options is not None else _keyword_defaults(cls, skip=skip)
    unknown = set(tiny or {}) - set(opts)
    if unknown:
        raise ConfigError(f"{kind} {name!r}: tiny options {sorted(unknown)} are not options of {cls.__name__}")
    return opts, dict(tiny or {})


def _check_new(name: str) -> None:
    if name in _REGISTRY or name in _BRANCHES or name in _FUSIONS:
        raise ConfigError(f"model {name!r} is registered twice")


def _add(kind: str, spec: Any) -> None:
    """Register the variant of ``spec`` now, or once zoo has installed its builder."""
    if kind in _BUILDERS:
        model = _BUILDERS[kind](spec)
        _REGISTRY[model.name] = model
    else:
        _PENDING.append((kind, spec))


def set_builder(kind: str, builder: Callable[[Any], ModelSpec]) -> None:
    """Install how a registered ``kind`` (``"branch"`` / ``"fusion"``) becomes a buildable variant
    (called by :mod:`mmaffect.models.zoo`); registrations made before are built now."""
    _BUILDERS[kind] = builder
    for pending_kind, spec in [p for p in _PENDING if p[0] == kind]:
        _PENDING.remove((pending_kind, spec))
        _add(pending_kind, spec)


def register_branch(
    name: str,
    *,
    modality: str,
    description: str = "",
    paper_ref: str = "",
    tiny: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register a branch as the unimodal variant ``name`` (branch + temporal head).

    ``options``: the branch's options and defaults (default: every keyword argument of the class);
    ``tiny``: overrides that make it small for tests. See the module docstring for the contract."""
    if modality not in MODALITIES:
        raise ConfigError(f"branch {name!r}: modality must be one of {MODALITIES}, not {modality!r}")

    def deco(cls: type) -> type:
        _check_new(name)
        if not callable(getattr(cls, "frame_forward", None)):
            raise ConfigError(f"branch {name!r}: {cls.__name__} has no frame_forward(x, x_mask) method")
        opts, tiny_opts = _options_and_tiny("branch", name, cls, options, tiny)
        spec = BranchSpec(name, cls, modality, opts, tiny_opts, description, paper_ref)
        _BRANCHES[name] = spec
        _add("branch", spec)
        return cls

    return deco


def register_fusion(
    name: str,
    *,
    key: str,
    description: str = "",
    paper_ref: str = "",
    tiny: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    branches: Mapping[str, str] | None = None,
) -> Callable[[type], type]:
    """Class decorator: register a fusion as the multimodal variant ``name`` (branches + fusion + head).

    ``key``: the strategy's short name (``fusion.FUSIONS``); ``options``: the fusion's options and
    defaults (default: its keyword arguments except ``in_dims``); ``branches``: the default branch
    of each modality (default: text-paper, audio-tzirakis2018, visual-hrnet3-attpool, Section 5.5)."""

    def deco(cls: type) -> type:
        _check_new(name)
        if not isinstance(getattr(cls, "ATTENTION_LAYOUT", None), AttentionLayout):
            raise ConfigError(f"fusion {name!r}: {cls.__name__} has no ATTENTION_LAYOUT (an AttentionLayout)")
        opts, tiny_opts = _options_and_tiny("fusion", name, cls, options, tiny, skip=("in_dims",))
        spec = FusionSpec(name, cls, key, opts, tiny_opts, description, paper_ref, dict(branches or DEFAULT_BRANCHES))
        _FUSIONS[name] = spec
        _add("fusion", spec)
        return cls

    return deco


#: The branches of the multimodal network (Section 5.5: the best network per modality).
DEFAULT_BRANCHES = {"text": "text-paper", "audio": "audio-tzirakis2018", "visual": "visual-hrnet3-attpool"}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    description: str = "",
    paper_ref: str = "",
    **defaults: Any,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a plain ``factory`` under ``name`` with default keyword arguments."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _check_new(name)
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


def get_branch(name: str, modality: str | None = None) -> BranchSpec:
    """The registered branch ``name``; ConfigError when unknown or (given ``modality``) of another modality."""
    _ensure_loaded()
    if name not in _BRANCHES:
        raise ConfigError(f"unknown branch {name!r}; known: {', '.join(sorted(_BRANCHES))}")
    spec = _BRANCHES[name]
    if modality is not None and spec.modality != modality:
        known = sorted(n for n, s in _BRANCHES.items() if s.modality == modality)
        raise ConfigError(f"{modality}_branch: {name!r} is a {spec.modality} branch; {modality} branches: "
                          f"{', '.join(known)}")
    return spec


def get_fusion(name: str) -> FusionSpec:
    _ensure_loaded()
    if name not in _FUSIONS:
        raise ConfigError(f"unknown fusion model {name!r}; known: {', '.join(sorted(_FUSIONS))}")
    return _FUSIONS[name]


def branch_specs() -> list[BranchSpec]:
    """Every registered branch, in registration order."""
    _ensure_loaded()
    return list(_BRANCHES.values())


def fusion_specs() -> list[FusionSpec]:
    """Every registered fusion, in registration order."""
    _ensure_loaded()
    return list(_FUSIONS.values())


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
