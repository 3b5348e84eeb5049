"""Every registered model variant (the registry's contents).

Unimodal variants (Sections 4.1, 5.5) are a branch + the temporal head; their
options are the branch's keyword arguments plus ``head_hidden``,
``head_layers`` and ``head_dropout``::

    create_model("text-paper", embed_dim=300)
    create_model("audio-tzirakis2018", dropout=0.3)

Multimodal variants (Sections 4.2, 4.3) combine text-paper, audio-tzirakis2018
and visual-hrnet3-attpool with one fusion strategy. Their options are the
fusion's, the head's, the shared input sizes ``embed_dim`` and
``image_size``, and ``text_options`` / ``audio_options`` / ``visual_options``
dicts overriding the branch defaults::

    create_model("fusion-hierarchical", d_u=128, visual_options={"widths": (16, 32, 64)})

Branch modules are imported when a model is built, not when this module is
imported, so the registry lists every name even while a branch module is
missing or broken.

``tiny_overrides(name)`` gives small options for fast tests and smoke runs.
"""

from __future__ import annotations

import importlib
from typing import Any

from mmaffect.errors import ConfigError
from mmaffect.models.assembly import MultimodalModel, UnimodalModel
from mmaffect.models.registry import get_spec, register_model

__all__ = ["HEAD_DEFAULTS", "UNIMODAL", "MULTIMODAL", "tiny_overrides", "tiny_inputs", "input_options"]

HEAD_DEFAULTS: dict[str, Any] = {"head_hidden": 256, "head_layers": 1, "head_dropout": 0.5}

# name -> (module, class, modality, branch defaults, description, paper reference)
UNIMODAL: dict[str, tuple[str, str, str, dict[str, Any], str, str]] = {
    "text-paper": (
        "text", "TextNetwork", "text",
        {
            "embed_dim": 384, "ngram_widths": (2, 3, 4), "ngram_filters": 100, "n_projections": 2,
            "proj_dim": 512, "lstm_hidden": 256, "lstm_layers": 2, "highway_layers": 2,
            "dropout_embed": 0.1, "dropout_ngram": 0.3, "dropout_proj": 0.2, "dropout_lstm": 0.3,
            "highway_activation": "tanh", "dedupe": True, "checkpoint": False,
        },
        "N-gram CNN, multi-head projections, BiLSTM selectors, highway (text network)",
        "Sec. 4.1.1, Eq. 1-2, Fig. 1",
    ),
    "audio-tzirakis2018": (
        "audio", "Tzirakis2018", "audio",
        {"channels": (50, 125, 250), "kernels": (8, 6, 6), "pools": (10, 5, 5), "dropout": 0.5,
         "frame_samples": 4410, "skip_zero_half": True},
        "raw-waveform CNN, 3 conv/max-pool blocks (the paper's audio network)",
        "Sec. 4.1.2",
    ),
    "audio-trigeorgis2016": (
        "audio", "Trigeorgis2016", "audio",
        {"channels": (40, 40), "kernels": (28, 55), "time_pool": 2, "channel_pool": 10, "step_pool": 110,
         "dropout": 0.5, "frame_samples": 4410},
        "raw-waveform CNN of Trigeorgis et al. 2016 (ablation)", "Sec. 5.5, Table 2",
    ),
    "audio-li2019": (
        "audio", "Li2019", "audio",
        {"n_fft": 512, "hop": 220, "n_mels": 40, "sample_rate": 22050, "conv_channels": (16, 32),
         "lstm_hidden": 64, "dropout": 0.3},
        "spectrogram CNN + BLSTM + self-attention of Li et al. 2019 (ablation)", "Sec. 5.5, Table 2",
    ),
    "visual-hrnet3-attpool": (
        "visual", "HRNetAttPool", "visual",
        {"widths": (18, 36, 72), "blocks": 2, "stem_channels": 64, "image_size": 96, "attention_rank": 1,
         "n_attention_classes": 256, "dropout": 0.2, "stage_modules": (1, 1), "spatial_softmax": False,
         "checkpoint": True},
        "3-stage HRNet with attentional (low-rank second-order) pooling (the paper's visual network)",
        "Sec. 4.1.3",
    ),
    "visual-vgg16": (
        "cnn_baselines", "VGG16", "visual", {"pretrained": None},
        "VGG-16 (ablation)", "Sec. 5.5, Table 2",
    ),
    "visual-resnet50": (
        "cnn_baselines", "ResNet50", "visual", {"pretrained": None},
        "ResNet-50 (ablation)", "Sec. 5.5, Table 2",
    ),
    "visual-densenet121": (
        "cnn_baselines", "DenseNet121", "visual", {"pretrained": None},
        "DenseNet-121 (ablation)", "Sec. 5.5, Table 2",
    ),
    "visual-mobilenet": (
        "cnn_baselines", "MobileNetV1", "visual", {"pretrained": None},
        "MobileNet v1 (ablation)", "Sec. 5.5, Table 2",
    ),
}

