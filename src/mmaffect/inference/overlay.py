"""A copy of a video with the predicted arousal and valence traces drawn under it.

The video is decoded and re-encoded frame by frame (H.264 when FFmpeg has
libx264, else MPEG-4 Part 2) with a panel below the picture: the whole
arousal and valence traces in [-1, 1], a cursor at the current time and the
current values. The audio track, when there is one, is copied packet by
packet without re-encoding. Memory is flat in the video's length; the file
is written under a temporary name and renamed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import pandas as pd

from mmaffect.errors import DataError
from mmaffect.preprocess.video import probe_video, quarter_turns, upright
from mmaffect.utils.io import atomic_path

__all__ = ["write_overlay"]

# Frames are drawn in RGB.
_COLOURS = {"arousal": (230, 90, 40), "valence": (40, 110, 230)}


def _panel_background(frame: pd.DataFrame, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The static part of the panel (axes and both traces) and the x pixel of every frame."""
    panel = np.full((height, width, 3), 255, np.uint8)
    t = frame["time"].to_numpy(dtype=np.float64)
    span = max(float(t[-1] + 0.1 - t[0]), 1e-6) if len(t) else 1.0
    xs = np.round((t - (t[0] if len(t) else 0.0)) / span * (width - 1)).astype(np.int32)

    def y(v: np.ndarray) -> np.ndarray:
        return np.round((1.0 - (np.clip(v, -1, 1) + 1) / 2) * (height - 12) + 6).astype(np.int32)

    mid = int(y(np.zeros(1))[0])
    cv2.line(panel, (0, mid), (width - 1, mid), (200, 200, 200), 1)
    for name, colour in _COLOURS.items():
        v = frame[name].to_numpy(dtype=np.float64)
        finite = np.flatnonzero(np.isfinite(v))  # frames without any input are empty: the trace has gaps there
        runs = np.split(finite, np.flatnonzero(np.diff(finite) > 1) + 1)  # consecutive frames with a value
        pieces = [np.stack([xs[r], y(v[r])], axis=1).reshape(-1, 1, 2) for r in runs if len(r)]
        if pieces:
            cv2.polylines(panel, pieces, False, colour, 1, cv2.LINE_AA)
    return panel, xs


@dataclass
class _Canvas:
    """The output picture: a video frame (``h`` × ``w``) over the traces panel (``ph`` rows), both padded
    to even sizes (4:2:0 needs them), with a cursor and the current values drawn on the panel."""

    panel: np.ndarray  # (ph, w2, 3) axes and both traces, from _panel_background
    xs: np.ndarray  # x pixel of every prediction frame
    times: np.ndarray
    values: np.ndarray  # (n, 2) arousal, valence
    h: int
    w: int

    @classmethod
    def for_video(cls, frame: pd.DataFrame, w: int, h: int, panel_height: int | None) -> _Canvas:
        """The canvas of a ``w`` × ``h`` video; the panel is ``panel_height`` rows (default a quarter of ``h``,
        at least 48)."""
        ph = panel_height or max(48, h // 4)
        ph += ph % 2  # 4:2:0 needs even sizes
        panel, xs = _panel_background(frame, w + w % 2, ph)
        return cls(panel=panel, xs=xs, times=frame["time"].to_numpy(dtype=np.float64),
                   values=frame[["arousal", "valence"]].to_numpy(dtype=np.float64), h=h, w=w)

    @property
    def width(self) -> int:
        """Width of the output picture (even)."""
        return self.panel.shape[1]

    @property
    def height(self) -> int:
        """Height of the output picture: video and panel (even)."""
        return self.h + (self.h % 2) + self.panel.shape[0]

    def draw(self, img: np.ndarray, t: float) -> np.ndarray:
        """The (height, width, 3) RGB output picture of the video frame ``img`` shown at time ``t``."""
        canvas = np.full((self.height, self.width, 3), 255, np.uint8)
        canvas[:self.h, :self.w] = img
        times = self.times
        k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, max(len(times) - 1, 0)))
        p = canvas[self.h + (self.h % 2):]
        p[:] = self.panel
        if len(times):
            cv2.line(p, (int(self.xs[k]), 0), (int(self.xs[k]), p.shape[0] - 1), (0, 0, 0), 1)
            for j, (name, colour) in enumerate(_COLOURS.items()):
                value = self.values[k, j]
                cv2.putText(p, f"{name} {value:+.2f}" if np.isfinite(value) else f"{name} -", (4 + 110 * j, 12),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
        return canvas


def _open_video(video: Path) -> av.container.InputContainer:
    """``video`` opened for reading; DataError when it cannot be."""
    try:
        return av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video: {exc}", path=video) from exc


def _add_video_stream(out: av.container.OutputContainer, codec: str | None, vin: av.video.stream.VideoStream,
                      canvas: _Canvas) -> av.video.stream.VideoStream:
    """The output video stream: ``codec``, else H.264 when FFmpeg has libx264, else MPEG-4 Part 2 at
    2 Mbit/s; the input's frame rate (25 when unknown), the canvas size, yuv420p."""
    name = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
    vout = out.add_stream(name, rate=vin.average_rate or vin.guessed_rate or 25)
    vout.width, vout.height, vout.pix_fmt = canvas.width, canvas.height, "yuv420p"
    if name == "mpeg4":
        vout.bit_rate = 2_000_000
    return vout


def _transcode(src: av.container.InputContainer, out: av.container.OutputContainer, canvas: _Canvas, *,
               vin: av.video.stream.VideoStream, vout: av.video.stream.VideoStream, ain: Any, aout: Any) -> None:
    """Demux ``src``: copy the audio packets (``ain`` → ``aout``) as they are and encode every video frame
    drawn on ``canvas`` into ``vout``. FFmpeg's errors propagate."""
    streams = [vin] + ([ain] if ain is not None else [])
    n_out = 0
    for packet in src.demux(*streams):
        if packet.stream is ain:
            if packet.dts is not None:  # flush packets carry no data
                packet.stream = aout
                out.mux(packet)
            continue
        for vf in packet.decode():
            t = float(vf.time) if vf.time is not None else 0.0
            image = upright(vf.to_ndarray(format="rgb24"), quarter_turns(vf))  # as a player shows it
            new = av.VideoFrame.from_ndarray(canvas.draw(image, t), format="rgb24")
            new.pts, n_out = n_out, n_out + 1
            for pk in vout.encode(new):
                out.mux(pk)


def write_overlay(video: str | Path, frame: pd.DataFrame, dest: str | Path, *, panel_height: int | None = None,
                  codec: str | None = None) -> Path:
    """Write ``dest``: ``video`` with ``frame``'s traces (columns time, arousal, valence) drawn under it.

    Raises:
        DataError: the video cannot be opened or decoded.
    """
    video, dest = Path(video), Path(dest)
    src = _open_video(video)
    with src, atomic_path(dest) as tmp:
        if not src.streams.video:
            raise DataError("file has no video stream", path=video)
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        shown = probe_video(video)  # the size as displayed (a phone's portrait video is turned upright)
        canvas = _Canvas.for_video(frame, shown.width, shown.height, panel_height)
        with av.open(str(tmp), mode="w") as out:
            vout = _add_video_stream(out, codec, vin, canvas)
            aout = out.add_stream_from_template(ain) if ain is not None else None
            try:
                _transcode(src, out, canvas, vin=vin, vout=vout, ain=ain, aout=aout)
            except av.FFmpegError as exc:
                raise DataError(f"video stream is corrupt: {exc}", path=video) from exc
            for pk in vout.encode(None):
                out.mux(pk)
    return dest
