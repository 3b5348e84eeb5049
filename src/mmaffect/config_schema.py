"""Typed schemas of the configurations (pydantic 2): types, ranges and choices.

Every configuration is checked here before any work starts:

* ``prepare`` (``configs/prepare.yaml``): :func:`validate_prepare_config`,
  called by :func:`mmaffect.preprocess.pipeline.resolve_prepare_config`;
* ``train`` / ``tune`` (``configs/train.yaml``): :func:`validate_train_config`,
  called by :func:`mmaffect.training.trainer.resolve_train_config`, which also
  checks ``model_options`` against the chosen model's options
  (:func:`validate_model_options`);
* ``pretrain-faces`` (``configs/pretrain_faces.yaml``):
  :func:`validate_pretrain_config`.

A bad value raises one :class:`~mmaffect.errors.ConfigError` line that names
the key, says what is allowed and shows what was given, e.g.
``faces.size: must be an integer from 16 to 1024 (crop side in pixels), got 'abc'``.
Validated values are written back normalised (``optim.lr=1e-4``, which YAML
reads as a string, becomes the float 0.0001). Keys a schema does not know are
errors; mappings owned by other modules (``augment`` of ``train`` and of
``pretrain-faces``, checked by the augmentation modules) pass through here.

Fields default to ``None`` without being validated, so a partial mapping
(an old checkpoint's configuration) is checked only for the keys it has.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from mmaffect.errors import ConfigError

__all__ = [
    "DEVICE_PATTERN",
    "check_device",
    "validate_prepare_config",
    "validate_train_config",
    "validate_pretrain_config",
    "validate_model_options",
]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HELP = "auto, cpu, mps, cuda or cuda:N"


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


def _device(value: Any) -> Any:
    if not isinstance(value, str) or not DEVICE_PATTERN.match(value.strip()):
        raise ValueError(f"must be one of {DEVICE_HELP}")
    return value.strip()


# A real number: ints and numeric strings ("1e-4", which YAML 1.1 reads as a string) are converted; bools, NaN,
# infinity are not numbers here.
Real = Annotated[float, BeforeValidator(_no_bool), Field(allow_inf_nan=False)]
Int = Annotated[int, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]
Device = Annotated[str, BeforeValidator(_device)]


def F(description: str, **constraints: Any) -> Any:  # noqa: N802 - a field factory
    """A field that may be absent (``None``, not validated) and says what is allowed."""
    return Field(None, description=description, **constraints)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=False)


# --------------------------------------------------------------------------- prepare


class AudioSection(_Section):
    sample_rate: Int = F("an integer from 8000 to 192000 (Hz)", ge=8000, le=192000)
    frame_samples: Int = F("a positive integer (samples per frame)", ge=1)
    turn_rounding: Real = F("a number > 0 (seconds)", gt=0)
    max_short: Real = F("a number ≥ 0 (seconds)", ge=0)
    loudness: Real | None = F("a loudness in LUFS from -70 to 0, or null (off)", ge=-70, le=0)
    vad: Literal["silero", "energy", "none"] = F("one of silero, energy, none")
    vad_db: Real = F("a level in dBFS ≤ 0", le=0)
    vad_threshold: Real = F("a probability strictly between 0 and 1", gt=0, lt=1)


class FacesSection(_Section):
    enabled: Bool = F("true or false")
    size: Int = F("an integer from 16 to 1024 (crop side in pixels)", ge=16, le=1024)
    detector: Literal["haar"] = F("haar (OpenCV's Haar cascade, the only detector)")
    detect_width: Int = F("an integer from 32 to 8192 (pixels)", ge=32, le=8192)
    min_face: Real = F("a fraction of the frame height strictly between 0 and 1", gt=0, lt=1)
    margin: Real = F("a fraction of the face side from 0 to 2", ge=0, le=2)
    select: Literal["largest", "track"] = F("largest or track")
    on_no_face: Literal["error", "mask"] = F("error or mask")
    grey: Bool = F("true or false")
    absent_scan_every: Real = F("a number of seconds from 0 to 10 (0 = scan every frame)", ge=0, le=10)


def _embedder(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("not a string")
    kind, sep, rest = value.strip().partition(":")
    if value.strip() == "minilm" or (sep and kind in {"hf", "fasttext"} and rest.strip()):
        return value
    raise ValueError("unknown embedder")


class TextSection(_Section):
    enabled: Bool = F("true or false")
    embedder: Annotated[str, BeforeValidator(_embedder)] = F(
        "minilm, hf:<model folder> or fasttext:<.vec or .bin file>")
    max_words: Int = F("an integer from 1 to 1000 (words per frame)", ge=1, le=1000)
    delay: Real = F("a number ≥ 0 (seconds)", ge=0)
    drop_tags: Bool = F("true or false")


class PrepareConfig(_Section):
    label_rate: Real = F("10.0 (the models' frame rate)", gt=0)
    audio: AudioSection = F("a mapping")
    faces: FacesSection = F("a mapping")
    text: TextSection = F("a mapping")


# --------------------------------------------------------------------------- train / tune


class InitFromSection(_Section):
    text: str | None = F("a checkpoint path or null")
    audio: str | None = F("a checkpoint path or null")
    visual: str | None = F("a checkpoint path or null")


Modality = Literal["text", "audio", "visual"]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class TrainDataSection(_Section):
    cache: NonEmptyStr = F("a cache folder")
    train_partitions: list[NonEmptyStr] = F("a non-empty list of partition names", min_length=1)
    devel_partitions: list[NonEmptyStr] = F("a non-empty list of partition names", min_length=1)
    modalities: list[Modality] | None = F("a list of text, audio, visual, or null (the model's own)", min_length=1)
    window: Int | None = F("an integer ≥ 2 (frames), or null (whole recordings)", ge=2)
    annotation_delay: Real = F("a number ≥ 0 (seconds)", ge=0)
    num_workers: Int = F("an integer ≥ 0", ge=0)


Beta = Annotated[Real, Field(ge=0, lt=1)]


class TrainOptimSection(_Section):
    lr: Real = F("a learning rate ≥ 0 (0 keeps the weights)", ge=0)
    betas: list[Beta] = F("two numbers in [0, 1), e.g. [0.9, 0.999]", min_length=2, max_length=2)
    eps: Real = F("a number > 0", gt=0)
    weight_decay: Real = F("a number ≥ 0", ge=0)
    batch_size: Annotated[int, Field(strict=True, ge=1)] | Literal["auto"] = F("a positive integer or auto")
    eval_batch_size: Int = F("a positive integer", ge=1)
    epochs: Int = F("a positive integer", ge=1)
    grad_clip: Real | None = F("a number > 0 or null (no clipping)", gt=0)
    patience: Int | None = F("a positive integer or null (never stop early)", ge=1)
    scheduler: Literal["none", "plateau", "warmup-cosine"] = F("none, plateau or warmup-cosine")
    mse_weight: Real = F("a number ≥ 0 (0 = the paper's CCC loss alone)", ge=0)
    ema_decay: Real | None = F("a number in (0, 1) or null (no weight averaging)", gt=0, lt=1)


class LogSection(_Section):
    plot: Bool = F("true or false")
    progress: Bool = F("true or false")
    tensorboard: Bool | Literal["auto"] = F("auto, true or false")


class TuneSection(_Section):
    trials: Int = F("a positive integer", ge=1)
    study: str | None = F("a study name or null")
    storage: str | None = F("an Optuna storage URL or null")
    epochs: Int | None = F("a positive integer or null (optim.epochs)", ge=1)
    min_epochs: Int = F("a positive integer", ge=1)
    reduction_factor: Int = F("an integer ≥ 2", ge=2)
    sampler_seed: Int = F("an integer ≥ 0", ge=0)
    space: dict[str, dict[str, Any] | None] = F("a mapping of name: {type, ..., keys} (or null: left out)")


class TrainConfig(_Section):
    imports: list[NonEmptyStr] = F("a list of module names")
    model_name: NonEmptyStr = F("a registered model name (`mmaffect models`)")
    model_options: dict[str, Any] | None = F("a mapping of the model's options")
    init_from: InitFromSection | None = F("a mapping text/audio/visual: checkpoint or null")
    freeze: list[Modality] = F("a list of branches (text, audio, visual)")
    data: TrainDataSection = F("a mapping")
    optim: TrainOptimSection = F("a mapping")
    seed: Int = F("an integer ≥ 0", ge=0)
    device: Device = F(f"one of {DEVICE_HELP}")
    amp: Bool | Literal["auto"] = F("auto, true or false")
    log: LogSection = F("a mapping")
    tune: TuneSection = F("a mapping")
    augment: dict[str, Any] | None = F("a mapping (checked by the augmentation modules)")


# --------------------------------------------------------------------------- pretrain-faces


class PretrainDataSection(_Section):
    root: str | None = F("a folder or null")
    train_limit: Int | None = F("a positive integer or null (all)", ge=1)
    valid_limit: Int | None = F("a positive integer or null (all)", ge=1)


class PretrainOptimSection(_Section):
    optimizer: Literal["adamw", "sgd"] = F("adamw or sgd")
    lr: Real = F("a learning rate ≥ 0 (0 keeps the weights)", ge=0)
    momentum: Real = F("a number in [0, 1)", ge=0, lt=1)
    weight_decay: Real = F("a number ≥ 0", ge=0)
    batch_size: Int = F("a positive integer", ge=1)
    epochs: Int = F("a positive integer", ge=1)
    budget_minutes: Real | None = F("a number of minutes > 0 or null", gt=0)
    warmup_fraction: Real = F("a fraction in [0, 1)", ge=0, lt=1)
    grad_clip: Real | None = F("a number > 0 or null (no clipping)", gt=0)
    label_smoothing: Real = F("a fraction in [0, 1)", ge=0, lt=1)


class PretrainConfig(_Section):
    model_name: NonEmptyStr = F("a registered visual model name")
    model_options: dict[str, Any] = F("a mapping of the model's options")
    activation_checkpointing: Bool = F("true or false")
    init_from: NonEmptyStr | None = F("a pretrain-faces checkpoint (path or pretrained:NAME) or null")
    data: PretrainDataSection = F("a mapping")
    optim: PretrainOptimSection = F("a mapping")
    augment: dict[str, Any] = F("a mapping (checked by mmaffect.training.augment_faces)")
    eval_batch_size: Int = F("a positive integer", ge=1)
    seed: Int = F("an integer ≥ 0", ge=0)
    device: Device = F(f"one of {DEVICE_HELP}")
    amp: Bool | Literal["auto"] = F("auto, true or false")


# --------------------------------------------------------------------------- checking


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The section class of a field annotated ``Section`` or ``Section | None``."""
    import typing

    for cand in (annotation, *typing.get_args(annotation)):
        if isinstance(cand, type) and issubclass(cand, BaseModel):
            return cand
    return None