# The branches of the multimodal network (Section 5.5: best per modality).
MULTIMODAL_BRANCHES = {"text": "text-paper", "audio": "audio-tzirakis2018", "visual": "visual-hrnet3-attpool"}

# name -> (fusion key in fusion.FUSIONS, fusion defaults, description, paper reference)
MULTIMODAL: dict[str, tuple[str, dict[str, Any], str, str]] = {
    "fusion-concat": ("concat", {}, "concatenation + presence indicators", "Sec. 4.2 (Concatenation), 4.3"),
    "fusion-hierarchical": ("hierarchical", {"d_u": 256}, "hierarchical attention", "Sec. 4.2, Eq. 3-5"),
    "fusion-self-attention": (
        "self-attention", {"d_u": 256, "heads": 4, "d_s": 64, "alpha": "softmax"},
        "multi-head self-attention over modalities", "Sec. 4.2, Eq. 6",
    ),
    "fusion-residual-self-attention": (
        "residual-self-attention", {"d_u": 256, "heads": 4, "d_s": 64, "alpha": "softmax"},
        "self-attention with residual connection", "Sec. 4.2, Eq. 6-7",
    ),
    "fusion-crossmodal-hierarchical": (
        "crossmodal-hierarchical", {"d_s": 256, "tokens": 4},
        "cross-modal hierarchical self-attention", "Sec. 4.2, Eq. 8-9",
    ),
}


def _branch_class(module: str, cls: str) -> type:
    try:
        mod = importlib.import_module(f"mmaffect.models.{module}")
    except ImportError as exc:  # pragma: no cover - only while a branch module is missing
        raise ConfigError(f"branch module mmaffect.models.{module} cannot be imported: {exc}") from exc
    return getattr(mod, cls)


def _build_branch(name: str, options: dict[str, Any]) -> Any:
    module, cls, _, defaults, _, _ = UNIMODAL[name]
    unknown = set(options) - set(defaults)
    if unknown:
        raise ConfigError(f"branch {name!r} has no option(s) {sorted(unknown)}; options: {sorted(defaults)}")
    return _branch_class(module, cls)(**{**defaults, **options})


def _unimodal_factory(name: str):
    def factory(**kwargs: Any) -> UnimodalModel:
        head = {k: kwargs.pop(k) for k in HEAD_DEFAULTS}
        return UnimodalModel(branch=_build_branch(name, kwargs), **head)

    factory.__name__ = factory.__qualname__ = "create_" + name.replace("-", "_")
    return factory


def _multimodal_factory(name: str):
    fusion_key = MULTIMODAL[name][0]

    def factory(**kwargs: Any) -> MultimodalModel:
        from mmaffect.models.fusion import FUSIONS

        head = {k: kwargs.pop(k) for k in HEAD_DEFAULTS}
        shared = {"text": {"embed_dim": kwargs.pop("embed_dim")}, "audio": {},
                  "visual": {"image_size": kwargs.pop("image_size")}}
        branches = {}
        for modality, branch_name in MULTIMODAL_BRANCHES.items():
            options = {**shared[modality], **dict(kwargs.pop(f"{modality}_options") or {})}
            branches[modality] = _build_branch(branch_name, options)
        in_dims = [branches[m].out_dim for m in ("text", "audio", "visual")]
        fusion = FUSIONS[fusion_key](in_dims=in_dims, **kwargs)
        return MultimodalModel(**branches, fusion=fusion, **head)

    factory.__name__ = factory.__qualname__ = "create_" + name.replace("-", "_")
    return factory


