"""The generic assembly of registered networks into whole models (no per-model table here).

Every network registers itself beside its class (:func:`~mmaffect.models.registry.register_branch`,
:func:`~mmaffect.models.registry.register_fusion`); this module turns each registration into a
buildable variant:

* a branch ``B`` → the unimodal variant of the same name: ``B`` + the temporal head. Options: the
  branch's options plus ``head_hidden``, ``head_layers`` and ``head_dropout``::

      create_model("text-paper", embed_dim=300)
      create_model("audio-tzirakis2018", dropout=0.3)

* a fusion ``F`` → the multimodal variant: three branches + ``F`` + the head. Options: the
  fusion's, the head's, the shared input sizes ``embed_dim`` (text) and ``image_size`` (visual),
  ``text_branch`` / ``audio_branch`` / ``visual_branch`` (the registered branch of each modality;
  defaults text-paper, audio-tzirakis2018, visual-hrnet3-attpool, Section 5.5) and
  ``text_options`` / ``audio_options`` / ``visual_options`` dicts overriding the branch defaults::

      create_model("fusion-hierarchical", d_u=128, visual_options={"widths": (16, 32, 64)})
      create_model("fusion-concat", audio_branch="audio-li2019")

``tiny_overrides(name)`` gives small options for fast tests and smoke runs (from each
registration's ``tiny``), ``tiny_inputs(name)`` the matching input sizes.
"""

from __future__ import annotations

from typing import Any

from mmaffect.errors import ConfigError
from mmaffect.models.assembly import MultimodalModel, UnimodalModel
from mmaffect.models.registry import (
    MODALITIES,
    BranchSpec,
    FusionSpec,
    ModelSpec,
    get_branch,
    get_fusion,
    get_spec,
    set_builder,
)

__all__ = ["HEAD_DEFAULTS", "REFERENCE_DEFAULTS", "SHARED_SIZES", "build_branch", "tiny_overrides", "tiny_inputs",
           "input_options"]

HEAD_DEFAULTS: dict[str, Any] = {"head_hidden": 256, "head_layers": 1, "head_dropout": 0.5}
#: Options of every model with an audio branch: speech frames of the speaker that normalise the audio
#: features (``mmaffect.models.assembly.reference_normalise``; 0 = off, the paper), the frames of
#: population statistics they are shrunk towards, and how often training makes a window its own yardstick.
REFERENCE_DEFAULTS: dict[str, Any] = {"audio_reference": 0, "audio_reference_prior": 0, "audio_reference_self": 0.0}

#: Input sizes a fusion variant passes to its branch of a modality (when the branch has the option).
SHARED_SIZES: dict[str, dict[str, Any]] = {"text": {"embed_dim": 384}, "audio": {}, "visual": {"image_size": 96}}


def build_branch(name: str, options: dict[str, Any] | None = None, *, modality: str | None = None) -> Any:
    """The registered branch ``name`` with its defaults updated by ``options`` (ConfigError for an
    unknown option, or a branch of another ``modality``)."""
    spec = get_branch(name, modality)
    options = dict(options or {})
    unknown = set(options) - set(spec.options)
    if unknown:
        raise ConfigError(f"branch {name!r} has no option(s) {sorted(unknown)}; options: {sorted(spec.options)}")
    return spec.cls(**{**spec.options, **options})


def _factory_name(name: str) -> str:
    return "create_" + name.replace("-", "_")


def _unimodal_variant(spec: BranchSpec) -> ModelSpec:
    """A registered branch as a variant: branch + temporal head."""

    reference = REFERENCE_DEFAULTS if spec.modality == "audio" else {}

    def factory(**kwargs: Any) -> UnimodalModel:
        head = {k: kwargs.pop(k) for k in (*HEAD_DEFAULTS, *reference)}
        return UnimodalModel(branch=build_branch(spec.name, kwargs), **head)

    factory.__name__ = factory.__qualname__ = _factory_name(spec.name)
    return ModelSpec(spec.name, factory, {**spec.options, **HEAD_DEFAULTS, **reference}, (spec.modality,),
                     spec.description, spec.paper_ref, dict(spec.tiny), "branch")


