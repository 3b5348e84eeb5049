"""Face detection, target selection and face crops on the 10 Hz frame grid.

The detector is OpenCV's Viola–Jones Haar cascade (the weights ship inside
``opencv-python-headless<5``; no download). For each 10 Hz frame the video
frame nearest to the frame centre is decoded (:func:`mmaffect.preprocess.video.frames_at`),
faces are detected, one *target* face is chosen, its box is smoothed a
little, and a square crop around it is resized to ``size × size`` RGB.

Target selection (``select``; full description in ``docs/faces.md``):

``largest``
    the largest face of the latest full-frame scan; between scans it is
    followed by the local search below (``scan_every=0``: the largest face
    of every frame).
``track`` (default)
    start with the largest face; afterwards keep the face whose centre is
    nearest the previous target's centre, provided it lies within one face
    width of it; frames where no such face is found are masked (the target
    is *not* swapped for another person); after more than ``reacquire_gap``
    seconds (1 s) without the target, the largest face is acquired again.

Speed: a full-frame scan runs on the frame downscaled to ``detect_width``
pixels (or less: down to where ``min_face`` is one 24-pixel cascade window);
between full scans (at most ``scan_every`` seconds apart, 5 s) only a
small region around the current target is searched, at a scale where the
face is a few cascade windows wide and only sizes near the current one are
tried. When that local search fails, a full scan runs at once. Set
``scan_every=0`` to scan every frame in full (slower, exact multi-face
counts). While no face is in view, full scans run ``absent_scan_every``
seconds apart and the frames between wait for the next scan's verdict
(:func:`iter_faces`; same results as scanning each of them).

Nothing is invented: a frame without a target face gets a zero crop, a False
mask and a NaN box, and is counted in the report.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np

from mmaffect.errors import ConfigError, DataError
from mmaffect.preprocess.video import frames_at, probe_video

__all__ = [
    "CASCADES",
    "HaarFaceDetector",
    "TargetSelector",
    "FaceTrack",
    "crop_face",
    "extract_faces",
    "iter_faces",
    "new_face_report",
    "prefetch",
]

CASCADES: dict[str, str] = {
    "default": "haarcascade_frontalface_default.xml",
    "alt2": "haarcascade_frontalface_alt2.xml",
    "profile": "haarcascade_profileface.xml",
}
"""Cascade names accepted by :class:`HaarFaceDetector` → file in ``cv2.data.haarcascades``."""

_T = TypeVar("_T")
_WINDOW = 24  # the frontal cascades' base window (pixels)


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    if name not in CASCADES:
        raise ValueError(f"unknown cascade {name!r}; choose from {sorted(CASCADES)}")
    file = Path(cv2.data.haarcascades) / CASCADES[name]
    clf = cv2.CascadeClassifier(str(file))
    if clf.empty():
        raise RuntimeError(f"OpenCV could not load the cascade {file}")
    return clf


def _nms(boxes: np.ndarray, *, iou: float = 0.3) -> np.ndarray:
    """Drop boxes overlapping a larger box by IoU > ``iou`` or centred inside it."""
    if len(boxes) < 2:
        return boxes
    order = np.argsort(-(boxes[:, 2] * boxes[:, 3]), kind="stable")
    keep: list[int] = []
    for i in order:
        x, y, w, h = boxes[i]
        cx, cy = x + w / 2, y + h / 2
        ok = True
        for j in keep:
            X, Y, W, H = boxes[j]
            ix = max(0.0, min(x + w, X + W) - max(x, X))
            iy = max(0.0, min(y + h, Y + H) - max(y, Y))
            inter = ix * iy
            union = w * h + W * H - inter
            if inter / union > iou or (X <= cx <= X + W and Y <= cy <= Y + H):
                ok = False
                break
        if ok:
            keep.append(int(i))
    return boxes[sorted(keep)]


class HaarFaceDetector:
    """Viola–Jones face detector (OpenCV Haar cascades) with downscaling.

    Args:
        detect_width: full-frame scans run on the frame downscaled to this
            width (never upscaled).
        min_face: smallest face side searched, as a fraction of the frame
            height.
        scale_factor: step between pyramid scales (1.1 = OpenCV default;
            larger is faster and misses more).
        min_neighbors: overlapping raw hits required for a detection.
        cascades: cascade names from :data:`CASCADES`; ``"profile"`` is run
            on the image and on its mirror image (both profile directions).
            Detections of several cascades are merged (largest box wins).
    """

    def __init__(
        self,
        *,
        detect_width: int = 320,
        min_face: float = 0.12,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascades: Sequence[str] = ("default",),
    ) -> None:
        if detect_width < _WINDOW:
            raise ValueError(f"detect_width must be at least {_WINDOW}, got {detect_width}")
        if not 0.0 < min_face <= 1.0:
            raise ValueError(f"min_face must be in (0, 1], got {min_face}")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1, got {scale_factor}")
        if not cascades:
            raise ValueError("at least one cascade is needed")
        self.detect_width = int(detect_width)
        self.min_face = float(min_face)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.cascade_names = tuple(cascades)
        self._cascades = [(name, _load_cascade(name)) for name in self.cascade_names]

    @staticmethod
    def gray(image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 grey image of an RGB (H, W, 3) or grey (H, W) uint8 image."""
        if image.ndim == 2:
            return np.ascontiguousarray(image)
        if image.ndim == 3 and image.shape[2] == 3:
            return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")

    def _run(
        self, img: np.ndarray, min_side: int, max_side: int | None, *, min_neighbors: int | None = None
    ) -> np.ndarray:
        min_size = (max(min_side, 1), max(min_side, 1))
        max_size = (max_side, max_side) if max_side else (0, 0)
        found: list[np.ndarray] = []
        for name, clf in self._cascades:
            views = [(img, False)]
            if name == "profile":
                views.append((np.ascontiguousarray(img[:, ::-1]), True))
            for view, flipped in views:
                hits = clf.detectMultiScale(
                    view,
                    scaleFactor=self.scale_factor,
                    minNeighbors=self.min_neighbors if min_neighbors is None else min_neighbors,
                    minSize=min_size,
                    maxSize=max_size,
                )
                if len(hits):
                    hits = np.asarray(hits, dtype=np.float32).reshape(-1, 4)
                    if flipped:
                        hits[:, 0] = view.shape[1] - hits[:, 0] - hits[:, 2]
                    found.append(hits)
        if not found:
            return np.zeros((0, 4), np.float32)
        boxes = np.concatenate(found)
        return _nms(boxes) if len(self._cascades) > 1 else boxes

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Faces in a whole frame: (n, 4) float32 ``x, y, w, h`` in source pixels."""
        return self.detect_full(self.gray(image))

    def detect_full(self, gray: np.ndarray) -> np.ndarray:
        """Full-frame scan of a grey image; boxes in source pixels.

        The image is downscaled to ``detect_width`` (or further, down to the
        size at which the smallest face searched, ``min_face`` × height, is
        one 24-pixel cascade window).
        """
        h, w = gray.shape
        # Downscale to detect_width, and further while the smallest face
        # searched stays at least one cascade window wide (same results at
        # the smallest size, fewer pixels to scan).
        scale = min(1.0, self.detect_width / w, _WINDOW / (self.min_face * h))
        small = gray
        if scale < 1.0:
            size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
            small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        min_side = max(_WINDOW, int(round(self.min_face * small.shape[0])))
        boxes = self._run(small, min_side, None)
        return boxes / np.float32(scale)

    def detect_near(
        self,
        gray: np.ndarray,
        box: Sequence[float],
        *,
        reach: float = 0.5,
        size_range: tuple[float, float] = (0.8, 1.25),
        min_neighbors: int | None = None,
    ) -> np.ndarray:
        """Search only around ``box`` (x, y, w, h, source pixels) for a face of similar size.

        The region spans the box centre ± ``(reach + size_range[1] / 2)``
        box widths; it is downscaled so that the smallest size searched
        (``size_range[0]`` × box width) is the cascade window, and only sizes
        in ``size_range`` × box width are tried. Boxes in source pixels.
        ``min_neighbors`` defaults to two less than the detector's (at least
        1): few scales are searched, so true faces gather fewer raw hits,
        and the location is already known.
        """
        if min_neighbors is None:
            min_neighbors = max(1, self.min_neighbors - 2)
        x, y, bw, bh = (float(v) for v in box)
        side = max(bw, bh)
        cx, cy = x + bw / 2, y + bh / 2
        half = side * (reach + size_range[1] / 2)
        H, W = gray.shape
        x0, x1 = max(0, int(cx - half)), min(W, int(np.ceil(cx + half)))
        y0, y1 = max(0, int(cy - half)), min(H, int(np.ceil(cy + half)))
        if x1 - x0 < _WINDOW or y1 - y0 < _WINDOW:
            return np.zeros((0, 4), np.float32)
        region = gray[y0:y1, x0:x1]
        scale = min(1.0, _WINDOW / (size_range[0] * side))
        if scale < 1.0:
            size = (max(1, int(round((x1 - x0) * scale))), max(1, int(round((y1 - y0) * scale))))
            region = cv2.resize(region, size, interpolation=cv2.INTER_AREA)
        lo = max(_WINDOW, int(np.floor(max(size_range[0] * side, self.min_face * H) * scale)))
        hi = int(np.ceil(size_range[1] * side * scale))
        if min(region.shape) < lo:
            return np.zeros((0, 4), np.float32)
        boxes = self._run(region, lo, max(hi, lo + 1), min_neighbors=min_neighbors) / np.float32(scale)
        boxes[:, 0] += x0
        boxes[:, 1] += y0
        return boxes


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2], dtype=np.float64)


@dataclass
class TargetSelector:
    """Chooses the target face among a frame's detections (the ``select`` rule).

    ``smooth`` is the weight of the previous box in the exponential moving
    average of the box centre and size (0 = no smoothing); the average
    restarts whenever the target is (re)acquired.
    """

    select: str = "track"
    reacquire_gap: float = 1.0
    max_jump: float = 1.0
    smooth: float = 0.4
    box: np.ndarray | None = field(default=None, init=False)  # smoothed x, y, w, h
    last_seen: float = field(default=-np.inf, init=False)

    def __post_init__(self) -> None:
        if self.select not in ("largest", "track"):
            raise ValueError(f"select must be 'largest' or 'track', got {self.select!r}")
        if not 0.0 <= self.smooth < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {self.smooth}")

    def live(self, t: float) -> bool:
        """Is there a current target, seen at most ``reacquire_gap`` seconds before ``t``?"""
        return self.box is not None and t - self.last_seen <= self.reacquire_gap + 1e-9

    def choose(self, t: float, boxes: np.ndarray) -> int | None:
        """Index of the target among ``boxes`` at time ``t`` (``None``: no target face)."""
        if len(boxes) == 0:
            return None
        areas = boxes[:, 2] * boxes[:, 3]
        if self.select == "largest" or not self.live(t):
            return int(np.argmax(areas))
        assert self.box is not None
        centres = boxes[:, :2] + boxes[:, 2:] / 2
        dist = np.hypot(*(centres - _centre(self.box)).T)
        best = int(np.argmin(dist))
        return best if dist[best] <= self.max_jump * self.box[2] else None

    def update(self, t: float, box: np.ndarray) -> np.ndarray:
        """Accept ``box`` as the target at ``t``; return the smoothed box."""
        box = np.asarray(box, dtype=np.float64)
        restart = self.box is None or not self.live(t)
        if not restart and self.select == "largest":
            # a different face became the largest: do not blend two faces
            restart = np.hypot(*(_centre(box) - _centre(self.box))) > self.max_jump * self.box[2]
        if restart:
            self.box = box.copy()
        else:
            a = self.smooth
            c = a * _centre(self.box) + (1 - a) * _centre(box)
            s = a * self.box[2:] + (1 - a) * box[2:]
            self.box = np.array([c[0] - s[0] / 2, c[1] - s[1] / 2, s[0], s[1]])
        self.last_seen = t
        return self.box.copy()


def _square(box: Sequence[float], margin: float) -> tuple[int, int, int]:
    """Top-left corner and side of the square crop around ``box``."""
    x, y, w, h = (float(v) for v in box)
    side = max(1, int(round(max(w, h) * (1.0 + 2.0 * margin))))
    return int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2)), side


def _finish(patch: np.ndarray, x0: int, y0: int, side: int, ax0: int, ay0: int, size: int) -> np.ndarray:
    """Edge-pad the in-image ``patch`` (top-left ``ax0, ay0``) to the square and resize."""
    ph, pw = patch.shape[:2]
    top, left = ay0 - y0, ax0 - x0
    bottom, right = side - top - ph, side - left - pw
    if max(top, left, bottom, right) > 0:
        patch = cv2.copyMakeBorder(
            np.ascontiguousarray(patch), max(top, 0), max(bottom, 0), max(left, 0), max(right, 0),
            cv2.BORDER_REPLICATE,
        )[:side, :side]
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(patch), (size, size), interpolation=interp)


def crop_face(image: np.ndarray, box: Sequence[float], *, size: int = 96, margin: float = 0.25) -> np.ndarray:
    """Square ``size × size`` RGB crop around ``box`` (x, y, w, h, source pixels).

    The square is centred on the box, with side ``max(w, h) * (1 + 2 * margin)``.
    Parts of it outside the image are filled by replicating the image's edge
    pixels (no black bars that a network could learn from).

    >>> crop_face(np.zeros((40, 60, 3), np.uint8), (50, 30, 20, 20), size=8).shape
    (8, 8, 3)
    """
    x0, y0, side = _square(box, margin)
    H, W = image.shape[:2]
    ax0, ay0 = min(max(x0, 0), W - 1), min(max(y0, 0), H - 1)
    ax1, ay1 = max(min(x0 + side, W), ax0 + 1), max(min(y0 + side, H), ay0 + 1)
    return _finish(image[ay0:ay1, ax0:ax1], x0, y0, side, ax0, ay0, size)


def _crop_face_i420(i420: np.ndarray, box: Sequence[float], *, size: int, margin: float) -> np.ndarray:
    """:func:`crop_face` on an (H·3/2, W) I420 frame, converting only the crop region to RGB."""
    H, W = i420.shape[0] * 2 // 3, i420.shape[1]
    x0, y0, side = _square(box, margin)
    ax0, ay0 = min(max(x0, 0), W - 1), min(max(y0, 0), H - 1)
    ax1, ay1 = max(min(x0 + side, W), ax0 + 1), max(min(y0 + side, H), ay0 + 1)
    # chroma is subsampled 2×2: convert an even-aligned region, then trim it
    ex0, ey0 = ax0 & ~1, ay0 & ~1
    ex1, ey1 = min(W, ax1 + (ax1 & 1)), min(H, ay1 + (ay1 & 1))
    ew, eh = ex1 - ex0, ey1 - ey0
    u = i420[H:].reshape(-1)[: H * W // 4].reshape(H // 2, W // 2)
    v = i420[H:].reshape(-1)[H * W // 4 :].reshape(H // 2, W // 2)
    planes = (
        i420[ey0:ey1, ex0:ex1].reshape(-1),
        u[ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2].reshape(-1),
        v[ey0 // 2 : ey1 // 2, ex0 // 2 : ex1 // 2].reshape(-1),
    )
    rgb = cv2.cvtColor(np.concatenate(planes).reshape(eh * 3 // 2, ew), cv2.COLOR_YUV2RGB_I420)
    patch = rgb[ay0 - ey0 : ay1 - ey0, ax0 - ex0 : ax1 - ex0]
    return _finish(patch, x0, y0, side, ax0, ay0, size)


@dataclass
class FaceTrack:
    """The target's face crops on the frame grid, and what was found.

    ``report`` keys: ``n_frames``, ``n_faces_found`` (frames with a target
    face), ``n_missing`` (frames inside the video without one),
    ``n_beyond_video`` (frames outside the video), ``n_multiple`` (full
    scans that saw more than one face), ``n_full_scans``, ``n_local_searches``,
    ``n_not_scanned`` (frames masked unscanned between two scans that found no face; ``absent_scan_every``).
    """

    crops: np.ndarray  # (T, S, S, 3) uint8 RGB, zeros where masked
    mask: np.ndarray  # (T,) bool
    boxes: np.ndarray  # (T, 4) float32, NaN where masked
    report: dict[str, int]


def new_face_report(n_frames: int) -> dict[str, int]:
    """The zeroed counts of :class:`FaceTrack` ``report`` for ``n_frames`` frames (filled by :func:`iter_faces`)."""
    report = dict.fromkeys(
        ("n_frames", "n_faces_found", "n_missing", "n_beyond_video", "n_multiple", "n_full_scans", "n_local_searches",
         "n_not_scanned"),
        0,
    )
    report["n_frames"] = n_frames
    return report


def with_detector(faces: Mapping[str, Any], *, min_face: float | None = None,
                  detect_width: int | None = None) -> dict[str, Any]:
    """A copy of a ``faces`` section with other detector settings (None keeps one): where faces are
    searched, never what a crop shows (size, margin, grey stay as the model was trained).

    ``min_face``: the smallest face searched, as a fraction of the frame height (0, 1]; ``detect_width``:
    the width full scans downscale the frame to (≥ 24 pixels). A wide shot, where a face fills less
    than the default 12 % of the height, needs a smaller ``min_face`` and a larger ``detect_width``.

    >>> with_detector({"size": 96, "min_face": 0.12, "detect_width": 320}, min_face=0.05, detect_width=960)
    {'size': 96, 'min_face': 0.05, 'detect_width': 960}
    """
    out = dict(faces)
    if min_face is not None:
        if not 0.0 < float(min_face) <= 1.0:
            raise ConfigError(f"min_face must be a fraction of the frame height in (0, 1], not {min_face!r}")
        out["min_face"] = float(min_face)
    if detect_width is not None:
        if int(detect_width) != detect_width or int(detect_width) < _WINDOW:
            raise ConfigError(f"detect_width must be a whole number of pixels >= {_WINDOW}, not {detect_width!r}")
        out["detect_width"] = int(detect_width)
    return out


def small_face_hint(faces: Mapping[str, Any]) -> str:
    """Why a video may show no face to the detector, and the settings that find small ones.

    >>> small_face_hint({"min_face": 0.12, "detect_width": 320})
    'faces smaller than 12% of the frame height are not searched; for a wide shot try --min-face 0.05 --detect-width 960'
    """
    return (f"faces smaller than {float(faces['min_face']):.0%} of the frame height are not searched; "
            "for a wide shot try --min-face 0.05 --detect-width 960")


def no_face_warning(faces: Mapping[str, Any]) -> str:
    """The warning of a video in which no face was found (``predict``), with :func:`small_face_hint`."""
    return f"no face found in the video: the visual modality is masked throughout ({small_face_hint(faces)})"


def video_coverage_warning(report: dict[str, int]) -> str | None:
    """The warning for a video shorter than the recording's frame grid (``prepare`` and ``predict`` alike).

    Frames past the video's end are masked (no face) and counted in ``n_beyond_video``; a video cut
    short (a truncated download, a broken encoder) is worth knowing about, so it is said, not only counted.

    >>> video_coverage_warning({"n_frames": 100, "n_beyond_video": 70})
    'the video ends before the recording: 70 of 100 frames (70%) lie past its end and are masked (no face)'
    >>> video_coverage_warning({"n_frames": 100, "n_beyond_video": 0}) is None
    True
    """
    n, total = int(report.get("n_beyond_video", 0)), int(report.get("n_frames", 0))
    if n <= 0 or total <= 0:
        return None
    return (f"the video ends before the recording: {n} of {total} frames ({n / total:.0%}) lie past its end "
            "and are masked (no face)")


def grey_crop(crop: np.ndarray) -> np.ndarray:
    """An RGB uint8 crop as grey: its luma (ITU-R BT.601, OpenCV) in all three channels.

    For face branches pretrained on grey stills (FER+): colour is then no
    difference between the faces they learned from and the faces of a video
    (``faces.grey`` in ``configs/prepare.yaml``).

    >>> grey_crop(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).tolist()
    [[[76, 76, 76], [29, 29, 29]]]
    """
    import cv2

    return np.repeat(cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


class _Tracker:
    """Detection and target selection frame by frame, in time order (the rule of the module docstring).

    ``absent_scan_every``: while no target is tracked and the last full scan
    found no face at all, frames less than this many seconds after that scan
    are held back unscanned (:meth:`may_skip`); the next scan decides them —
    if it finds nothing either they are masked unscanned, if it finds a face
    they are scanned in order first (:func:`iter_faces`), so a face's onset
    is found on the frame where an exhaustive scan finds it.
    """

    def __init__(self, detector: HaarFaceDetector, selector: TargetSelector, report: dict[str, int], *,
                 scan_every: float, absent_scan_every: float) -> None:
        self.detector, self.selector, self.report = detector, selector, report
        self.scan_every, self.absent_scan_every = scan_every, absent_scan_every
        self.last_scan = -np.inf
        self.empty_scan: float | None = None  # time of the last full scan, when it found no face

    def scan(self, t: float, gray: np.ndarray) -> np.ndarray:
        """Full-frame scan at ``t``."""
        found = self.detector.detect_full(gray)
        self.last_scan = t
        self.empty_scan = t if len(found) == 0 else None
        self.report["n_full_scans"] += 1
        self.report["n_multiple"] += int(len(found) > 1)
        return found

    def may_skip(self, t: float) -> bool:
        """May the full scan of the frame at ``t`` wait for the next scan's verdict?"""
        return (self.absent_scan_every > 0 and self.empty_scan is not None and not self.selector.live(t)
                and t - self.empty_scan < self.absent_scan_every - 1e-9)

    def pick(self, t: float, gray: np.ndarray, found: np.ndarray | None = None) -> np.ndarray | None:
        """The target's detected box at ``t`` (``None``: no target face): the local search around a tracked
        target, else (or when it fails) a full scan (``found``: its result, already computed)."""
        if self.selector.live(t) and t - self.last_scan < self.scan_every - 1e-9:
            assert self.selector.box is not None
            self.report["n_local_searches"] += 1
            near = self.detector.detect_near(gray, self.selector.box)
            k = self.selector.choose(t, near)
            if k is not None:
                return near[k]
        if found is None:
            found = self.scan(t, gray)
        else:  # the scan was run ahead of held-back frames: it counts as this frame's
            self.last_scan, self.empty_scan = t, (t if len(found) == 0 else None)
        k = self.selector.choose(t, found)
        return None if k is None else found[k]