for _name, (_module, _cls, _modality, _defaults, _desc, _ref) in UNIMODAL.items():
    register_model(_name, modalities=(_modality,), description=_desc, paper_ref=_ref,
                   **_defaults, **HEAD_DEFAULTS)(_unimodal_factory(_name))

for _name, (_fusion, _fdefaults, _desc, _ref) in MULTIMODAL.items():
    register_model(
        _name,
        modalities=("text", "audio", "visual"),
        description=f"text-paper + audio-tzirakis2018 + visual-hrnet3-attpool, {_desc}",
        paper_ref=_ref,
        embed_dim=384,
        image_size=96,
        text_options={},
        audio_options={},
        visual_options={},
        **_fdefaults,
        **HEAD_DEFAULTS,
    )(_multimodal_factory(_name))


# Small branch options that keep every layer type but run in milliseconds.
_TINY_BRANCH: dict[str, dict[str, Any]] = {
    "text-paper": {"embed_dim": 16, "ngram_filters": 4, "proj_dim": 8, "lstm_hidden": 4, "highway_layers": 1},
    "audio-tzirakis2018": {"channels": (4, 6, 8)},
    "audio-trigeorgis2016": {"channels": (4, 4), "channel_pool": 2},
    "audio-li2019": {"conv_channels": (4, 4), "lstm_hidden": 4},
    "visual-hrnet3-attpool": {"widths": (4, 8, 16), "blocks": 1, "stem_channels": 8, "image_size": 32,
                              "n_attention_classes": 8},
    # Fixed architectures (global average pooling): small only through their input, see tiny_inputs.
    "visual-vgg16": {},
    "visual-resnet50": {},
    "visual-densenet121": {},
    "visual-mobilenet": {},
}
_TINY_IMAGE_SIZE = 32
_TINY_WORDS = 5
_TINY_HEAD = {"head_hidden": 8}
_TINY_FUSION = {"d_u": 8, "heads": 2, "d_s": 8, "tokens": 2}


def tiny_overrides(name: str) -> dict[str, Any]:
    """Options of ``name`` that make it small enough for unit tests.

    >>> tiny_overrides("text-paper")["embed_dim"]
    16
    """
    spec = get_spec(name)
    if name in UNIMODAL:
        return {**_TINY_BRANCH.get(name, {}), **_TINY_HEAD}
    out: dict[str, Any] = dict(_TINY_HEAD)
    out.update({k: v for k, v in _TINY_FUSION.items() if k in spec.defaults})
    text = dict(_TINY_BRANCH["text-paper"])
    visual = dict(_TINY_BRANCH["visual-hrnet3-attpool"])
    out["embed_dim"] = text.pop("embed_dim")
    out["image_size"] = visual.pop("image_size")
    out["text_options"] = text
    out["audio_options"] = dict(_TINY_BRANCH["audio-tzirakis2018"])
    out["visual_options"] = visual
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
    return {
        "modalities": spec.modalities,
        "embed_dim": int(opts.get("embed_dim", 384)),
        "image_size": int(opts.get("image_size", image_size)),
        "frame_samples": int(audio.get("frame_samples", opts.get("frame_samples", 4410))),
    }


def tiny_inputs(name: str) -> dict[str, Any]:
    """Input sizes for ``create_model(name, **tiny_overrides(name))``, plus ``words``.

    >>> tiny_inputs("visual-resnet50")["image_size"]
    32
    """
    return {**input_options(name, tiny_overrides(name), image_size=_TINY_IMAGE_SIZE), "words": _TINY_WORDS}
