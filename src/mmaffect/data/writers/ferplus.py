"""Convert FER+ (48×48 grey faces with crowd votes) into silent face videos of the generic layout.

Labels are the vote-weighted category → (valence, arousal) PROXY
(:mod:`mmaffect.data.proxy`), not dimensional ratings. See
:func:`adapt_ferplus`, :class:`FaceRendering` (also used by the composite
corpus) and ``docs/adapters.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from mmaffect.data.proxy import EXCLUDED_VOTES, votes_matrix_to_va
from mmaffect.data.session import LABEL_RATE
from mmaffect.data.sources import ferplus_keep, load_ferplus, read_csv_rows
from mmaffect.data.writers.layout import (
    AdaptReport,
    check_limit,
    finish_corpus,
    frames_of,
    prepare_output,
    video_codec,
    write_csv,
    write_labels,
    write_video,
)
from mmaffect.errors import ConfigError, DataError

FERPLUS_PARTITIONS = {"train": "train", "valid": "devel"}
"""FER+ file split → mmaffect partition."""


@dataclass(frozen=True)
class FaceRendering:
    """How a 48×48 FER+ face is drawn into a video frame.

    The face is resized by ``upscale`` (bicubic) and centred on a uniform
    ``background`` grey canvas with ``margin`` × the face size on every side
    (the face size is a multiple of 48, so the canvas has even sides, as
    yuv420p video needs). Haar
    cascades find far more faces with a margin than on the tight crop.
    """

    upscale: int = 3
    margin: float = 0.25
    background: int = 128

    @property
    def face_size(self) -> int:
        """Side of the upscaled face, pixels."""
        return 48 * self.upscale

    @property
    def pad(self) -> int:
        """Canvas border on each side, pixels (the face size is even, so is the canvas)."""
        return int(round(self.face_size * self.margin))

    @property
    def canvas(self) -> int:
        """Side of the square video frame, pixels."""
        return self.face_size + 2 * self.pad

    def render(self, face: np.ndarray) -> np.ndarray:
        """(canvas, canvas, 3) uint8 RGB frame showing ``face`` ((48, 48) uint8 grey)."""
        import cv2

        big = cv2.resize(face, (self.face_size, self.face_size), interpolation=cv2.INTER_CUBIC)
        frame = np.full((self.canvas, self.canvas), self.background, dtype=np.uint8)
        frame[self.pad : self.pad + self.face_size, self.pad : self.pad + self.face_size] = big
        return np.repeat(frame[:, :, None], 3, axis=2)


def _check_options(
    *, split: str, faces_per_session: int, upscale: int, margin: float, fps: int, seconds_per_face: float
) -> tuple[int, int]:
    """Check :func:`adapt_ferplus`'s options; (label frames, video frames) per face."""
    if split not in ("train", "valid", "both"):
        raise ConfigError(f"split must be 'train', 'valid' or 'both', not {split!r}")
    if not isinstance(faces_per_session, int) or faces_per_session < 1:
        raise ConfigError(f"faces_per_session must be a positive integer, not {faces_per_session!r}")
    if not isinstance(upscale, int) or not 1 <= upscale <= 10:
        raise ConfigError(f"upscale must be an integer 1-10, not {upscale!r}")
    if not 0 <= margin <= 2:
        raise ConfigError(f"margin must be within 0-2 (fraction of the face size), not {margin!r}")
    if not isinstance(fps, int) or not 1 <= fps <= 60:
        raise ConfigError(f"fps must be an integer 1-60, not {fps!r}")
    frames_per_face = frames_of(seconds_per_face, "seconds_per_face")
    if frames_per_face < 1:
        raise ConfigError("seconds_per_face must be at least 0.1")
    video_per_face = seconds_per_face * fps
    if abs(video_per_face - round(video_per_face)) > 1e-6:
        raise ConfigError(f"seconds_per_face × fps must be a whole number of video frames, not {video_per_face}")
    return frames_per_face, int(round(video_per_face))


def _write_ferplus_session(
    folder: Path,
    idx: range,
    *,
    kept: np.ndarray,
    images: np.ndarray,
    names: np.ndarray,
    va: np.ndarray,
    counts: np.ndarray,
    columns: Sequence[str],
    rendering: FaceRendering,
    frames_per_face: int,
    video_per_face: int,
    fps: int,
) -> int:
    """Write one FER+ session showing the kept faces ``idx``; return its number of frames.

    ``kept`` maps kept-face positions to rows of ``images``/``names``; ``va``
    and ``counts`` are per kept face.
    """
    excluded = np.array([c.strip().lower() in EXCLUDED_VOTES for c in columns])
    frames = (frame for j in idx for frame in [rendering.render(images[kept[j]])] * video_per_face)
    write_video(folder / "video.mp4", frames, fps=fps, width=rendering.canvas, height=rendering.canvas)
    labels = np.repeat(va[list(idx)][:, ::-1], frames_per_face, axis=0)  # arousal, valence
    write_labels(folder / "labels.csv", labels, ["arousal", "valence"])
    segments = []
    for n_in, j in enumerate(idx):
        row = counts[j].astype(np.float64)
        row[excluded] = -1  # majority among emotion categories only
        segments.append(
            [round(n_in * frames_per_face / LABEL_RATE, 4),
             round((n_in + 1) * frames_per_face / LABEL_RATE, 4),
             str(names[kept[j]]), columns[int(np.argmax(row))],
             float(va[j, 0]), float(va[j, 1]), *(int(c) for c in counts[j])]
        )
    write_csv(
        folder / "segments.csv",
        ["start", "end", "source", "majority", "proxy_valence", "proxy_arousal", *columns],
        segments,
    )
    return len(labels)