def _field_description(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The description of the field at ``loc`` (pydantic's error location), when there is one."""
    node: Any = model
    desc = None
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel) and isinstance(part, str) \
                and part in node.model_fields:
            info = node.model_fields[part]
            desc = info.description
            node = _section_of(info.annotation)
        else:
            # a list index or a union branch: keep the description of the field that holds it
            continue
    return desc


def _key(prefix: str, loc: tuple[Any, ...], model: type[BaseModel]) -> str:
    parts: list[str] = [prefix] if prefix else []
    node: Any = model
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel) and isinstance(part, str):
            if part in node.model_fields:
                parts.append(part)
                node = _section_of(node.model_fields[part].annotation)
            else:
                parts.append(part)
                node = None
        elif isinstance(part, int):
            parts[-1] = f"{parts[-1]}[{part}]" if parts else f"[{part}]"
        # other location parts name union branches ("int", "literal['auto']"): not part of the key
    return ".".join(parts)


def _message(exc: ValidationError, model: type[BaseModel], *, prefix: str, what: str) -> str:
    lines = []
    seen: set[str] = set()
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = _key(prefix, loc, model)
        if key in seen:  # one line per key (a union gives one error per branch)
            continue
        seen.add(key)
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown configuration key {key!r} in the {what} configuration")
            continue
        desc = _field_description(model, loc)
        got = err.get("input")
        if desc:
            lines.append(f"{key}: must be {desc}, got {got!r}")
        else:
            msg = err["msg"]
            lines.append(f"{key}: {msg[:1].lower()}{msg[1:]}, got {got!r}")
    more = f" (and {len(lines) - 3} more)" if len(lines) > 3 else ""
    return "; ".join(lines[:3]) + more


