"""Tests of mmaffect.preprocess.video and .faces on small synthetic videos.

Faces are the real face of ``skimage.data.astronaut()`` pasted on a smooth
background; the encoded videos live in ``tmp_path``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import skimage.data

from mmaffect.errors import DataError
from mmaffect.preprocess.faces import (
    HaarFaceDetector,
    TargetSelector,
    _crop_face_i420,
    crop_face,
    extract_faces,
)
from mmaffect.preprocess.video import frames_at, probe_video

W, H = 480, 360
# head crop of the astronaut; its face box within the crop, as fractions of the crop side
_HEAD = skimage.data.astronaut()[20:240, 120:340]
_FACE_CX, _FACE_CY, _FACE_SIDE = 105 / 220, 94 / 220, 98 / 220


def _background() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    g = (60 + 80 * xx / W + 40 * yy / H).astype(np.uint8)
    return np.stack([g, g, (g * 0.8).astype(np.uint8)], axis=-1)


def _paste(img: np.ndarray, x: int, y: int, side: int) -> tuple[float, float, float]:
    """Paste the head at (x, y) with the given side; return the face centre and side."""
    img[y : y + side, x : x + side] = cv2.resize(_HEAD, (side, side), interpolation=cv2.INTER_AREA)
    return x + _FACE_CX * side, y + _FACE_CY * side, _FACE_SIDE * side


Scene = Callable[[float], np.ndarray]


def _write_video(
    path: Path, scene: Scene, times: Sequence[float], *, codec: str = "libx264", size: tuple[int, int] = (W, H),
    rotation: int = 0,
) -> None:
    """Encode ``scene(t)`` for each frame time (pts in ms, so any frame rate pattern). ``rotation``: the
    frames are stored turned ``rotation`` degrees clockwise, with a display matrix turning them back (a
    phone's sensor frames)."""
    out = av.open(str(path), "w")
    stream = out.add_stream(codec, rate=30)
    if rotation % 180:
        size = (size[1], size[0])
    stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
    if rotation:
        stream.set_display_rotation(rotation)
        scene = (lambda f: lambda t: np.ascontiguousarray(np.rot90(f(t), -rotation // 90)))(scene)
    stream.codec_context.time_base = Fraction(1, 1000)
    if codec == "libx264":
        stream.options = {"preset": "ultrafast", "crf": "18"}
    for t in times:
        frame = av.VideoFrame.from_ndarray(scene(t), format="rgb24")
        frame.pts = int(round(t * 1000))
        frame.time_base = Fraction(1, 1000)
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()


def _moving_face(t: float) -> np.ndarray:
    img = _background()
    _paste(img, *_moving_pos(t))
    return img


def _moving_pos(t: float) -> tuple[int, int, int]:
    return int(80 + 60 * t), int(50 + 20 * np.sin(t)), 200


def _grid(seconds: float, fps: float) -> list[float]:
    return [i / fps for i in range(int(round(seconds * fps)))]


# ---------------------------------------------------------------- video


def test_probe_video(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    _write_video(path, lambda t: _background(), _grid(1.0, 15))
    info = probe_video(path)
    assert (info.width, info.height) == (W, H)
    assert not info.has_audio
    assert info.duration is not None and 0.9 <= info.duration <= 1.1


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_rotation_is_applied_to_every_pixel_format_and_to_the_size(tmp_path: Path, rotation: int) -> None:
    # a phone stores sensor frames and a display matrix; frames come back as a player shows them
    path = tmp_path / "phone.mp4"
    _write_video(path, _moving_face, _grid(1.0, 15), rotation=rotation)
    info = probe_video(path)
    assert (info.width, info.height, info.rotation) == (W, H, rotation)
    want = _moving_face(round(0.55 * 15) / 15)
    rgb = dict(frames_at(path, [0.5]))[0]
    i420 = dict(frames_at(path, [0.5], pixel_format="yuv420p"))[0]
    grey = dict(frames_at(path, [0.5], pixel_format="gray"))[0]
    assert rgb.shape == (H, W, 3) and i420.shape == (H * 3 // 2, W) and grey.shape == (H, W)
    assert np.abs(rgb.astype(int) - want).mean() < 4
    assert np.abs(cv2.cvtColor(i420, cv2.COLOR_YUV2RGB_I420).astype(int) - want).mean() < 4
    assert np.abs(grey.astype(int) - cv2.cvtColor(want, cv2.COLOR_RGB2GRAY)).mean() < 15  # full-range grey
    track = extract_faces(path, np.arange(10) * 0.1, size=64)
    assert track.mask.all(), track.report
    bx, by = _centres(track.boxes)[5]
    x, y, side = _moving_pos(round(0.55 * 15) / 15)
    assert abs(bx - (x + _FACE_CX * side)) < 12 and abs(by - (y + _FACE_CY * side)) < 12


@pytest.mark.parametrize(("suffix", "codec"), [("mkv", "libx264"), ("mp4", "libx264"), ("avi", "mpeg4")])
def test_variable_frame_rate_picks_nearest_frame(tmp_path: Path, suffix: str, codec: str) -> None:
    # irregular presentation times; frame k is a flat image of grey level 20 k
    pts = [0.0, 0.03, 0.10, 0.12, 0.30, 0.31, 0.50, 0.72, 0.73, 0.90]
    level = {round(t, 3): 20 * k for k, t in enumerate(pts)}
    path = tmp_path / f"vfr.{suffix}"
    _write_video(path, lambda t: np.full((48, 64, 3), level[round(t, 3)], np.uint8), pts, codec=codec, size=(64, 48))
    times = np.arange(13) * 0.1  # centres 0.05, 0.15, ..., 1.25
    got = {i: (None if img is None else int(np.median(img))) for i, img in frames_at(path, times)}
    # nearest frame to each centre; the last frame (0.90) lasts one interval
    # (0.17 s) to 1.07; centres more than half an interval later (> 1.155) are masked
    expected = [0.03, 0.12, 0.30, 0.31, 0.50, 0.50, 0.72, 0.73, 0.90, 0.90, 0.90, 0.90, None]
    assert sorted(got) == list(range(13))
    for i, t in enumerate(expected):
        if t is None:
            assert got[i] is None, i
        else:
            assert got[i] is not None and abs(got[i] - level[t]) <= 4, (i, got[i], level[t])


def test_frames_at_is_lazy_and_handles_unsorted_times(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    _write_video(path, lambda t: np.full((48, 64, 3), int(t * 100), np.uint8), _grid(1.0, 10), size=(64, 48))
    gen = frames_at(path, [0.52, 0.01, 0.23])  # centres 0.57, 0.06, 0.28
    first = next(gen)
    assert first[0] == 1 and first[1].shape == (48, 64, 3) and first[1].dtype == np.uint8
    assert abs(int(np.median(first[1])) - 10) <= 3
    rest = dict(gen)
    assert sorted(rest) == [0, 2]
    assert abs(int(np.median(rest[0])) - 60) <= 3 and abs(int(np.median(rest[2])) - 30) <= 3
    gray = dict(frames_at(path, [0.3], pixel_format="gray"))
    assert gray[0].shape == (48, 64)


def _bad_files(tmp_path: Path) -> list[tuple[Path, str]]:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(1).bytes(20000))
    audio_only = tmp_path / "audio_only.wav"
    import soundfile as sf

    sf.write(audio_only, np.zeros(1600, np.float32), 16000)
    return [
        (tmp_path / "missing.mp4", "not found"),
        (empty, "empty"),
        (corrupt, "corrupt"),
        (audio_only, "no video stream"),
    ]


def test_bad_video_files_raise_data_error_naming_the_file(tmp_path: Path) -> None:
    for path, what in _bad_files(tmp_path):
        for call in (
            lambda: probe_video(path),
            lambda: list(frames_at(path, [0.0])),
            lambda: extract_faces(path, [0.0]),
        ):
            with pytest.raises(DataError, match=what) as err:
                call()
            assert path.name in str(err.value)


# ---------------------------------------------------------------- detector, crops, selection


def test_haar_detects_the_astronaut_face() -> None:
    img = skimage.data.astronaut()  # 512 × 512, face at about (177, 66, 95, 95)
    boxes = HaarFaceDetector(detect_width=320).detect(img)
    assert boxes.shape == (1, 4) and boxes.dtype == np.float32
    x, y, w, h = boxes[0]
    assert abs(x + w / 2 - 224) < 15 and abs(y + h / 2 - 113) < 15 and 70 < w < 125
    assert len(HaarFaceDetector().detect(_background())) == 0
    both = HaarFaceDetector(cascades=("default", "profile")).detect(img)
    assert len(both) == 1  # merged, not duplicated


def test_crop_face_pads_by_replicating_edges() -> None:
    img = np.zeros((40, 60, 3), np.uint8)
    img[:, :, 0] = np.arange(60)[None, :]  # red rises to the right
    img[:, :, 1] = np.arange(40)[:, None]  # green rises downwards
    crop = crop_face(img, (50, 30, 20, 20), size=30, margin=0.25)  # square 45 - 75 × 25 - 55
    assert crop.shape == (30, 30, 3)
    assert (crop[:, -5:, 0] == 59).all() and (crop[-5:, :, 1] == 39).all()
    inner = crop_face(img, (20, 10, 20, 20), size=20, margin=0.0)
    np.testing.assert_array_equal(inner, img[10:30, 20:40])


def test_i420_crop_matches_rgb_crop(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    _write_video(path, _moving_face, _grid(0.2, 10))
    yuv = dict(frames_at(path, [0.0], pixel_format="yuv420p"))[0]
    rgb = dict(frames_at(path, [0.0]))[0]
    for box in [(100, 80, 90, 90), (-20, 5, 41, 41), (455, 331, 51, 51)]:
        a = _crop_face_i420(yuv, box, size=48, margin=0.25).astype(int)
        b = crop_face(rgb, box, size=48, margin=0.25).astype(int)
        assert np.abs(a - b).max() <= 6


def test_selector_rules() -> None:
    big, small, far = [10, 10, 100, 100], [300, 10, 50, 50], [500, 300, 60, 60]
    sel = TargetSelector(select="track", smooth=0.0)
    boxes = np.array([small, big], np.float32)
    assert sel.choose(0.0, boxes) == 1  # starts with the largest
    sel.update(0.0, boxes[1])
    # a larger face elsewhere does not steal the target; the target moved a bit
    moved = [30, 20, 100, 100]
    assert sel.choose(0.1, np.array([[0, 0, 200, 200], moved], np.float32)) == 1
    assert sel.choose(0.2, np.array([far], np.float32)) is None  # too far: masked
    assert sel.choose(1.0, np.array([far], np.float32)) is None  # gap of 1.0 s: still waiting
    assert sel.choose(1.15, np.array([far, small], np.float32)) == 0  # gap > 1 s: largest again
    largest = TargetSelector(select="largest")
    assert largest.choose(0.0, np.array([small, far, big], np.float32)) == 2
    ema = TargetSelector(select="track", smooth=0.5)
    ema.update(0.0, np.array([0, 0, 100, 100]))
    np.testing.assert_allclose(ema.update(0.1, np.array([20, 0, 100, 100])), [10, 0, 100, 100])


# ---------------------------------------------------------------- extract_faces


def _centres(track_boxes: np.ndarray) -> np.ndarray:
    return track_boxes[:, :2] + track_boxes[:, 2:] / 2


def test_extract_faces_follows_a_moving_face(tmp_path: Path) -> None:
    path = tmp_path / "moving.mp4"
    _write_video(path, _moving_face, _grid(3.0, 15))
    times = np.arange(30) * 0.1
    track = extract_faces(path, times, size=64, scan_every=1.0)
    assert track.crops.shape == (30, 64, 64, 3) and track.crops.dtype == np.uint8
    assert track.mask.all(), track.report
    r = track.report
    assert (r["n_frames"], r["n_faces_found"], r["n_missing"], r["n_beyond_video"]) == (30, 30, 0, 0)
    assert r["n_full_scans"] >= 3 and r["n_local_searches"] > 0
    # the face is where it was pasted (the video frame nearest the frame centre)
    for i in range(30):
        frame_t = round((times[i] + 0.05) * 15) / 15
        x, y, side = _moving_pos(frame_t)
        cx, cy = x + _FACE_CX * side, y + _FACE_CY * side
        bx, by = _centres(track.boxes)[i]
        assert abs(bx - cx) < 12 and abs(by - cy) < 12, (i, bx, by, cx, cy)
        assert 0.75 * _FACE_SIDE * side < track.boxes[i, 2] < 1.3 * _FACE_SIDE * side
    # the crop shows the face: it is detected again in the crop
    assert len(HaarFaceDetector(min_face=0.3).detect(track.crops[10])) == 1


def _two_faces_scene(second_from: float) -> Scene:
    """A medium face on the left throughout; a larger face on the right from ``second_from`` on."""

    def scene(t: float) -> np.ndarray:
        img = _background()
        _paste(img, 20 + int(10 * t), 80, 170)
        if t >= second_from:
            _paste(img, 240, 60, 230)
        return img

    return scene


def test_two_faces_track_keeps_the_first_target(tmp_path: Path) -> None:
    path = tmp_path / "two.mp4"
    _write_video(path, _two_faces_scene(1.0), _grid(2.0, 15))
    times = np.arange(20) * 0.1
    track = extract_faces(path, times, select="track", scan_every=0.5)
    assert track.mask.all(), track.report
    assert (_centres(track.boxes)[:, 0] < 240).all()  # always the left face
    assert track.report["n_multiple"] > 0
    largest = extract_faces(path, times, select="largest", scan_every=0.0)
    assert largest.mask.all()
    cx = _centres(largest.boxes)[:, 0]
    assert (cx[:10] < 240).all() and (cx[10:] > 240).all()  # switches when the larger appears
    assert largest.report["n_multiple"] >= 9


def test_two_faces_from_the_start_pick_the_larger_consistently(tmp_path: Path) -> None:
    path = tmp_path / "two0.mp4"
    _write_video(path, _two_faces_scene(0.0), _grid(2.0, 15))
    track = extract_faces(path, np.arange(20) * 0.1)
    assert track.mask.all()
    assert (_centres(track.boxes)[:, 0] > 240).all()


def test_frames_without_face_are_masked_and_counted(tmp_path: Path) -> None:
    def scene(t: float) -> np.ndarray:
        return _background() if 1.0 <= t < 1.5 else _moving_face(t)

    path = tmp_path / "gap.mp4"
    _write_video(path, scene, _grid(2.0, 15))
    times = np.arange(24) * 0.1  # the last 3 frames lie beyond the 2 s video
    track = extract_faces(path, times)
    gone = (times + 0.05 >= 1.0 - 1 / 30) & (times + 0.05 < 1.5 - 1 / 30)
    beyond = times + 0.05 > 2.0 + 0.5 / 15
    assert not track.mask[gone | beyond].any()
    assert track.mask[~gone & ~beyond].all(), track.report
    assert np.isnan(track.boxes[~track.mask]).all() and not np.isnan(track.boxes[track.mask]).any()
    assert (track.crops[~track.mask] == 0).all()
    r = track.report
    assert r["n_missing"] == int(gone.sum()) and r["n_beyond_video"] == int(beyond.sum())
    assert r["n_faces_found"] + r["n_missing"] + r["n_beyond_video"] == r["n_frames"] == 24


def test_no_face_anywhere(tmp_path: Path) -> None:
    path = tmp_path / "noface.mp4"
    _write_video(path, lambda t: _background(), _grid(1.0, 10))
    with pytest.raises(DataError, match="no face found") as err:
        extract_faces(path, np.arange(10) * 0.1)
    assert "noface.mp4" in str(err.value)
    track = extract_faces(path, np.arange(10) * 0.1, on_no_face="mask")
    assert not track.mask.any() and track.report["n_missing"] == 10
    assert (track.crops == 0).all() and np.isnan(track.boxes).all()


def test_grey_crops_are_the_luma_of_the_colour_crops(tmp_path: Path) -> None:
    """faces.grey: the same boxes, each crop its BT.601 luma in all three channels."""
    import cv2

    from mmaffect.preprocess.faces import grey_crop

    path = tmp_path / "moving.mp4"
    _write_video(path, _moving_face, _grid(1.0, 15))
    times = np.arange(10) * 0.1
    colour = extract_faces(path, times, size=48)
    grey = extract_faces(path, times, size=48, grey=True)
    assert np.array_equal(colour.mask, grey.mask) and np.allclose(colour.boxes, grey.boxes, equal_nan=True)
    g = grey.crops[grey.mask]
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    luma = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in colour.crops[colour.mask]])
    assert np.array_equal(g[..., 0], luma)
    assert np.array_equal(grey_crop(colour.crops[0]), grey.crops[0])


def test_absent_scan_every_finds_what_every_frame_scans_find(tmp_path: Path) -> None:
    """absent_scan_every: while no face is in view, full scans run 0.3 s apart; the frames between are
    decided by the next scan (scanned in order when it finds a face), so onsets, crops and boxes equal
    the exhaustive scan's; only a face shown briefly between two scans would be missed."""

    def scene(t: float) -> np.ndarray:  # face, 2 s gone, face again, 0.7 s gone, face
        img = _background()
        if not (0.5 <= t < 2.5 or 3.3 <= t < 4.0):
            _paste(img, int(80 + 10 * t), 40, 180)
        return img

    path = tmp_path / "gaps.mp4"
    _write_video(path, scene, _grid(5.0, 15))
    times = np.arange(50) * 0.1
    every = extract_faces(path, times, size=32)
    sparse = extract_faces(path, times, size=32, absent_scan_every=0.3)
    np.testing.assert_array_equal(sparse.mask, every.mask)
    np.testing.assert_array_equal(sparse.crops, every.crops)
    np.testing.assert_array_equal(sparse.boxes, every.boxes)
    assert every.report["n_not_scanned"] == 0 < sparse.report["n_not_scanned"]
    assert sparse.report["n_full_scans"] < every.report["n_full_scans"]
    assert sparse.report["n_missing"] == every.report["n_missing"]
    with pytest.raises(ValueError, match="absent_scan_every"):
        extract_faces(path, times, absent_scan_every=-1.0)


def test_absent_scan_every_comes_from_the_faces_config() -> None:
    """prepare.yaml's faces.absent_scan_every reaches the tracker; checkpoints that predate the key keep
    scanning every frame without a face (what their training data had)."""
    from mmaffect.inference.predictor import _legacy_prepare_config
    from mmaffect.preprocess.pipeline import resolve_prepare_config
    from mmaffect.preprocess.stream import face_options

    assert face_options(resolve_prepare_config({})["faces"])["absent_scan_every"] == 0.3
    old = {"faces": {"size": 48}, "audio": {}}
    assert face_options(resolve_prepare_config(_legacy_prepare_config(old))["faces"])["absent_scan_every"] == 0.0


def test_detector_overrides_are_checked() -> None:
    from mmaffect.errors import ConfigError
    from mmaffect.preprocess.faces import with_detector

    faces = {"size": 96, "margin": 0.25, "min_face": 0.12, "detect_width": 320}
    assert with_detector(faces) == faces and with_detector(faces, detect_width=640)["min_face"] == 0.12
    for bad in ({"min_face": 0.0}, {"min_face": 1.5}, {"detect_width": 10}, {"detect_width": 320.5}):
        with pytest.raises(ConfigError):
            with_detector(faces, **bad)


def test_cached_face_streams_of_phone_videos_get_a_new_key(tmp_path: Path) -> None:
    # crops cached before frames were turned upright came from sideways frames: their key changes,
    # the keys of every other video stay as they were
    from mmaffect.preprocess.pipeline import _upright_key

    _write_video(tmp_path / "plain.mp4", _moving_face, _grid(0.5, 15))
    _write_video(tmp_path / "phone.mp4", _moving_face, _grid(0.5, 15), rotation=270)
    assert _upright_key(tmp_path / "plain.mp4") == {} and _upright_key(tmp_path / "phone.mp4") == {"rotation": 270}
