"""One streaming preprocessor: a recording's 10 Hz streams, chunk by chunk, for ``prepare`` and ``predict``.

``mmaffect prepare`` (:mod:`mmaffect.preprocess.pipeline`) and ``mmaffect
predict`` (:mod:`mmaffect.inference.predictor`) both turn a recording into
the arrays of docs/architecture.md section 2 through this module, so the two
cannot drift apart:

* :class:`AudioFrames` — the audio stream from a decoded float wav
  (:func:`~mmaffect.preprocess.audio.decode_audio_to_file`), in two passes
  over the file: the recording's loudness-normalisation gain and its speech
  activity first, then the frames of any range ``start:stop`` on demand
  (memory flat in the recording's length). ``prepare`` reads all frames,
  ``predict`` a chunk at a time; the arrays are the same.
* :func:`face_options` — the face tracker's settings from the ``faces``
  section of the configuration (one reading of it for both commands), and
  :func:`face_chunks` — the face stream a chunk at a time from
  :func:`~mmaffect.preprocess.faces.iter_faces`.

The constants live where their format is defined: the 10 Hz grid in
:mod:`mmaffect.data.session` (``LABEL_RATE``), the int16 scale in
:mod:`mmaffect.data.pcm`, the crop size, rate and framing in the
configuration (``configs/prepare.yaml``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmaffect.data.pcm import to_pcm16
from mmaffect.data.session import Turn
from mmaffect.preprocess.audio import check_frames_covered

__all__ = ["AudioFrames", "face_options", "face_chunks"]

# Samples per read of the decoded wav in the analysis passes (loudness, Silero VAD).
_BLOCK = 1 << 18


def face_options(faces: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of :func:`~mmaffect.preprocess.faces.iter_faces` from a ``faces`` section.

    >>> face_options({"size": 48, "detect_width": 320, "min_face": 0.1, "margin": 0.25,
    ...               "select": "largest", "grey": False, "enabled": True})["size"]
    48
    """
    return {"size": int(faces["size"]), "detect_width": int(faces["detect_width"]),
            "min_face": float(faces["min_face"]), "margin": float(faces["margin"]),
            "select": str(faces["select"]), "grey": bool(faces.get("grey", False)),
            "absent_scan_every": float(faces.get("absent_scan_every", 0.0))}


def face_chunks(it: Iterator, n_frames: int, chunk: int, size: int) -> Iterator[dict[str, np.ndarray]]:
    """The face stream (``faces``, ``face_mask``, ``face_boxes``), ``chunk`` frames at a time, from a face
    iterator of :func:`~mmaffect.preprocess.faces.iter_faces`; masked (zeros, NaN box) where no face."""
    for start in range(0, n_frames, chunk):
        n = min(chunk, n_frames - start)
        crops = np.zeros((n, size, size, 3), np.uint8)
        mask = np.zeros(n, bool)
        boxes = np.full((n, 4), np.nan, np.float32)
        for i, crop, box in itertools.islice(it, n):
            if crop is not None:
                crops[i - start], mask[i - start], boxes[i - start] = crop, True, box
        yield {"faces": crops, "face_mask": mask, "face_boxes": boxes}