def _merge_back(original: dict[str, Any], validated: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(original)
    for key, value in validated.items():
        if key in out and isinstance(out[key], dict) and isinstance(value, Mapping):
            out[key] = _merge_back(out[key], value)
        else:
            out[key] = value
    return out


def _validate(model: type[BaseModel], cfg: Mapping[str, Any], *, what: str, prefix: str = "") -> dict[str, Any]:
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"the {what} configuration must be a mapping, not {type(cfg).__name__}")
    try:
        checked = model.model_validate(dict(cfg))
    except ValidationError as exc:
        raise ConfigError(_message(exc, model, prefix=prefix, what=what)) from None
    return _merge_back(dict(cfg), checked.model_dump(exclude_unset=True))


def validate_prepare_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a preprocessing configuration; returns it with normalised values.

    >>> validate_prepare_config({"faces": {"size": 64}})["faces"]["size"]
    64
    >>> validate_prepare_config({"faces": {"size": "abc"}})
    Traceback (most recent call last):
    ...
    mmaffect.errors.ConfigError: faces.size: must be an integer from 16 to 1024 (crop side in pixels), got 'abc'
    """
    return _validate(PrepareConfig, cfg, what="prepare")


def validate_train_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a training (and tuning) configuration; ``model_options`` is checked by
    :func:`validate_model_options` once the model is known."""
    return _validate(TrainConfig, cfg, what="train")


