"""Video probing and streaming frame access on the 10 Hz frame grid.

Frames are decoded once, sequentially, with PyAV (FFmpeg) and threaded
decoding. Every decoded frame is placed at its *own* presentation time
(``pts * time_base``), so variable-frame-rate recordings (the SEWA ``.avi``
files run at 20–30 fps) are handled exactly: for each requested frame time
``t`` the decoded frame whose time stamp is nearest to the frame centre
``t + offset`` is returned (see :mod:`mmaffect.data.session` for the time
convention). Only frames that are returned are converted to RGB, and only one
decoded frame is held at a time, so memory does not grow with video length.

Requests that fall outside the decoded frames are *masked* (``None``), never
filled with an invented image: a request more than half a frame interval
before the first frame, or more than half a frame interval after the end of
the last frame (its time stamp plus one frame interval).

Frames come *upright*, as a player shows them: a phone filming in portrait
stores landscape sensor frames and a display matrix saying how far to turn
them (``VideoFrame.rotation``, in quarter turns); :func:`upright` applies it,
so faces are found in phone videos and the sizes of :class:`VideoInfo` are
the displayed ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mmaffect.errors import DataError

__all__ = ["VideoInfo", "frames_at", "probe_video", "quarter_turns", "upright"]


@dataclass(frozen=True)
class VideoInfo:
    """What a video file holds, from its container metadata and first frame.

    ``width`` and ``height`` are the frame size as displayed (after the
    ``rotation`` of the display matrix, in degrees counter-clockwise: 0, 90,
    180 or 270). ``duration`` (seconds) and ``n_frames`` come from the
    container and are ``None`` when the container does not record them;
    ``avg_fps`` is the stream's average frame rate (``None`` when unknown).
    """

    width: int
    height: int
    duration: float | None
    avg_fps: float | None
    n_frames: int | None
    has_audio: bool
    rotation: int = 0


def quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns (0-3) that show ``frame`` upright: its display matrix's rotation
    rounded to a multiple of 90 degrees (phones write 0, 90, 180 or 270; 0 without a matrix)."""
    try:
        degrees = float(frame.rotation or 0)
    except (AttributeError, ValueError, TypeError):  # no side data, or a PyAV without the property
        return 0
    return int(round(degrees / 90.0)) % 4


