"""One entry point for every on-disk corpus layout: :func:`read_corpus`.

``layout="auto"`` recognises the SEWA (AVEC 2017) layout by its folders
(``audio/``, ``video/``, ``labels/``, ``turns/`` or ``transcriptions/``
holding files named ``Train_NN``, ``Devel_NN`` or ``Test_NN``) and the generic
layout by session folders holding ``video.*``, ``audio.*``,
``transcript.csv``, ``turns.csv`` or ``labels.csv`` (or a ``splits.csv``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmaffect.data.generic import SPLITS_FILE, is_generic_session, read_generic, session_folders
from mmaffect.data.session import Session
from mmaffect.data.sewa import RECORDING_ID, SEWA_FOLDERS, read_sewa
from mmaffect.errors import ConfigError, DataError

LAYOUTS: tuple[str, ...] = ("auto", "sewa", "generic")
"""Accepted values of ``layout``."""


def is_sewa(root: Path) -> bool:
    """Whether ``root`` has a SEWA folder holding a ``Train_/Devel_/Test_`` file."""
    for folder, suffix in SEWA_FOLDERS.items():
        directory = Path(root) / folder
        if not directory.is_dir():
            continue
        for p in directory.iterdir():
            if p.suffix.lower() == suffix and RECORDING_ID.fullmatch(p.stem):
                return True
    return False


def is_generic(root: Path) -> bool:
    """Whether ``root`` has a ``splits.csv`` or a folder in the generic session layout."""
    root = Path(root)
    if (root / SPLITS_FILE).is_file():
        return True
    return any(is_generic_session(f) for f in session_folders(root))


def detect_layout(root: Path) -> str:
    """``'sewa'`` or ``'generic'``; a DataError when ``root`` is missing, empty or neither."""
    root = Path(root)
    if not root.exists():
        raise DataError("corpus folder does not exist", path=root)
    if not root.is_dir():
        raise DataError("corpus path is a file, not a folder", path=root)
    if not any(p for p in root.iterdir() if not p.name.startswith(".")):
        raise DataError("corpus folder is empty", path=root)
    if is_sewa(root):
        return "sewa"
    if is_generic(root):
        return "generic"
    raise DataError(
        "unrecognised corpus layout: expected SEWA (audio/Train_01.wav, video/Train_01.avi, "
        "labels/Train_01.csv, ...) or generic (<session>/video.mp4, <session>/audio.wav, "
        "<session>/transcript.csv, ...); see docs/data-layout.md",
        path=root,
    )


def read_corpus(
    root: Path | str, *, layout: str = "auto", partitions: Sequence[str] | None = None
) -> list[Session]:
    """Read every session of a corpus folder, sorted by name.

    ``layout`` is ``auto`` (detect), ``sewa`` or ``generic``; ``partitions``
    keeps only sessions of those partitions (``train``, ``devel``, ``test``).
    """
    if layout not in LAYOUTS:
        raise ConfigError(f"unknown layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
    root = Path(root)
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "sewa":
        return read_sewa(root, partitions=partitions)
    return read_generic(root, partitions=partitions)