def validate_pretrain_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Check a ``pretrain-faces`` configuration."""
    return _validate(PretrainConfig, cfg, what="pretrain-faces")


def check_device(spec: Any, *, key: str = "device") -> str:
    """``spec`` when it names a device mmaffect can use, else a one-line :class:`ConfigError`.

    >>> check_device("cuda:1")
    'cuda:1'
    >>> check_device("tpu9", key="--device")
    Traceback (most recent call last):
    ...
    mmaffect.errors.ConfigError: --device: must be one of auto, cpu, mps, cuda or cuda:N, got 'tpu9'
    """
    if not isinstance(spec, str) or not DEVICE_PATTERN.match(spec.strip()):
        raise ConfigError(f"{key}: must be one of {DEVICE_HELP}, got {spec!r}")
    return spec.strip()


# Model options: the registry's defaults are the constructors' keyword arguments, so each option is checked
# against the type of its default; names that are sizes or counts must be positive, dropouts in [0, 1).
_POSITIVE = re.compile(r"(hidden|dim|size|filters|heads|channels|units|width|widths|projections)$")
_COUNT = re.compile(r"(layers|blocks|stages)$")


def _option_rule(name: str, default: Any) -> tuple[Any, str] | None:
    if isinstance(default, bool):
        return Bool, "true or false"
    if isinstance(default, int):
        if _POSITIVE.search(name):
            return Annotated[int, Field(strict=True, ge=1)], "a positive integer"
        if _COUNT.search(name):
            return Annotated[int, Field(strict=True, ge=0)], "an integer ≥ 0"
        return Int, "an integer"
    if isinstance(default, float):
        if "dropout" in name:
            return Annotated[Real, Field(ge=0, lt=1)], "a probability in [0, 1)"
        return Real, "a number"
    if isinstance(default, (list, tuple)):
        if default and all(isinstance(v, int) and not isinstance(v, bool) for v in default):
            return list[Annotated[int, Field(strict=True, ge=1)]], "a list of positive integers"
        return list[Any], "a list"
    if isinstance(default, dict):
        return dict[str, Any], "a mapping"
    if isinstance(default, str):
        return str, "a string"
    return None  # None or another type: any value


def validate_model_options(model_name: str, options: Mapping[str, Any], defaults: Mapping[str, Any],
                           *, prefix: str = "model_options") -> dict[str, Any]:
    """Check ``options`` against the model's defaults (its constructor's keyword arguments).

    >>> validate_model_options("m", {"head_hidden": 64}, {"head_hidden": 256})
    {'head_hidden': 64}
    >>> validate_model_options("m", {"head_hidden": "abc"}, {"head_hidden": 256})
    Traceback (most recent call last):
    ...
    mmaffect.errors.ConfigError: model_options.head_hidden: must be a positive integer (an option of m), got 'abc'
    """
    from pydantic import TypeAdapter

    unknown = set(options) - set(defaults)
    if unknown:
        raise ConfigError(f"model {model_name!r} has no option(s) {sorted(unknown)}; options: {sorted(defaults)}")
    out = dict(options)
    for name, value in options.items():
        rule = _option_rule(name, defaults[name])
        if rule is None or value is None and defaults[name] is None:
            continue
        typ, what = rule
        try:
            out[name] = TypeAdapter(typ).validate_python(value)
        except ValidationError:
            raise ConfigError(f"{prefix}.{name}: must be {what} (an option of {model_name}), got {value!r}") from None
    return out