def upright(image: np.ndarray, turns: int, pixel_format: str = "rgb24") -> np.ndarray:
    """``image`` (a frame as ``to_ndarray(format=pixel_format)`` gives it) turned ``turns`` quarter turns
    counter-clockwise. ``"yuv420p"`` (I420: the luma plane over the two chroma planes) is turned plane
    by plane and packed again.

    >>> upright(np.arange(6).reshape(2, 3), 1).tolist()
    [[2, 5], [1, 4], [0, 3]]
    """
    turns %= 4
    if turns == 0:
        return image
    if pixel_format != "yuv420p":
        return np.ascontiguousarray(np.rot90(image, turns))
    h, w = image.shape[0] * 2 // 3, image.shape[1]
    chroma = image[h:].reshape(-1)
    planes = [image[:h], chroma[: h * w // 4].reshape(h // 2, w // 2), chroma[h * w // 4:].reshape(h // 2, w // 2)]
    turned = [np.rot90(p, turns) for p in planes]
    out_w = turned[0].shape[1]
    return np.concatenate([p.reshape(-1) for p in turned]).reshape(-1, out_w)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError("video file not found", path=path)
    if not path.is_file():
        raise DataError("video path is not a file", path=path)
    if path.stat().st_size == 0:
        raise DataError("video file is empty (0 bytes)", path=path)


def _open(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot open video (corrupt or unsupported format): {exc}", path=path) from exc


def _video_stream(container: av.container.InputContainer, path: Path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise DataError("file has no video stream", path=path)
    return container.streams.video[0]


def _frame_time(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> float | None:
    """Presentation time of a decoded frame in seconds (``None`` if unknown)."""
    pts = frame.pts
    if pts is None:
        return None
    tb = frame.time_base if frame.time_base is not None else stream.time_base
    if tb is None:
        return None
    return float(pts * tb)


def probe_video(path: str | Path) -> VideoInfo:
    """Read a video's size, duration and frame rate; decode its first frame.

    Decoding the first frame makes sure the file is a usable video rather
    than a container with an undecodable stream.

    Raises:
        DataError: the file is missing, empty, corrupt, has no video stream or
            no decodable video frame.
    """
    path = Path(path)
    _check_file(path)
    container = _open(path)
    try:
        stream = _video_stream(container, path)
        has_audio = bool(container.streams.audio)
        rate = stream.average_rate or stream.guessed_rate
        avg_fps = float(rate) if rate else None
        duration: float | None = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / av.time_base
        n_frames = int(stream.frames) if stream.frames else None
        try:
            first = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise DataError(f"cannot decode video stream: {exc}", path=path) from exc
        if first is None:
            raise DataError("video stream holds no decodable frames", path=path)
        turns = quarter_turns(first)
        width, height = (first.height, first.width) if turns % 2 else (first.width, first.height)
    finally:
        container.close()
    return VideoInfo(
        width=int(width),
        height=int(height),
        duration=duration,
        avg_fps=avg_fps,
        n_frames=n_frames,
        has_audio=has_audio,
        rotation=90 * turns,
    )


def frames_at(
    path: str | Path,
    times: Sequence[float] | np.ndarray,
    *,
    offset: float = 0.05,
    pixel_format: str = "rgb24",
    threads: int = 0,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Yield ``(i, image)`` for every requested time ``times[i]``.

    ``image`` is the decoded frame whose presentation time is nearest to
    ``times[i] + offset``, upright (:func:`upright`), as an (H, W, 3) uint8 RGB array (``pixel_format``
    is any FFmpeg format PyAV converts to numpy: ``'gray'`` gives (H, W),
    ``'yuv420p'`` the (H·3/2, W) I420 planes), or ``None`` when the request lies outside the
    video (more than half a frame interval before its first frame or after
    its end). Ties go to the earlier frame. Results are yielded in time order
    (for sorted ``times``: ``i = 0, 1, 2, ...``); several requests may share
    one decoded frame (low frame rates), in which case they receive the same
    array object — copy it before modifying it in place.

    The video is decoded once from start to end with threaded decoding and
    only the selected frames are converted, so memory stays flat.
    ``threads=0`` lets FFmpeg choose the thread count.

    Raises:
        DataError: the file is missing, empty, corrupt (also mid-stream:
            the message gives the time of the last good frame), has no video
            stream, or ``times`` holds non-finite values.
    """
    path = Path(path)
    req = np.asarray(times, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(req)):
        raise DataError("requested frame times are not all finite", path=path)
    _check_file(path)
    container = _open(path)
    try:
        _video_stream(container, path)
    except DataError:
        container.close()
        raise
    return _frames_at(container, path, req, offset=offset, pixel_format=pixel_format, threads=threads)


def _decoding_stream(
    container: av.container.InputContainer, path: Path, threads: int
) -> tuple[av.video.stream.VideoStream, float]:
    """The video stream, set up for threaded decoding, and its nominal frame interval in seconds
    (1/25 s when the container gives no frame rate)."""
    stream = _video_stream(container, path)
    stream.thread_type = "AUTO"
    if threads:
        stream.thread_count = threads
    rate = stream.average_rate or stream.guessed_rate
    return stream, (1.0 / float(rate) if rate else 1.0 / 25.0)


def _timed_frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, path: Path, nominal: float
) -> Iterator[tuple[av.VideoFrame, float]]:
    """Yield every decoded frame with its presentation time, in decoding (= presentation) order.

    A frame without a time stamp continues the grid of the frame before it
    (the first one: 0 s); a non-increasing time stamp (broken muxing) is put
    one frame interval after the frame before. Frames are decoded only as
    they are asked for. Raises DataError on a decoding error, with the time
    of the last good frame.
    """
    frames = container.decode(stream)
    prev_t: float | None = None
    interval = nominal  # last observed frame interval
    last_good = 0.0
    while True:
        try:
            frame = next(frames, None)
        except av.FFmpegError as exc:
            raise DataError(f"video stream is corrupt: {exc}", path=path, time=last_good) from exc
        if frame is None:
            return
        t = _frame_time(frame, stream)
        if t is None:  # no time stamp: continue the grid of the last frame
            t = prev_t + interval if prev_t is not None else 0.0
        if prev_t is not None and t <= prev_t:
            # Non-increasing time stamp (broken muxing): keep the order of
            # decoding, which is the presentation order, one interval on.
            t = prev_t + interval
        if prev_t is not None:
            interval = t - prev_t
        prev_t = last_good = t
        yield frame, t


class _HeldFrame:
    """A decoded frame and its time; converted to an upright array once, when a request first takes it
    (every request answered by the frame gets the same array object)."""

    __slots__ = ("frame", "t", "pixel_format", "_image")

    def __init__(self, frame: av.VideoFrame, t: float, pixel_format: str) -> None:
        self.frame, self.t, self.pixel_format = frame, t, pixel_format
        self._image: np.ndarray | None = None

    def image(self) -> np.ndarray:
        """The frame as an array (converted on the first call)."""
        if self._image is None:
            self._image = upright(self.frame.to_ndarray(format=self.pixel_format), quarter_turns(self.frame),
                                  self.pixel_format)
        return self._image


def _match_frames(
    timed: Iterator[tuple[av.VideoFrame, float]],
    order: np.ndarray,
    centres: np.ndarray,
    nominal: float,
    pixel_format: str,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """Answer the requests (frame centres ``centres``, sorted; ``order``: their indices) from the timed
    frames: each gets the frame nearest to its centre (ties: the earlier one), or None before the first
    frame or after the end of the last one by more than half a frame interval. Stops decoding once every
    request is answered."""
    n_req = len(order)
    k = 0  # next request (in sorted order) to answer
    held: _HeldFrame | None = None  # the frame decoded before the current one
    interval = nominal  # last observed frame interval
    while k < n_req:
        item = next(timed, None)
        if item is None:
            break
        frame, t = item
        if held is None:
            # Requests before the first frame by more than half an interval.
            while k < n_req and centres[k] < t - 0.5 * nominal:
                yield int(order[k]), None
                k += 1
        else:
            interval = t - held.t
            # Answer every request whose nearest frame is the held one.
            while k < n_req and centres[k] - held.t <= t - centres[k]:
                yield int(order[k]), held.image()
                k += 1
        held = _HeldFrame(frame, t, pixel_format)
    if held is not None:
        end = held.t + interval
        while k < n_req and centres[k] <= end + 0.5 * interval:
            yield int(order[k]), held.image()
            k += 1
    while k < n_req:
        yield int(order[k]), None
        k += 1


def _frames_at(
    container: av.container.InputContainer,
    path: Path,
    req: np.ndarray,
    *,
    offset: float,
    pixel_format: str,
    threads: int,
) -> Iterator[tuple[int, np.ndarray | None]]:
    """:func:`frames_at`'s generator: decode ``container`` once and answer the requests ``req``; the
    container is closed when the generator ends or is closed."""
    order = np.argsort(req, kind="stable")
    centres = req[order] + offset
    try:
        if len(order) == 0:
            return
        stream, nominal = _decoding_stream(container, path, threads)
        yield from _match_frames(_timed_frames(container, stream, path, nominal), order, centres, nominal,
                                 pixel_format)
    finally:
        container.close()

