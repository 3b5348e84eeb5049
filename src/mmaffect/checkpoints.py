"""Checkpoints: the file format, a model rebuilt from one, shipped ``pretrained:NAME`` models,
and branch initialisation (``init_from``).

The one home of everything that reads or writes an mmaffect checkpoint, used
by training (``train``, ``pretrain-faces``, ``evaluate``), inference
(``predict``, :func:`mmaffect.load`, ``export``) and the figures. It is a
layer of its own between models and training (docs/architecture.md): it
needs only the model registry below it, so training, inference, viz and the
commands above can all import it. torch and the models are imported where
they are used, so that the commands can read :data:`ENV_CHECKPOINT` without
loading them (``mmaffect --help`` stays fast).

**Format.** A checkpoint is a dict of tensors and plain Python values only
(no pickled modules or classes), so ``torch.load(path, weights_only=True)``
reads it (:func:`load_checkpoint`; a missing, empty, truncated or foreign
file is a one-line :class:`~mmaffect.errors.ConfigError`):

==================  ==========================================================
key                 content
==================  ==========================================================
``format``          :data:`CHECKPOINT_FORMAT`
``model``           the model's ``state_dict()`` (never the DDP wrapper's)
``optimizer``       the optimizer's ``state_dict()``
``scheduler``       the LR scheduler's ``state_dict()`` or ``None``
``epoch``           epochs completed (1-based count; 0 = before training)
``step``            optimizer steps taken
``best_score``      best selection score so far (mean dev CCC, higher = better)
``best_epoch``      the epoch that reached it
``stale_epochs``    epochs since the best one (early stopping)
``history``         one dict per finished epoch (the rows of ``log.csv``)
``rng``             random states of python, numpy, torch (and CUDA)
``config``          the resolved training configuration (``model_name`` at the
                    top level, as :func:`load_branch_weights` expects)
``prepare_config``  the cache's preprocessing configuration
==================  ==========================================================

**Rebuild.** :func:`build_model_from_checkpoint` creates the registered model
of a checkpoint's ``config`` and loads its weights.

**Shipped models** (research use only). The files live in
``mmaffect/pretrained/`` next to ``MODEL_CARD.md`` (training data, protocol,
scores, terms) and ``index.json`` (name → file, modalities, what it is for).
They are inference checkpoints: the weights, the resolved training
configuration and the preprocessing parameters of ``mmaffect train``'s
``best.pt``, without optimizer state (:func:`pack_checkpoint`).

* ``mmaffect predict VIDEO`` with neither ``--checkpoint`` nor
  ``$MMAFFECT_CHECKPOINT`` uses the default model (``default: true`` in
  ``index.json``; :func:`default_checkpoint`); a transcript alone, with no
  media, takes the model marked ``default_for: ["transcript"]`` instead (the
  default fusion model reads words alone poorly);
* ``--checkpoint pretrained:NAME`` (or ``mmaffect.load("pretrained:NAME")``)
  picks another one (:func:`resolve`);
* ``init_from.visual=pretrained:NAME`` in ``mmaffect train`` takes a shipped
  ``branch`` model (a face network pretrained on FER+); ``mmaffect predict
  VIDEO|IMAGES --checkpoint pretrained:NAME`` runs it on faces (expression
  probabilities and proxy valence/arousal, :mod:`mmaffect.inference.faces`),
  and ``mmaffect evaluate pretrained:NAME --images FOLDER`` scores it;
* ``mmaffect pretrained`` lists them, ``mmaffect pretrained NAME`` prints the
  model card section and the file (:mod:`mmaffect.inference.pretrained`).

Every shipped model was trained on EmoDB, EmoBank and/or FER+, corpora
licensed for research use only: the models inherit those terms.

**Branch initialisation.** :func:`load_branch_weights` initialises a model's
branches from trained unimodal networks or pretrained branches (Section 5.3;
``init_from`` of ``mmaffect train``).
"""

from __future__ import annotations

import importlib
import io
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmaffect.errors import ConfigError
from mmaffect.utils.io import atomic_path

if TYPE_CHECKING:
    import torch

    from mmaffect.models.assembly import MultimodalModel, UnimodalModel

__all__ = [
    # format
    "CHECKPOINT_FORMAT", "plain", "capture_rng_state", "restore_rng_state", "save_checkpoint", "write_torch_file",
    "read_torch_file", "load_checkpoint", "pack_checkpoint",
    # rebuild
    "import_modules", "build_model_from_checkpoint",
    # shipped models
    "PREFIX", "KINDS", "ENV_CHECKPOINT", "PretrainedModel", "pretrained_folder", "available", "default_model",
    "resolve", "default_checkpoint", "shipped_terms",
    # init_from
    "load_branch_weights",
]

CHECKPOINT_FORMAT = 1


