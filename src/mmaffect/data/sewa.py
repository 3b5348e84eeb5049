"""Reader of the AVEC 2017 SEWA (German) corpus, in its distributed layout.

::

    <root>/
      audio/Train_01.wav ...           16 kHz (any rate) wav
      video/Train_01.avi ...           Xvid video
      labels/Train_01.csv ...          name;time;arousal;valence;liking (10 Hz, no header)
      turns/Train_01.csv ...           start;end  (when the target speaks)
      transcriptions/Train_01.csv ...  start;end;'text'

Recordings are named ``Train_NN``, ``Devel_NN`` and ``Test_NN``; the prefix
gives the partition (``train``, ``devel``, ``test``). A recording is any id
that has a file in one of the five folders. Each needs ``audio/<id>.wav`` or
``video/<id>.avi`` (without the wav, the video's own audio track is used);
Train and Devel recordings need their label file, Test labels are optional
(withheld in the challenge). Missing turn or transcription files give
``target_turns=None`` / ``transcript=None``. Media files are only checked to
exist and be non-empty: decoding belongs to the media layer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from mmaffect.data.session import Session
from mmaffect.data.tables import (
    PARTITIONS,
    read_sewa_labels,
    read_sewa_transcript,
    read_sewa_turns,
)
from mmaffect.errors import ConfigError, DataError

SEWA_FOLDERS: dict[str, str] = {
    "audio": ".wav",
    "video": ".avi",
    "labels": ".csv",
    "turns": ".csv",
    "transcriptions": ".csv",
}
"""Sub-folder -> file suffix of the SEWA layout."""

RECORDING_ID = re.compile(r"(Train|Devel|Test)_(\d+)")
"""The form of a SEWA recording id (e.g. ``Train_01``)."""


def sewa_partition(recording: str) -> str:
    """``'train'``, ``'devel'`` or ``'test'`` from a recording id.

    >>> sewa_partition("Devel_07")
    'devel'
    """
    match = RECORDING_ID.fullmatch(recording)
    if match is None:
        raise ValueError(f"{recording!r} is not a SEWA recording id (Train_NN/Devel_NN/Test_NN)")
    return match.group(1).lower()


def check_partitions(partitions: Sequence[str] | None) -> set[str] | None:
    """Validate a partition filter; ``None`` means all partitions."""
    if partitions is None:
        return None
    if isinstance(partitions, str):
        partitions = [partitions]
    chosen = {p.lower() for p in partitions}
    unknown = sorted(chosen - set(PARTITIONS))
    if unknown:
        raise ConfigError(
            f"unknown partition(s) {', '.join(unknown)}; expected some of {', '.join(PARTITIONS)}"
        )
    return chosen


def sewa_recordings(root: Path) -> dict[str, dict[str, Path]]:
    """``{recording id: {folder: file}}`` of every SEWA file under ``root``.

    Files whose suffix is not the folder's (e.g. ``README``) are ignored; a
    file with the folder's suffix whose name is not a recording id raises.
    """
    root = Path(root)
    found: dict[str, dict[str, Path]] = {}
    for folder, suffix in SEWA_FOLDERS.items():
        directory = root / folder
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            if path.name.startswith(".") or path.suffix.lower() != suffix or not path.is_file():
                continue
            if path.suffix != suffix or RECORDING_ID.fullmatch(path.stem) is None:
                raise DataError(
                    f"not a SEWA recording file: expected {folder}/<id>{suffix} with <id> like "
                    f"Train_01, Devel_01 or Test_01",
                    path=path,
                )
            found.setdefault(path.stem, {})[folder] = path
    return found


def _check_media(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DataError("media file is empty (0 bytes)", path=path)


def read_sewa(
    root: Path, *, partitions: Sequence[str] | None = None, encoding: str = "utf-8"
) -> list[Session]:
    """Read a SEWA (AVEC 2017) corpus; sessions sorted by name.

    ``partitions`` keeps only recordings of those partitions (``train``,
    ``devel``, ``test``); files of other recordings are not read.
    ``encoding`` is that of the label, turn and transcription files.
    ``Session.meta`` holds ``layout='sewa'``, ``audio_from_video`` and the
    annotation files as ``labels_path``, ``turns_path``, ``transcript_path``
    (``None`` where absent).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError("SEWA corpus folder does not exist", path=root)
    chosen = check_partitions(partitions)
    recordings = sewa_recordings(root)
    if not recordings:
        raise DataError(
            "no SEWA recordings found (expected audio/, video/ or labels/ with files like "
            "Train_01.wav, Train_01.avi, Train_01.csv)",
            path=root,
        )
    sessions = []
    for name in sorted(recordings):
        partition = sewa_partition(name)
        if chosen is not None and partition not in chosen:
            continue
        files = recordings[name]
        audio, video = files.get("audio"), files.get("video")
        if audio is None and video is None:
            present = ", ".join(str(p) for p in files.values())
            raise DataError(
                f"recording {name} has neither audio nor video (missing "
                f"{root / 'audio' / (name + '.wav')} and {root / 'video' / (name + '.avi')}; "
                f"found {present})",
                path=root / "audio" / f"{name}.wav",
            )
        for media in (audio, video):
            if media is not None:
                _check_media(media)
        labels_path = files.get("labels")
        if labels_path is None and partition != "test":
            raise DataError(
                f"recording {name} of the {partition} partition has no label file",
                path=root / "labels" / f"{name}.csv",
            )
        labels = (
            None
            if labels_path is None
            else read_sewa_labels(labels_path, name=name, encoding=encoding)
        )
        turns_path = files.get("turns")
        transcript_path = files.get("transcriptions")
        sessions.append(
            Session(
                name=name,
                audio=audio if audio is not None else video,
                video=video,
                transcript=None
                if transcript_path is None
                else read_sewa_transcript(transcript_path, encoding=encoding),
                target_turns=None
                if turns_path is None
                else read_sewa_turns(turns_path, encoding=encoding),
                labels=labels,
                partition=partition,
                meta={
                    "layout": "sewa",
                    "audio_from_video": audio is None,
                    "labels_path": labels_path,
                    "turns_path": turns_path,
                    "transcript_path": transcript_path,
                },
            )
        )
    return sessions
