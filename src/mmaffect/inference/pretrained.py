"""``mmaffect pretrained``: the shipped pretrained models (research use only) and their model cards.

The models themselves (``pretrained:NAME`` resolution, the default model of
``mmaffect predict``, the ``index.json`` of ``mmaffect/pretrained/``) are
handled by :mod:`mmaffect.checkpoints`, the one home of checkpoints;
this module lists them, prints a model's section of ``MODEL_CARD.md`` and
writes inference copies of checkpoints for shipping (``--pack``,
:func:`mmaffect.checkpoints.pack_checkpoint`).

Every shipped model was trained on EmoDB, EmoBank and/or FER+, corpora
licensed for research use only: the models inherit those terms.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mmaffect.errors import ConfigError

__all__ = ["card_section", "add_pretrained_parser"]


def card_section(name: str) -> str:
    """The ``## name`` section of ``MODEL_CARD.md`` plus its common terms section."""
    from mmaffect.checkpoints import pretrained_folder

    text = (pretrained_folder() / "MODEL_CARD.md").read_text()
    sections = re.split(r"(?m)^## ", text)
    found = [s for s in sections if s.split("\n", 1)[0].strip().strip("`") == name]
    terms = [s for s in sections if s.lower().startswith("terms")]
    if not found:
        raise ConfigError(f"MODEL_CARD.md has no section for {name!r}")
    return "\n".join("## " + s.rstrip() + "\n" for s in found + terms)


def _cmd_pretrained(args: Any) -> None:
    # Imported here: registering the command (``mmaffect --help``) must not load torch.
    from mmaffect.checkpoints import PREFIX, available, pack_checkpoint, resolve

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