# --------------------------------------------------------------------------- format

def plain(obj: Any) -> Any:
    """``obj`` as JSON-like plain values (tuples become lists), for configs in checkpoints.

    >>> plain({"a": (1, 2), "b": {"c": None}})
    {'a': [1, 2], 'b': {'c': None}}
    """
    return json.loads(json.dumps(obj, default=str))


def capture_rng_state() -> dict[str, Any]:
    """Random states of python, numpy and torch (CPU and every CUDA device) as plain values."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    import numpy as np
    import torch

    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    n = state["numpy"]
    np.random.set_state({
        "bit_generator": n["bit_generator"],
        "state": {"key": n["key"].numpy().astype(np.uint32), "pos": n["pos"]},
        "has_gauss": n["has_gauss"],
        "gauss": n["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: str | Path,
    *,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    scheduler: Any | None,
    epoch: int,
    step: int,
    best_score: float,
    best_epoch: int,
    stale_epochs: int,
    history: list[dict[str, Any]],
    config: dict[str, Any],
    prepare_config: dict[str, Any] | None,
    rng: dict[str, Any] | None = None,
    averaged: tuple[torch.nn.Module, int] | None = None,
) -> None:
    """Write a checkpoint atomically (a killed process never leaves half a file).

    With weight averaging, ``model`` is the averaged model (what is scored and predicted with) and
    ``averaged`` = (the model the optimizer trains, the number of averaging updates): stored as
    ``training_model`` and ``ema_updates`` so that ``--resume`` continues both.
    """
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "epoch": int(epoch),
        "step": int(step),
        "best_score": float(best_score),
        "best_epoch": int(best_epoch),
        "stale_epochs": int(stale_epochs),
        "history": plain(history),
        "rng": rng if rng is not None else capture_rng_state(),
        "config": plain(config),
        "prepare_config": plain(prepare_config),
    }
    if averaged is not None:
        payload["training_model"] = {k: v.detach().cpu() for k, v in averaged[0].state_dict().items()}
        payload["ema_updates"] = int(averaged[1])
    write_torch_file(path, payload)


def write_torch_file(path: str | Path, payload: Any) -> None:
    """``torch.save`` ``payload`` to ``path`` atomically and durably.

    The bytes are serialised in memory, written to a temporary file, flushed
    to disk and only then renamed over ``path``: a kill, a full disk or a
    read-only folder leaves the previous file (e.g. the last ``last.pt`` of a
    run, which stays resumable) untouched. An I/O failure is an
    :class:`OSError` naming ``path``.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                f.write(buffer.getbuffer())
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from None
        raise


def _torch_reason(path: Path, exc: BaseException) -> str:
    """What is wrong with a file torch.load refused, in a few words, without torch's advice about
    ``weights_only=False`` (mmaffect's checkpoints never need code unpickled; a bad file is not fixed by it)."""
    text = str(exc)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head != b"PK\x03\x04":
        return "not a PyTorch checkpoint file"
    if "Weights only load failed" in text or "Unpickl" in type(exc).__name__:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled objects{what}, not only tensors and plain values; not an mmaffect checkpoint"
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"the file is truncated or damaged: {first}"


def read_torch_file(path: str | Path, *, map_location: str | torch.device = "cpu", label: str | None = None) -> Any:
    """``torch.load(path, weights_only=True)`` with one-line :class:`ConfigError` s for an empty, truncated,
    foreign or code-carrying file (``label`` prefixes them; default: the path)."""
    import torch

    path = Path(path)
    where = label or str(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ConfigError(f"{where}: the checkpoint file is empty (0 bytes); it was not written completely")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad file
        raise ConfigError(f"{where}: not a readable checkpoint ({_torch_reason(path, exc)})") from None


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no code is unpickled).

    A missing, empty, truncated or foreign file is a one-line :class:`ConfigError`.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: checkpoint not found")
    ckpt = read_torch_file(path, map_location=map_location)
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise ConfigError(f"{path}: not an mmaffect training checkpoint (no 'model'/'config' entries)")
    return ckpt


def pack_checkpoint(source: str | Path, out: str | Path) -> dict[str, Any]:
    """Write an inference copy of a ``mmaffect train`` checkpoint: weights, configuration,
    preprocessing parameters and history; no optimizer, scheduler or RNG state.

    The result loads with :func:`mmaffect.load` like the original. Returns its summary.
    """
    import torch

    src = Path(source)
    if src.is_dir():
        src = src / "best.pt"
    ckpt = load_checkpoint(src)
    if not ckpt.get("prepare_config"):
        raise ConfigError(f"{src}: no preprocessing parameters (prepare_config): not a `mmaffect train` checkpoint")
    keep = ("format", "model", "epoch", "step", "best_score", "best_epoch", "history", "config", "prepare_config")
    slim = {k: ckpt[k] for k in keep if k in ckpt}
    slim["optimizer"] = slim["scheduler"] = None
    with atomic_path(out) as tmp:
        torch.save(slim, tmp)
    n = sum(v.numel() for v in ckpt["model"].values())
    return {"model_name": ckpt["config"]["model_name"], "parameters": n, "bytes": Path(out).stat().st_size,
            "best_epoch": ckpt.get("best_epoch"), "best_score": ckpt.get("best_score")}