def _fusion_branches(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Pop the branch choices, shared sizes and branch options from ``kwargs``; build the branches."""
    branches = {}
    shared = {m: {k: kwargs.pop(k) for k in sizes} for m, sizes in SHARED_SIZES.items()}
    for modality in MODALITIES:
        name = kwargs.pop(f"{modality}_branch")
        spec = get_branch(name, modality)
        sizes = {k: v for k, v in shared[modality].items() if k in spec.options}
        options = {**sizes, **dict(kwargs.pop(f"{modality}_options") or {})}
        branches[modality] = build_branch(name, options, modality=modality)
    return branches


def _fusion_variant(spec: FusionSpec) -> ModelSpec:
    """A registered fusion as a variant: one branch per modality + the fusion + temporal head."""

    def factory(**kwargs: Any) -> MultimodalModel:
        head = {k: kwargs.pop(k) for k in (*HEAD_DEFAULTS, *REFERENCE_DEFAULTS)}
        branches = _fusion_branches(kwargs)
        in_dims = [branches[m].out_dim for m in MODALITIES]
        fusion = spec.cls(in_dims=in_dims, **kwargs)
        return MultimodalModel(**branches, fusion=fusion, **head)

    factory.__name__ = factory.__qualname__ = _factory_name(spec.name)
    defaults: dict[str, Any] = {k: v for sizes in SHARED_SIZES.values() for k, v in sizes.items()}
    defaults.update({f"{m}_branch": spec.branches[m] for m in MODALITIES})
    defaults.update({f"{m}_options": {} for m in MODALITIES})
    defaults.update(spec.options)
    defaults.update(HEAD_DEFAULTS)
    defaults.update(REFERENCE_DEFAULTS)
    description = f"{' + '.join(spec.branches[m] for m in MODALITIES)}, {spec.description}"
    return ModelSpec(spec.name, factory, defaults, MODALITIES, description, spec.paper_ref, dict(spec.tiny),
                     "fusion")


set_builder("branch", _unimodal_variant)
set_builder("fusion", _fusion_variant)


# Small sizes shared by every tiny configuration.
_TINY_IMAGE_SIZE = 32
_TINY_WORDS = 5
_TINY_HEAD = {"head_hidden": 8}


def tiny_overrides(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Options of ``name`` that make it small enough for unit tests (the registrations' ``tiny``).

    For a fusion variant, the tiny options of its branches (those chosen in ``overrides``, else the
    defaults) go to ``text_options`` / ``audio_options`` / ``visual_options`` and the shared sizes.

    >>> tiny_overrides("text-paper")["embed_dim"]
    16
    """
    spec = get_spec(name)
    if spec.kind != "fusion":  # a branch variant (or a plain registered factory: its head options if any)
        return {**spec.tiny, **{k: v for k, v in _TINY_HEAD.items() if k in spec.defaults}}
    chosen = {**spec.defaults, **(overrides or {})}
    out: dict[str, Any] = {**_TINY_HEAD, **get_fusion(name).tiny}
    for modality in MODALITIES:
        branch = dict(get_branch(chosen[f"{modality}_branch"], modality).tiny)
        for size in SHARED_SIZES[modality]:
            if size in branch:
                out[size] = branch.pop(size)
        out[f"{modality}_options"] = branch
        if chosen[f"{modality}_branch"] != spec.defaults[f"{modality}_branch"]:
            out[f"{modality}_branch"] = chosen[f"{modality}_branch"]
    return out


def input_options(
    name: str, overrides: dict[str, Any] | None = None, *, image_size: int = 96
) -> dict[str, Any]:
    """Input sizes a model built with ``overrides`` expects.

    Returns ``modalities``, ``embed_dim``, ``image_size`` and ``frame_samples``;
    where the model has no such option (e.g. the global-average-pooling CNN
    baselines take any image size) the defaults 384, ``image_size`` and 4410.

    >>> input_options("visual-vgg16", image_size=64)["image_size"]
    64
    """
    spec = get_spec(name)
    opts = {**spec.defaults, **(overrides or {})}
    audio = dict(opts.get("audio_options") or {})
    if spec.kind == "fusion":
        audio = {**get_branch(opts["audio_branch"], "audio").options, **audio}
        visual = get_branch(opts["visual_branch"], "visual").options
        if "image_size" not in visual:  # a branch that takes any image size
            opts.pop("image_size", None)
    return {
        "modalities": spec.modalities,
        "embed_dim": int(opts.get("embed_dim", 384)),
        "image_size": int(opts.get("image_size", image_size)),
        "frame_samples": int(audio.get("frame_samples", opts.get("frame_samples", 4410))),
    }


def tiny_inputs(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Input sizes for ``create_model(name, **tiny_overrides(name))``, plus ``words``.

    >>> tiny_inputs("visual-resnet50")["image_size"]
    32
    """
    tiny = {**tiny_overrides(name, overrides), **(overrides or {})}
    return {**input_options(name, tiny, image_size=_TINY_IMAGE_SIZE), "words": _TINY_WORDS}
