"""The in-memory session record that every reader produces.

A *session* is one recording of a target speaker: audio, face video,
transcript turns, the target's speaking turns and (for training) 10 Hz
arousal/valence labels. Readers (SEWA, generic layout, synthetic corpus,
adapters) all return :class:`Session` objects; preprocessing reads nothing
else, so a new corpus needs only a new reader.

Time convention (used everywhere in mmaffect)
---------------------------------------------
The label rate is 10 Hz. Frame ``i`` has the time stamp ``times[i]`` (seconds)
and covers the interval ``[times[i], times[i] + 0.1)``: its audio frame is the
2,205 samples (at 22,050 Hz) starting at ``times[i]`` and its face crop comes
from the video frame whose time stamp is nearest to the frame's centre
``times[i] + 0.05``. With labels, ``times`` are the label time stamps; without
labels (prediction) they are ``0.0, 0.1, ...`` up to the media's duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LABEL_RATE = 10.0
"""Frames (label steps) per second."""

DIMENSIONS = ("arousal", "valence")
"""The affect dimensions that models are trained on, in this order."""


@dataclass(frozen=True)
class Turn:
    """A time span of speech; ``text`` is empty for speaker turns without words."""

    start: float
    end: float
    text: str = ""

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass
class Labels:
    """Time-continuous ratings on the 10 Hz frame grid.

    ``values[:, k]`` is the dimension ``names[k]``; ``names`` always holds
    ``arousal`` and ``valence`` and may hold more (e.g. ``liking``).
    """

    times: np.ndarray  # (T,) float64 seconds, strictly increasing, step 1/LABEL_RATE
    values: np.ndarray  # (T, K) float32
    names: tuple[str, ...]
    source: Path | None = None

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim != 2 or self.values.shape != (len(self.times), len(self.names)):
            raise ValueError(
                f"labels of shape {self.values.shape} do not match {len(self.times)} times "
                f"and names {self.names}"
            )

    def __len__(self) -> int:
        return len(self.times)

    def dimension(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def affect(self) -> np.ndarray:
        """(T, 2) float32: arousal, valence."""
        return np.stack([self.dimension(n) for n in DIMENSIONS], axis=1)


@dataclass
class Session:
    """One recording of one target speaker.

    ``audio`` is a wav/flac file or a video file whose audio track is used.
    ``transcript`` is ``None`` when no transcript exists (the text branch is
    then masked), and ``[]`` when one exists but holds no words.
    ``target_turns`` is ``None`` when unknown: the target is taken to speak
    throughout.
    """

    name: str
    audio: Path | None = None
    video: Path | None = None
    transcript: list[Turn] | None = None
    target_turns: list[Turn] | None = None
    labels: Labels | None = None
    partition: str | None = None
    meta: dict = field(default_factory=dict)

    def inputs(self) -> dict[str, Path]:
        """The media/annotation files this session was read from (for cache keys)."""
        out: dict[str, Path] = {}
        if self.audio is not None:
            out["audio"] = Path(self.audio)
        if self.video is not None:
            out["video"] = Path(self.video)
        for key in ("transcript_path", "turns_path", "labels_path"):
            if key in self.meta and self.meta[key] is not None:
                out[key.removesuffix("_path")] = Path(self.meta[key])
        return out


TURN_END_TOLERANCE = 0.5
"""Seconds a transcript or turn may run past the end of its recording (annotators round up)."""


def check_turns_within(turns: list[Turn], duration: float, *, path: Path | None, what: str,
                       tolerance: float = TURN_END_TOLERANCE) -> None:
    """Refuse turns that end after the recording: the one rule of ``prepare`` and ``predict``.

    A turn ending more than ``tolerance`` seconds after the recording's end usually means the
    transcript (or turns file) of another recording.

    >>> check_turns_within([Turn(0.0, 2.4, "hi")], 2.0, path=None, what="transcript")
    >>> check_turns_within([Turn(0.0, 3.0, "hi")], 2.0, path=Path("t.csv"), what="transcript")
    Traceback (most recent call last):
    ...
    mmaffect.errors.DataError: t.csv: at 3.00 s: transcript turn 1 (0.00–3.00 s) ends after the recording (2.00 s): is it the transcript of another recording?
    """
    from mmaffect.errors import DataError

    for k, turn in enumerate(turns):
        if turn.end > duration + tolerance:
            raise DataError(
                f"{what} turn {k + 1} ({turn.start:.2f}–{turn.end:.2f} s) ends after the recording "
                f"({duration:.2f} s): is it the transcript of another recording?",
                path=path, time=turn.end,
            )


def frame_times(n_frames: int, *, start: float = 0.0, rate: float = LABEL_RATE) -> np.ndarray:
    """Regular frame grid ``start + i / rate``.

    >>> frame_times(3).tolist()
    [0.0, 0.1, 0.2]
    """
    return start + np.arange(n_frames, dtype=np.float64) / rate