def iter_faces(
    video_path: str | Path,
    times: Sequence[float] | np.ndarray,
    *,
    size: int = 96,
    detect_width: int = 320,
    min_face: float = 0.12,
    margin: float = 0.25,
    select: str = "track",
    offset: float = 0.05,
    scan_every: float = 5.0,
    absent_scan_every: float = 0.0,
    reacquire_gap: float = 1.0,
    smooth: float = 0.4,
    scale_factor: float = 1.1,
    min_neighbors: int = 5,
    cascades: Sequence[str] = ("default",),
    report: dict[str, int] | None = None,
    grey: bool = False,
) -> Iterator[tuple[int, np.ndarray | None, np.ndarray | None]]:
    """Yield ``(i, crop, box)`` for every frame time, in time order, one frame at a time.

    The streaming core of :func:`extract_faces` (same arguments, same
    result frame by frame): ``crop`` is the (S, S, 3) uint8 RGB target face
    and ``box`` its smoothed (x, y, w, h) box in video pixels, or both are
    ``None`` when the frame has no target face (or lies outside the video).
    Memory does not grow with the number of frames, so long recordings can
    be processed in chunks (``mmaffect predict``). ``report``, when given,
    is updated in place with the counts described in :class:`FaceTrack`
    (``n_faces_found`` included).

    ``absent_scan_every`` (seconds; 0 = off): while no face is in view,
    full scans run this far apart instead of on every frame; frames in
    between are decided by the next scan (masked unscanned when it finds no
    face either, counted in ``n_not_scanned``; scanned in order when it
    finds one). Only a face that appears and disappears again between two
    scans is missed.

    Raises:
        DataError: the video is missing, empty, corrupt or has no video stream.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if absent_scan_every < 0:
        raise ValueError(f"absent_scan_every must be >= 0, got {absent_scan_every}")
    path = Path(video_path)
    req = np.asarray(times, dtype=np.float64).reshape(-1)
    info = probe_video(path)  # clear errors for missing / empty / corrupt files
    detector = HaarFaceDetector(
        detect_width=detect_width,
        min_face=min_face,
        scale_factor=scale_factor,
        min_neighbors=min_neighbors,
        cascades=cascades,
    )
    if report is None:
        report = new_face_report(len(req))
    tracker = _Tracker(detector, TargetSelector(select=select, reacquire_gap=reacquire_gap, smooth=smooth), report,
                       scan_every=scan_every, absent_scan_every=absent_scan_every)
    # 4:2:0 planes: the luma plane is the detector's grey image and only the
    # crop region is converted to RGB (odd frame sizes: whole-frame RGB).
    i420 = info.width % 2 == 0 and info.height % 2 == 0

    def emit(i: int, image: np.ndarray, gray: np.ndarray, found: np.ndarray | None = None
             ) -> tuple[int, np.ndarray | None, np.ndarray | None]:
        t = float(req[i])
        pick = tracker.pick(t, gray, found)
        if pick is None:
            report["n_missing"] += 1
            return i, None, None
        box = tracker.selector.update(t, pick)
        crop = (_crop_face_i420 if i420 else crop_face)(image, box, size=size, margin=margin)
        report["n_faces_found"] += 1
        return i, grey_crop(crop) if grey else crop, np.asarray(box, np.float32)

    held: list[tuple[int, np.ndarray, np.ndarray]] = []  # frames waiting for the next scan's verdict
    stream = frames_at(path, req, offset=offset, pixel_format="yuv420p" if i420 else "rgb24")
    with contextlib.closing(prefetch(stream, depth=4)) as decoded:
        for i, image in decoded:
            if image is None:
                yield from (emit(*h) for h in held)
                held.clear()
                report["n_beyond_video"] += 1
                yield i, None, None
                continue
            gray = image[: info.height] if i420 else detector.gray(image)
            if tracker.may_skip(float(req[i])):
                held.append((i, image, gray))
                continue
            found = tracker.scan(float(req[i]), gray) if held else None
            if held and len(found) == 0:
                report["n_missing"] += len(held)
                report["n_not_scanned"] += len(held)
                yield from ((j, None, None) for j, _, _ in held)
            else:
                yield from (emit(*h) for h in held)
            held.clear()
            yield emit(i, image, gray, found)
        yield from (emit(*h) for h in held)


def extract_faces(
    video_path: str | Path,
    times: Sequence[float] | np.ndarray,
    *,
    size: int = 96,
    on_no_face: str = "error",
    **options: Any,
) -> FaceTrack:
    """Detect, select and crop the target face for every frame time.

    ``times[i]`` is a frame's start; its image is the video frame nearest
    ``times[i] + offset`` (the frame centre). See the module docstring for
    the selection rule and the local search; the keyword ``options`` are
    those of :func:`iter_faces` (``detect_width``, ``min_face``, ``margin``,
    ``select``, ``offset``, ``scan_every`` — the longest time in seconds
    between full-frame scans while a target is tracked, 0 = every frame —
    ``absent_scan_every`` — the time between full scans while no face is in
    view, 0 = every frame —
    ``reacquire_gap``, ``smooth``, ``scale_factor``, ``min_neighbors``,
    ``cascades``).

    Raises:
        DataError: the video is missing, empty, corrupt or has no video
            stream; or no face is found in any frame and
            ``on_no_face='error'`` (with ``'mask'`` all frames are masked).
    """
    if on_no_face not in ("error", "mask"):
        raise ValueError(f"on_no_face must be 'error' or 'mask', got {on_no_face!r}")
    req = np.asarray(times, dtype=np.float64).reshape(-1)
    T = len(req)
    crops = np.zeros((T, size, size, 3), np.uint8)
    mask = np.zeros(T, bool)
    boxes_out = np.full((T, 4), np.nan, np.float32)
    report = new_face_report(T)
    for i, crop, box in iter_faces(video_path, req, size=size, report=report, **options):
        if crop is not None:
            crops[i], boxes_out[i], mask[i] = crop, box, True
    if report["n_faces_found"] == 0 and T > 0 and on_no_face == "error":
        raise DataError(
            f"no face found in any of the {T} frames "
            f"({report['n_beyond_video']} of them beyond the end of the video); "
            "use faces.on_no_face=mask to mask the visual modality instead",
            path=video_path,
        )
    return FaceTrack(crops=crops, mask=mask, boxes=boxes_out, report=report)


_DONE = object()


@dataclass
class _Failure:
    """An exception raised in the producer thread, carried to the consumer."""

    error: BaseException


class _Prefetch(Iterator[_T]):
    """Run ``items`` in a background thread, ``depth`` items ahead; started at once.

    Video decoding (FFmpeg releases the GIL) then overlaps with face
    detection (OpenCV releases it too), and a whole face-tracking pass can
    run ahead of a model. Exceptions are re-raised by ``next``; ``close()``
    (also when the consumer stops early) stops and joins the thread.
    """

    def __init__(self, items: Iterator[_T], *, depth: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        self._items = items
        self._worker = threading.Thread(target=self._produce, name="mmaffect-prefetch", daemon=True)
        self._worker.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for item in self._items:
                if not self._put(item):
                    break
            result: object = _DONE
        except BaseException as exc:  # handed to the consumer, re-raised there
            result = _Failure(exc)
        finally:
            close = getattr(self._items, "close", None)
            if close is not None:
                close()
        self._put(result)

    def __next__(self) -> _T:
        if self._finished:
            raise StopIteration
        item = self._q.get()
        if item is _DONE or isinstance(item, _Failure):
            self._finished = True
            self.close()
            if isinstance(item, _Failure):
                raise item.error
            raise StopIteration
        return item

    def close(self) -> None:
        self._stop.set()
        self._worker.join()


def prefetch(items: Iterator[_T], *, depth: int) -> _Prefetch[_T]:
    """Start prefetching ``items`` in a thread now (see :class:`_Prefetch`)."""
    return _Prefetch(items, depth=depth)