class AudioFrames:
    """The audio stream of one recording, read on demand from its decoded float wav.

    ``times``: the frame grid. ``audio``: the ``audio`` section of the
    configuration (rate, frame length, loudness target, speech-activity
    method, turn rounding, ``max_short``). ``vad_db`` (``predict --vad-db``)
    replaces the configured speech detector by the energy rule at that level.
    ``source``: the recording the wav was decoded from (named in errors).

    Raises:
        DataError: the recording ends more than ``audio.max_short`` seconds
            before the last frame ends ("audio shorter than the labels").
    """

    def __init__(self, wav: str | Path, *, times: np.ndarray, audio: Mapping[str, Any], vad_db: float | None = None,
                 source: str | Path | None = None) -> None:
        import soundfile as sf

        from mmaffect.preprocess.loudness import normalisation_gain_db

        self.wav = Path(wav)
        self.source = source if source is not None else self.wav
        self.times = np.asarray(times, dtype=np.float64)
        self.sr = int(audio["sample_rate"])
        self.fs = int(audio["frame_samples"])
        self.rounding = float(audio["turn_rounding"])
        self.method = "energy" if vad_db is not None else str(audio["vad"])
        self.vad_db = float(vad_db if vad_db is not None else audio["vad_db"])
        self.file = sf.SoundFile(str(self.wav))
        self.n = self.file.frames
        check_frames_covered(self.times, self.n, sample_rate=self.sr, frame_samples=self.fs,
                             max_short=float(audio.get("max_short", 0.1)), path=self.source)
        self.gain_db, lufs = normalisation_gain_db(self._blocks(0.0), sample_rate=self.sr, target=audio["loudness"])
        self.speech: np.ndarray | None = None
        if self.method == "silero":
            from mmaffect.preprocess.vad import speech_frames

            self.speech = speech_frames("silero", times=self.times, blocks=self._blocks(self.gain_db),
                                        sample_rate=self.sr, threshold=float(audio["vad_threshold"]))
        self.counts = {"n_speech": 0, "n_not_recorded": 0, "n_no_speech": 0, "n_target": 0, "n_read": 0}
        self.report: dict[str, Any] = {"vad": self.method, "gain_db": round(float(self.gain_db), 2),
                                       "loudness_lufs": round(lufs, 2) if math.isfinite(lufs) else None}

    def __enter__(self) -> AudioFrames:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.file.close()

    def _blocks(self, gain_db: float) -> Iterator[np.ndarray]:
        import soundfile as sf

        from mmaffect.preprocess.audio import apply_gain

        for x in sf.blocks(str(self.wav), blocksize=_BLOCK, dtype="float32", always_2d=False):
            yield apply_gain(x, gain_db)

    def frames(self, start: int, stop: int, turns: Sequence[Turn] | None) -> dict[str, np.ndarray]:
        """The cached-stream arrays of frames ``start:stop``: ``audio`` (int16), ``audio_mask`` (recorded
        and speech heard), ``audio_target`` (the target's turns when known, else the speech heard) and
        ``audio_speech``."""
        from mmaffect.preprocess.audio import apply_gain, target_frames
        from mmaffect.preprocess.vad import speech_frames

        times = self.times[start:stop]
        if len(times) == 0:
            empty = np.zeros(0, bool)
            return {"audio": np.zeros((0, self.fs), np.int16), "audio_mask": empty, "audio_target": empty,
                    "audio_speech": empty}
        starts = np.round(times * self.sr).astype(np.int64)
        lo, hi = int(starts.min()), int(starts.max()) + self.fs
        self.file.seek(min(lo, self.n))
        seg = self.file.read(max(0, min(hi, self.n) - lo), dtype="float32", always_2d=False)
        valid = starts + self.fs <= self.n
        if len(seg) < hi - lo:  # frames past the end: the recorded part kept, zero-padded, masked
            seg = np.concatenate([seg, np.zeros(hi - lo - len(seg), np.float32)])
        frames = apply_gain(seg, self.gain_db)[(starts - lo)[:, None] + np.arange(self.fs)]
        if self.speech is not None:
            speech = self.speech[start:stop]
        else:
            speech = speech_frames(self.method, times=times, frames=frames, sample_rate=self.sr, vad_db=self.vad_db)
        target = target_frames(times, turns, rounding=self.rounding) if turns is not None else speech.copy()
        c = self.counts
        c["n_speech"] += int(speech.sum())
        c["n_not_recorded"] += int((~valid).sum())
        c["n_no_speech"] += int((valid & ~speech).sum())
        c["n_target"] += int(target.sum())
        c["n_read"] += len(times)
        return {"audio": to_pcm16(frames), "audio_mask": valid & speech, "audio_target": target,
                "audio_speech": speech}

    def reference(self, n: int, turns: Sequence[Turn] | None, *, chunk: int = 6000) -> tuple[np.ndarray, int]:
        """(k, frame) int16: k <= ``n`` evenly spaced frames of the target's speech over the whole
        recording (``audio_mask`` and ``audio_target``; ``mmaffect.data.dataset.reference_indices``), the
        yardstick of a model with an audio reference, and the number of such frames in the recording.
        Reads the recording once more; the frame counts of :meth:`summary` are left as they were."""
        from mmaffect.data.dataset import reference_indices

        counts = dict(self.counts)
        try:
            heard = [(p["audio_mask"] & p["audio_target"]) for p in
                     (self.frames(s, min(len(self.times), s + chunk), turns) for s in range(0, len(self.times), chunk))]
            speech = np.flatnonzero(np.concatenate(heard)) if heard else np.zeros(0, np.int64)
            idx = reference_indices(speech, n)
            # the chosen frames alone, read again (an hour of frames would be 160 MB)
            frames = [self.frames(int(i), int(i) + 1, turns)["audio"] for i in idx]
        finally:
            self.counts = counts
        return (np.concatenate(frames) if frames else np.zeros((0, self.fs), np.int16)), len(speech)

    def all(self, turns: Sequence[Turn] | None, *, chunk: int = 6000) -> dict[str, np.ndarray]:
        """Every frame of the grid (read ``chunk`` frames at a time), as ``prepare`` caches them."""
        parts = [self.frames(s, min(len(self.times), s + chunk), turns) for s in range(0, len(self.times), chunk)]
        if not parts:
            return self.frames(0, 0, turns)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def summary(self, *, target_turns_known: bool) -> dict[str, Any]:
        """The stream's report after the frames were read: what ``prepare`` and ``predict`` record."""
        c = self.counts
        n = max(c["n_read"], 1)
        return {
            "n_audio_masked": c["n_not_recorded"] + c["n_no_speech"],
            "n_not_recorded": c["n_not_recorded"],
            "n_no_speech": c["n_no_speech"],
            "n_speech_frames": c["n_speech"],
            "speech_fraction": round(c["n_speech"] / n, 4) if c["n_read"] else 0.0,
            **self.report,
            "n_target_frames": c["n_target"],
            "target_turns_known": target_turns_known,
        }