# --------------------------------------------------------------------------- rebuild


def import_modules(names: Sequence[str]) -> None:
    """Import the configuration's ``imports`` (modules that register extra models)."""
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"imports: cannot import {name!r}: {exc}") from None


def build_model_from_checkpoint(ckpt: dict[str, Any], *, context: str | float | None = "train") -> torch.nn.Module:
    """The registered model of a checkpoint's config with its weights loaded.

    ``context``: the temporal head's context window in eval mode
    (:func:`mmaffect.models.temporal.resolve_context`): ``"train"`` (default) the
    checkpoint's training window ``data.window``, ``None`` / ``"none"`` one pass with
    the state carried over the whole recording, or seconds."""
    from mmaffect.models import create_model
    from mmaffect.models.temporal import apply_context

    cfg = ckpt["config"]
    import_modules(cfg.get("imports") or [])
    model = create_model(cfg["model_name"], **cfg.get("model_options", {}))
    model.load_state_dict(ckpt["model"])
    apply_context(model, cfg, context)
    return model


# --------------------------------------------------------------------------- shipped models (pretrained:NAME)

PREFIX = "pretrained:"
PACKAGE = "mmaffect.pretrained"
ENV_CHECKPOINT = "MMAFFECT_CHECKPOINT"

KINDS = ("predict", "branch")
"""``predict``: a whole model for ``mmaffect predict`` / :func:`mmaffect.load`; ``branch``: the
weights of one branch (``mmaffect pretrain-faces``) for ``init_from.<modality>=pretrained:NAME``,
which ``mmaffect predict`` also runs on faces (videos or images) through its classifier."""

INPUT_KINDS = ("transcript",)
"""Inputs that may have a default model of their own (``default_for`` in ``index.json``):
``transcript`` = a transcript alone, with no media."""


@dataclass(frozen=True)
class PretrainedModel:
    name: str
    file: str
    kind: str
    model_name: str
    modalities: tuple[str, ...]
    summary: str
    default: bool
    path: Path
    default_for: tuple[str, ...] = ()


def pretrained_folder() -> Path:
    """The folder of the shipped models (``mmaffect/pretrained/``)."""
    return Path(str(resources.files(PACKAGE)))


def available() -> dict[str, PretrainedModel]:
    """The shipped models, by name (``index.json``); files that are missing are an error."""
    index_path = pretrained_folder() / "index.json"
    if not index_path.is_file():
        return {}
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{index_path}: not valid JSON ({exc})") from None
    models = {}
    for name, entry in index.get("models", {}).items():
        path = pretrained_folder() / entry["file"]
        if entry.get("kind", "predict") not in KINDS:
            raise ConfigError(f"{index_path}: {name}: kind must be one of {KINDS}, not {entry['kind']!r}")
        default_for = tuple(entry.get("default_for", ()))
        if any(k not in INPUT_KINDS for k in default_for):
            raise ConfigError(f"{index_path}: {name}: default_for may list {INPUT_KINDS}, not {list(default_for)}")
        models[name] = PretrainedModel(name=name, file=entry["file"], kind=entry.get("kind", "predict"),
                                       model_name=entry["model_name"],
                                       modalities=tuple(entry["modalities"]), summary=entry["summary"],
                                       default=bool(entry.get("default", False)), path=path, default_for=default_for)
    return models


def default_model(input_kind: str | None = None) -> PretrainedModel | None:
    """The model ``mmaffect predict`` uses when no checkpoint is given (None if none is shipped);
    ``input_kind`` (:data:`INPUT_KINDS`): the model for that input if one is marked for it."""
    models = [m for m in available().values() if m.kind == "predict"]
    for_input = [m for m in models if input_kind is not None and input_kind in m.default_for]
    defaults = for_input or [m for m in models if m.default]
    return defaults[0] if defaults else None


