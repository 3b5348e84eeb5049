"""A copy of a video with the predicted arousal and valence traces drawn under it.

The video is decoded and re-encoded frame by frame (H.264 when FFmpeg has
libx264, else MPEG-4 Part 2) with a panel below the picture: the whole
arousal and valence traces in [-1, 1], a cursor at the current time and the
current values. The audio track, when there is one, is copied packet by
packet without re-encoding. Memory is flat in the video's length; the file
is written under a temporary name and renamed.
"""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd

from mmaffect.errors import DataError
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
        pts = np.stack([xs, y(frame[name].to_numpy(dtype=np.float64))], axis=1).reshape(-1, 1, 2)
        cv2.polylines(panel, [pts], False, colour, 1, cv2.LINE_AA)
    return panel, xs


def write_overlay(video: str | Path, frame: pd.DataFrame, dest: str | Path, *, panel_height: int | None = None,
                  codec: str | None = None) -> Path:
    """Write ``dest``: ``video`` with ``frame``'s traces (columns time, arousal, valence) drawn under it.

    Raises:
        DataError: the video cannot be opened or decoded.
    """
    video, dest = Path(video), Path(dest)
    try:
        src = av.open(str(video))
    except (av.FFmpegError, OSError) as exc:
        raise DataError(f"cannot open video: {exc}", path=video) from exc
    with src, atomic_path(dest) as tmp:
        if not src.streams.video:
            raise DataError("file has no video stream", path=video)
        vin = src.streams.video[0]
        ain = src.streams.audio[0] if src.streams.audio else None
        w, h = vin.codec_context.width, vin.codec_context.height
        ph = panel_height or max(48, h // 4)
        ph += ph % 2  # 4:2:0 needs even sizes
        w2 = w + w % 2
        panel, xs = _panel_background(frame, w2, ph)
        rate = vin.average_rate or vin.guessed_rate or 25
        times = frame["time"].to_numpy(dtype=np.float64)
        values = frame[["arousal", "valence"]].to_numpy(dtype=np.float64)
        with av.open(str(tmp), mode="w") as out:
            name = codec or ("libx264" if "libx264" in av.codecs_available else "mpeg4")
            vout = out.add_stream(name, rate=rate)
            vout.width, vout.height, vout.pix_fmt = w2, h + (h % 2) + ph, "yuv420p"
            if name == "mpeg4":
                vout.bit_rate = 2_000_000
            aout = out.add_stream_from_template(ain) if ain is not None else None
            streams = [vin] + ([ain] if ain is not None else [])
            n_out = 0
            try:
                for packet in src.demux(*streams):
                    if packet.stream is ain:
                        if packet.dts is None:
                            continue
                        packet.stream = aout
                        out.mux(packet)
                        continue
                    for vf in packet.decode():
                        t = float(vf.time) if vf.time is not None else 0.0
                        img = vf.to_ndarray(format="rgb24")
                        canvas = np.full((h + (h % 2) + ph, w2, 3), 255, np.uint8)
                        canvas[:h, :w] = img
                        k = int(np.clip(np.searchsorted(times, t, side="right") - 1, 0, max(len(times) - 1, 0)))
                        p = canvas[h + (h % 2):]
                        p[:] = panel
                        if len(times):
                            cv2.line(p, (int(xs[k]), 0), (int(xs[k]), ph - 1), (0, 0, 0), 1)
                            for j, (name, colour) in enumerate(_COLOURS.items()):
                                cv2.putText(p, f"{name} {values[k, j]:+.2f}", (4 + 110 * j, 12),
                                            cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
                        new = av.VideoFrame.from_ndarray(canvas, format="rgb24")
                        new.pts, n_out = n_out, n_out + 1
                        for pk in vout.encode(new):
                            out.mux(pk)
            except av.FFmpegError as exc:
                raise DataError(f"video stream is corrupt: {exc}", path=video) from exc
            for pk in vout.encode(None):
                out.mux(pk)
    return dest