def adapt_ferplus(
    src: Path,
    out: Path,
    *,
    faces_per_session: int = 30,
    seconds_per_face: float = 1.0,
    upscale: int = 3,
    margin: float = 0.25,
    fps: int = 25,
    limit: int | None = None,
    split: Literal["train", "valid", "both"] = "train",
    overwrite: bool = False,
) -> AdaptReport:
    """Convert FER+ (``src`` holds ferplus_train.npz / ferplus_valid.npz) into silent face videos.

    Faces whose majority vote is ``unknown`` or ``NF`` (ties included) are
    dropped; the rest, in file order, are cut into sessions of
    ``faces_per_session`` faces (the last of a split may be shorter). Each
    session has ``video.mp4`` (H.264 where available, else MPEG-4 Part 2;
    ``fps`` frames/s, no audio) showing each face for ``seconds_per_face``
    seconds, upscaled ``upscale`` times and centred on a grey canvas with
    ``margin`` × face size on each side (:class:`FaceRendering`);
    ``labels.csv`` with arousal, valence = the vote-weighted category PROXY of
    the face (:func:`mmaffect.data.proxy.votes_to_va`), constant while it is
    shown; ``segments.csv`` with the face's name, majority category and votes.
    No transcript or turns. Partitions: train → ``train``, valid → ``devel``;
    sessions ``ferplus_<partition>_<nnnn>``. ``limit`` caps the number of
    sessions written; ``report.skipped`` still lists every dropped face of the
    files read. The default 25 fps keeps every 10 Hz frame's centre closest
    to a video frame of the right face. Measure how many rendered faces a Haar
    cascade finds with :func:`measure_face_detection`.
    """
    started = time.perf_counter()
    src, out = Path(src), Path(out)
    check_limit(limit)
    frames_per_face, video_per_face = _check_options(
        split=split, faces_per_session=faces_per_session, upscale=upscale, margin=margin, fps=fps,
        seconds_per_face=seconds_per_face,
    )
    rendering = FaceRendering(upscale=upscale, margin=margin)
    report = AdaptReport(corpus="ferplus", out=out)
    files = ["train", "valid"] if split == "both" else [split]
    loaded = {f: load_ferplus(src / f"ferplus_{f}.npz") for f in files}
    prepare_output(out, overwrite=overwrite)
    partitions: list[tuple[str, str]] = []
    for f in files:
        images, votes, columns, names = loaded[f]
        keep, reasons = ferplus_keep(votes, columns)
        for i in np.flatnonzero(~keep):
            report.skipped.append((f"{f}:{names[i]}", str(reasons[i])))
        kept = np.flatnonzero(keep)
        va = votes_matrix_to_va(votes[kept], columns)
        counts = votes[kept]
        partition = FERPLUS_PARTITIONS[f]
        for k, first in enumerate(range(0, len(kept), faces_per_session)):
            if limit is not None and len(partitions) >= limit:
                break
            idx = range(first, min(first + faces_per_session, len(kept)))
            name = f"ferplus_{partition}_{k:04d}"
            report.frames += _write_ferplus_session(
                out / name, idx, kept=kept, images=images, names=names, va=va, counts=counts, columns=columns,
                rendering=rendering, frames_per_face=frames_per_face, video_per_face=video_per_face, fps=fps,
            )
            report.items += len(idx)
            partitions.append((name, partition))
    return finish_corpus(
        report,
        partitions=partitions,
        src=src,
        params={
            "split": split,
            "faces_per_session": faces_per_session,
            "seconds_per_face": seconds_per_face,
            "upscale": upscale,
            "margin": margin,
            "fps": fps,
            "canvas": rendering.canvas,
            "codec": video_codec(),
            "limit": limit,
        },
        label_note="arousal/valence: vote-weighted category PROXY (not dimensional ratings), unknown/NF excluded",
        started=started,
    )


def measure_face_detection(
    root: Path,
    *,
    max_sessions: int | None = None,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
) -> tuple[int, int]:
    """(detected, faces): how many shown faces OpenCV's frontal Haar cascade finds in converted FER+ videos.

    For every face of every session (per ``segments.csv``), the decoded video
    frame nearest to the middle of its span is searched with
    ``haarcascade_frontalface_default.xml``; a face counts as detected when the
    cascade returns at least one box. This measures the rendering, decoded
    from the mp4 as a reader sees it.
    """
    import av
    import cv2

    root = Path(root)
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    if cascade.empty():
        raise DataError("cannot load haarcascade_frontalface_default.xml", path=cv2.data.haarcascades)
    sessions = [row["session"] for _, row in read_csv_rows(root / "splits.csv", ["session", "partition"])]
    detected = faces = 0
    for name in sessions[:max_sessions]:
        folder = root / name
        mids = [
            (float(row["start"]) + float(row["end"])) / 2
            for _, row in read_csv_rows(folder / "segments.csv", ["start", "end"])
        ]
        with av.open(str(folder / "video.mp4")) as container:
            stream = container.streams.video[0]
            grey = [(float(fr.time), fr.to_ndarray(format="gray")) for fr in container.decode(stream)]
        times = np.array([t for t, _ in grey])
        for mid in mids:
            image = grey[int(np.argmin(np.abs(times - mid)))][1]
            boxes = cascade.detectMultiScale(image, scaleFactor=scale_factor, minNeighbors=min_neighbors)
            detected += int(len(boxes) > 0)
            faces += 1
    return detected, faces


__all__ = ["FERPLUS_PARTITIONS", "FaceRendering", "adapt_ferplus", "measure_face_detection"]
