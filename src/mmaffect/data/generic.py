"""Reader of the generic corpus layout for users' own recordings.

::

    <root>/
      splits.csv              optional, header "session,partition"
      <session>/              one folder per session; folder name = session name
        video.mp4|.avi|.mkv|.mov|.webm   optional
        audio.wav|.flac|.ogg             optional (else the video's audio track)
        transcript.csv        optional: start,end,text (seconds, CSV quoting)
        turns.csv             optional: start,end (when the target speaks)
        labels.csv            optional: time,arousal,valence[,more] (any constant rate)

Every non-hidden sub-folder of ``<root>`` is a session and needs at least one
of video, audio, transcript (a text-only session has a transcript, and
labels to train on). See ``docs/data-layout.md`` for the validation rules
and the 10 Hz resampling of labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from mmaffect.data.session import Session
from mmaffect.data.tables import (
    read_labels_csv,
    read_splits_csv,
    read_transcript_csv,
    read_turns_csv,
)
from mmaffect.errors import DataError

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mkv", ".mov", ".webm")
"""Accepted suffixes of ``video.*``."""

AUDIO_SUFFIXES: tuple[str, ...] = (".wav", ".flac", ".ogg")
"""Accepted suffixes of ``audio.*``."""

SPLITS_FILE = "splits.csv"
ANNOTATION_FILES: tuple[str, ...] = ("transcript.csv", "turns.csv", "labels.csv")


def _media_file(folder: Path, stem: str, suffixes: Sequence[str]) -> Path | None:
    """The single ``<stem>.<suffix>`` file of a session folder, or None.

    Two candidates, an unsupported suffix or an empty (0-byte) file raise.
    """
    candidates = sorted(
        p for p in folder.iterdir() if p.stem.lower() == stem and p.suffix and p.is_file()
    )
    supported = [p for p in candidates if p.suffix.lower() in suffixes]
    unsupported = [p for p in candidates if p.suffix.lower() not in suffixes]
    if unsupported and not supported:
        raise DataError(
            f"unsupported {stem} format {unsupported[0].suffix!r} "
            f"(expected {stem}{', '.join(suffixes)})",
            path=unsupported[0],
        )
    if len(supported) > 1:
        raise DataError(
            f"session {folder.name} has {len(supported)} {stem} files "
            f"({', '.join(p.name for p in supported)}); keep one",
            path=supported[1],
        )
    if not supported:
        return None
    path = supported[0]
    if path.stat().st_size == 0:
        raise DataError("media file is empty (0 bytes)", path=path)
    return path


def is_generic_session(folder: Path) -> bool:
    """Whether ``folder`` holds any file of the generic session layout."""
    for p in folder.iterdir():
        lower = p.name.lower()
        if lower in ANNOTATION_FILES:
            return True
        if p.stem.lower() in ("audio", "video") and p.suffix.lower() in (
            VIDEO_SUFFIXES + AUDIO_SUFFIXES
        ):
            return True
    return False


def session_folders(root: Path) -> list[Path]:
    """The session folders of a generic corpus (non-hidden sub-folders), sorted by name."""
    return sorted(
        p
        for p in Path(root).iterdir()
        if p.is_dir() and not p.name.startswith((".", "__"))
    )


def read_generic_session(folder: Path, *, partition: str | None = None) -> Session:
    """Read one session folder of the generic layout."""
    folder = Path(folder)
    video = _media_file(folder, "video", VIDEO_SUFFIXES)
    audio = _media_file(folder, "audio", AUDIO_SUFFIXES)
    paths = {name: folder / name for name in ANNOTATION_FILES}
    present = {name: p if p.is_file() else None for name, p in paths.items()}
    transcript_path = present["transcript.csv"]
    turns_path = present["turns.csv"]
    labels_path = present["labels.csv"]
    if video is None and audio is None and transcript_path is None:
        raise DataError(
            "session folder has no video.*, audio.* or transcript.csv; a session needs "
            f"at least one (video{'|'.join(VIDEO_SUFFIXES)}, audio{'|'.join(AUDIO_SUFFIXES)})",
            path=folder,
        )
    return Session(
        name=folder.name,
        audio=audio if audio is not None else video,
        video=video,
        transcript=None if transcript_path is None else read_transcript_csv(transcript_path),
        target_turns=None if turns_path is None else read_turns_csv(turns_path),
        labels=None if labels_path is None else read_labels_csv(labels_path),
        partition=partition,
        meta={
            "layout": "generic",
            "audio_from_video": audio is None and video is not None,
            "labels_path": labels_path,
            "turns_path": turns_path,
            "transcript_path": transcript_path,
        },
    )


def _chosen_partitions(partitions: Sequence[str] | str | None) -> set[str] | None:
    """The requested partitions, lower-cased (None: all)."""
    if partitions is None:
        return None
    return {p.lower() for p in ([partitions] if isinstance(partitions, str) else partitions)}


def _check_splits_match_folders(root: Path, splits: dict[str, tuple[str, int]], folders: Sequence[Path],
                                splits_path: Path) -> None:
    """Every session listed in ``splits.csv`` has a folder, and every folder is listed."""
    names = {f.name for f in folders}
    for session, (_, row) in splits.items():
        if session not in names:
            raise DataError(
                f"session {session!r} has no folder {root / session}", path=splits_path, row=row
            )
    for folder in folders:
        if folder.name not in splits:
            raise DataError(
                f"session folder {folder.name!r} is not listed (add a row "
                f"'{folder.name},<train|devel|test>')",
                path=splits_path,
            )


def _check_partitions_known(chosen: set[str], splits: dict[str, tuple[str, int]], splits_path: Path) -> None:
    """Every chosen partition has a session in ``splits.csv``."""
    known = {part for part, _ in splits.values()}
    if not chosen <= known:
        raise DataError(
            f"no session in partition(s) {', '.join(sorted(chosen - known))} "
            f"(partitions: {', '.join(sorted(known))})",
            path=splits_path,
        )


def _read_checked_splits(root: Path, folders: Sequence[Path],
                         chosen: set[str] | None) -> dict[str, tuple[str, int]] | None:
    """``splits.csv`` of ``root`` (None without one), checked against the session folders and the chosen
    partitions (choosing partitions needs the file)."""
    splits_path = root / SPLITS_FILE
    splits = read_splits_csv(splits_path) if splits_path.is_file() else None
    if chosen is not None and splits is None:
        raise DataError(
            f"cannot select partitions {', '.join(sorted(chosen))}: no {SPLITS_FILE}",
            path=splits_path,
        )
    if splits is not None:
        _check_splits_match_folders(root, splits, folders, splits_path)
    if chosen is not None and splits is not None:
        _check_partitions_known(chosen, splits, splits_path)
    return splits


def read_generic(root: Path, *, partitions: Sequence[str] | None = None) -> list[Session]:
    """Read a corpus in the generic layout; sessions sorted by name.

    With ``splits.csv`` every session folder must be listed there (and every
    listed session must have a folder); without it ``partition`` is ``None``.
    ``partitions`` keeps only sessions of those partitions (this needs
    ``splits.csv``); folders of other sessions are not read.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("corpus folder does not exist", path=root)
    chosen = _chosen_partitions(partitions)
    folders = session_folders(root)
    if not folders:
        raise DataError("no session folders found (expected <root>/<session>/...)", path=root)
    splits = _read_checked_splits(root, folders, chosen)
    sessions = []
    for folder in folders:
        partition = None if splits is None else splits[folder.name][0]
        if chosen is not None and partition not in chosen:
            continue
        sessions.append(read_generic_session(folder, partition=partition))
    return sessions
