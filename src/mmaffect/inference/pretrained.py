"""Pretrained models shipped inside the package (research use only).

The files live in ``mmaffect/pretrained/`` next to ``MODEL_CARD.md`` (training
data, protocol, scores, terms) and ``index.json`` (name → file, modalities,
what it is for). They are inference checkpoints: the weights, the resolved
training configuration and the preprocessing parameters of ``mmaffect
train``'s ``best.pt``, without optimizer state (:func:`pack_checkpoint`).

* ``mmaffect predict VIDEO`` with neither ``--checkpoint`` nor
  ``$MMAFFECT_CHECKPOINT`` uses the default model (``default: true`` in
  ``index.json``);
* ``--checkpoint pretrained:NAME`` (or ``mmaffect.load("pretrained:NAME")``)
  picks another one;
* ``init_from.visual=pretrained:NAME`` in ``mmaffect train`` takes a shipped
  ``branch`` model (a face network pretrained on FER+); ``mmaffect predict
  VIDEO|IMAGES --checkpoint pretrained:NAME`` runs it on faces (expression
  probabilities and proxy valence/arousal, :mod:`mmaffect.inference.faces`),
  and ``mmaffect evaluate pretrained:NAME --images FOLDER`` scores it;
* ``mmaffect pretrained`` lists them, ``mmaffect pretrained NAME`` prints the
  model card section and the file.

Every shipped model was trained on EmoDB, EmoBank and/or FER+, corpora
licensed for research use only: the models inherit those terms.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from mmaffect.errors import ConfigError

PREFIX = "pretrained:"
PACKAGE = "mmaffect.pretrained"

__all__ = ["PREFIX", "PretrainedModel", "available", "default_model", "resolve", "card_section", "pack_checkpoint",
           "shipped_terms"]


KINDS = ("predict", "branch")
"""``predict``: a whole model for ``mmaffect predict`` / :func:`mmaffect.load`; ``branch``: the
weights of one branch (``mmaffect pretrain-faces``) for ``init_from.<modality>=pretrained:NAME``,
which ``mmaffect predict`` also runs on faces (videos or images) through its classifier."""


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


def _folder() -> Path:
    return Path(str(resources.files(PACKAGE)))


def available() -> dict[str, PretrainedModel]:
    """The shipped models, by name (``index.json``); files that are missing are an error."""
    index_path = _folder() / "index.json"
    if not index_path.is_file():
        return {}
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{index_path}: not valid JSON ({exc})") from None
    models = {}
    for name, entry in index.get("models", {}).items():
        path = _folder() / entry["file"]
        if entry.get("kind", "predict") not in KINDS:
            raise ConfigError(f"{index_path}: {name}: kind must be one of {KINDS}, not {entry['kind']!r}")
        models[name] = PretrainedModel(name=name, file=entry["file"], kind=entry.get("kind", "predict"),
                                       model_name=entry["model_name"],
                                       modalities=tuple(entry["modalities"]), summary=entry["summary"],
                                       default=bool(entry.get("default", False)), path=path)
    return models


def default_model() -> PretrainedModel | None:
    """The model ``mmaffect predict`` uses when no checkpoint is given (None if none is shipped)."""
    defaults = [m for m in available().values() if m.default and m.kind == "predict"]
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
    return str(json.loads((_folder() / "index.json").read_text()).get("terms") or "Research use only.")


def card_section(name: str) -> str:
    """The ``## name`` section of ``MODEL_CARD.md`` plus its common terms section."""
    text = (_folder() / "MODEL_CARD.md").read_text()
    sections = re.split(r"(?m)^## ", text)
    found = [s for s in sections if s.split("\n", 1)[0].strip().strip("`") == name]
    terms = [s for s in sections if s.lower().startswith("terms")]
    if not found:
        raise ConfigError(f"MODEL_CARD.md has no section for {name!r}")
    return "\n".join("## " + s.rstrip() + "\n" for s in found + terms)


def pack_checkpoint(source: str | Path, out: str | Path) -> dict[str, Any]:
    """Write an inference copy of a ``mmaffect train`` checkpoint: weights, configuration,
    preprocessing parameters and history; no optimizer, scheduler or RNG state.

    The result loads with :func:`mmaffect.load` like the original. Returns its summary.
    """
    import torch

    from mmaffect.training.checkpoint import load_checkpoint
    from mmaffect.utils.io import atomic_path

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


def _cmd_pretrained(args: Any) -> None:
    if args.pack:
        if not args.out:
            raise ConfigError("--pack CHECKPOINT needs --out FILE")
        print(json.dumps(pack_checkpoint(args.pack, args.out)))
        return
    models = available()
    if args.name:
        path = resolve(PREFIX + args.name)
        print(card_section(args.name))
        print(f"file: {path}")
        return
    if not models:
        print("no pretrained models are shipped with this installation")
        return
    for m in models.values():
        mark = " (default of `mmaffect predict`)" if m.default and m.kind == "predict" else ""
        use = "predict" if m.kind == "predict" else f"init_from.{m.modalities[0]}; predict on faces"
        print(f"{m.name}{mark} [{use}]: {m.model_name}, {'+'.join(m.modalities)} — {m.summary}")
    print("Research use only (trained on EmoDB / EmoBank / FER+). `mmaffect pretrained NAME` prints its model card.")


def add_pretrained_parser(sub: Any) -> None:
    """Register ``pretrained`` on a subparsers object."""
    s = sub.add_parser("pretrained", help="list the shipped pretrained models and their model cards")
    s.add_argument("name", nargs="?", help="print this model's card and file")
    s.add_argument("--pack", metavar="CHECKPOINT", help="(maintainers) write an inference copy of a checkpoint")
    s.add_argument("--out", help="file written by --pack")
    s.set_defaults(func=_cmd_pretrained)