def resolve(spec: str | Path, *, kind: str | None = None) -> Path:
    """``pretrained:NAME`` → the shipped file; any other path is returned as it is.

    ``kind`` (``predict``/``branch``): the use the caller has for it; a shipped
    model of the other kind is refused with a clear error.
    """
    text = str(spec)
    if not text.startswith(PREFIX):
        return Path(spec)
    name = text[len(PREFIX):]
    models = available()
    if name not in models:
        raise ConfigError(f"no pretrained model {name!r}; shipped: {', '.join(sorted(models)) or 'none'}")
    model = models[name]
    if kind is not None and model.kind != kind:
        use = ("`mmaffect predict --checkpoint` / mmaffect.load()" if model.kind == "predict"
               else f"init_from.{model.modalities[0]}={PREFIX}{name} in `mmaffect train`")
        raise ConfigError(f"pretrained model {name!r} is a {model.kind} model: use it with {use}")
    path = model.path
    if not path.is_file():
        raise ConfigError(f"{path}: the file of pretrained model {name!r} is missing from this installation")
    return path


def shipped_terms(path: str | Path) -> str | None:
    """The terms of use (``index.json``) when ``path`` is one of the shipped model files, else None."""
    try:
        resolved = Path(path).resolve()
    except OSError:
        return None
    if not any(m.path.resolve() == resolved for m in available().values()):
        return None
    return str(json.loads((pretrained_folder() / "index.json").read_text()).get("terms") or "Research use only.")


def default_checkpoint(input_kind: str | None = None) -> Path:
    """The checkpoint used when ``--checkpoint`` is not given: ``$MMAFFECT_CHECKPOINT``, else the
    shipped default model for ``input_kind`` (:func:`default_model`)."""
    env = os.environ.get(ENV_CHECKPOINT)
    if env:
        return resolve(env, kind="predict")
    model = default_model(input_kind)
    if model is not None:
        return resolve(PREFIX + model.name, kind="predict")
    raise ConfigError(
        "no --checkpoint given and no default model is installed: pass --checkpoint RUN/best.pt "
        f"(e.g. demo_output/runs/seed0/fusion-hierarchical/best.pt after `make demo`) or set {ENV_CHECKPOINT}"
    )


# --------------------------------------------------------------------------- branch initialisation (init_from)


def _read_checkpoint(source: Any, label: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    if isinstance(source, (str, Path)):
        path = resolve(source)  # also pretrained:NAME (a shipped branch or unimodal model)
        if not path.is_file():
            raise ConfigError(f"{label}: checkpoint {path} does not exist")
        source = read_torch_file(path, label=f"{label}: {path}")
    if not isinstance(source, Mapping):
        raise ConfigError(f"{label}: expected a checkpoint dict or state dict, got {type(source).__name__}")
    if "model" in source and isinstance(source["model"], Mapping):
        return dict(source["model"]), dict(source.get("config") or {})
    return dict(source), {}


def load_branch_weights(
    model: MultimodalModel | UnimodalModel, sources: Mapping[str, Any]
) -> dict[str, str]:
    """Initialise ``model``'s branches from trained unimodal networks (Section 5.3),
    or a unimodal model's branch from a pretrained one (e.g. ``mmaffect
    pretrain-faces``'s ``model.pt`` for the visual branch), or a branch from
    the same branch of a trained multimodal model (e.g. the text and audio
    branches of ``pretrained:composite-fusion``).

    ``sources`` maps a modality (``"text"``, ``"audio"``, ``"visual"``) to a
    checkpoint path, a checkpoint dict (``{"model": state_dict, "config":
    {"model_name": ...}}``) or a bare state dict (of a :class:`UnimodalModel`,
    keys ``branch.*``, or of the branch itself). Only the branch weights are
    taken; the unimodal head is discarded (the multimodal head is trained
    afresh). Matching is strict: a missing, unexpected or differently shaped
    tensor raises :class:`ConfigError` naming the checkpoint. Returns
    ``{modality: description of the source}``.
    """
    from mmaffect.models.assembly import MultimodalModel
    from mmaffect.models.registry import get_spec

    branches = model.branches if isinstance(model, MultimodalModel) else {model.modality: model.branch}
    loaded: dict[str, str] = {}
    for modality, source in sources.items():
        label = str(source) if isinstance(source, (str, Path)) else f"{modality} state dict"
        if modality not in branches:
            raise ConfigError(f"{label}: the model has no {modality!r} branch (it has {list(branches)})")
        state, config = _read_checkpoint(source, label)
        name = config.get("model_name")
        if name is not None:
            spec = get_spec(str(name))
            if modality not in spec.modalities:
                raise ConfigError(
                    f"{label}: checkpoint of {name!r} (modalities {spec.modalities}) cannot initialise "
                    f"the {modality!r} branch"
                )
            if len(spec.modalities) > 1:  # a multimodal model: its branch of that modality
                prefix = f"branches.{modality}."
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if any(k.startswith("branch.") for k in state):
            state = {k[len("branch."):]: v for k, v in state.items() if k.startswith("branch.")}
        try:
            branches[modality].load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ConfigError(f"{label}: its weights do not match the {modality!r} branch: {exc}") from exc
        loaded[modality] = label if name is None else f"{label} ({name})"
    return loaded
