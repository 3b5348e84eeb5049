"""Tests of mmaffect.preprocess.audio: loading, framing, target frames, interlocutor vector."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmaffect.data.session import Turn, frame_times
from mmaffect.errors import DataError
from mmaffect.preprocess.audio import (
    frame_audio,
    from_pcm16,
    interlocutor_vector,
    load_audio,
    target_frames,
    to_pcm16,
)

SR_IN = 44100


def _sine(seconds: float, rate: int, freqs: tuple[float, ...] = (220.0, 523.0)) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * sum(np.sin(2 * np.pi * f * t) for f in freqs)).astype(np.float32)


def _write_mp4_with_audio(path: Path, signal: np.ndarray, rate: int, *, with_video: bool = True) -> None:
    """Encode ``signal`` (mono float) as AAC in an mp4, optionally with a small video track."""
    out = av.open(str(path), "w")
    if with_video:
        vs = out.add_stream("mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    aus = out.add_stream("aac", rate=rate)
    aus.layout = "stereo"
    stereo = np.stack([signal, signal]).astype(np.float32)
    n = aus.codec_context.frame_size or 1024
    pts = 0
    for k in range(0, stereo.shape[1], n):
        chunk = np.ascontiguousarray(stereo[:, k : k + n])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
        frame.sample_rate = rate
        frame.pts = pts
        frame.time_base = Fraction(1, rate)
        pts += chunk.shape[1]
        for packet in aus.encode(frame):
            out.mux(packet)
    for packet in aus.encode():
        out.mux(packet)
    if with_video:
        seconds = len(signal) / rate
        for i in range(int(seconds * 10)):
            img = np.full((48, 64, 3), 100, np.uint8)
            for packet in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in vs.encode():
            out.mux(packet)
    out.close()


def _write_silent_video(path: Path) -> None:
    out = av.open(str(path), "w")
    vs = out.add_stream("mpeg4", rate=10)
    vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
    for _ in range(5):
        for packet in vs.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
            out.mux(packet)
    for packet in vs.encode():
        out.mux(packet)
    out.close()


# ---------------------------------------------------------------- load_audio


def test_load_wav_stereo_is_resampled_mean_of_channels(tmp_path: Path) -> None:
    left, right = _sine(1.0, SR_IN, (300.0,)), _sine(1.0, SR_IN, (700.0,))
    path = tmp_path / "a.wav"
    sf.write(path, np.stack([left, right], axis=1), SR_IN)
    y = load_audio(path, sample_rate=22050)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 22050) <= 1
    expected = (_sine(1.0, 22050, (300.0,)) + _sine(1.0, 22050, (700.0,))) / 2
    m = min(len(y), len(expected))
    # high-quality resampling: the analytic signal at 22,050 Hz is reproduced
    assert np.max(np.abs(y[200 : m - 200] - expected[200 : m - 200])) < 2e-3
    assert np.all(np.abs(y) <= 1.0)


def test_load_clips_to_unit_range(tmp_path: Path) -> None:
    path = tmp_path / "loud.flac"
    square = np.sign(np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)).astype(np.float32)
    sf.write(path, square * 0.999, 16000)
    y = load_audio(path, sample_rate=22050)  # resampling a square wave overshoots
    assert y.max() <= 1.0 and y.min() >= -1.0
    assert y.max() > 0.95


def test_audio_track_of_video_matches_wav(tmp_path: Path) -> None:
    signal = _sine(2.0, SR_IN)
    wav, mp4 = tmp_path / "s.wav", tmp_path / "s.mp4"
    sf.write(wav, signal, SR_IN)
    _write_mp4_with_audio(mp4, signal, SR_IN)
    a = load_audio(wav)
    b = load_audio(mp4)
    assert abs(len(a) - len(b)) < 0.05 * 22050  # AAC pads to whole 1,024-sample frames
    # AAC adds an encoder delay of at most a few frames: find the lag, then compare
    n = 22050
    seg_a = a[5000 : 5000 + n]
    xc = np.correlate(b[5000 : 5000 + n + 3000], seg_a, mode="valid")  # lags 0..3000
    best_lag = int(np.argmax(xc))
    best_corr = float(np.corrcoef(seg_a, b[5000 + best_lag : 5000 + best_lag + n])[0, 1])
    assert best_corr > 0.99, (best_lag, best_corr)


def test_video_without_audio_stream(tmp_path: Path) -> None:
    path = tmp_path / "silent.avi"
    _write_silent_video(path)
    with pytest.raises(DataError, match="no audio stream") as err:
        load_audio(path)
    assert "silent.avi" in str(err.value)


@pytest.mark.parametrize("name", ["x.wav", "x.mp4", "x.flac"])
def test_missing_empty_and_corrupt_files(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with pytest.raises(DataError, match="not found") as err:
        load_audio(path)
    assert name in str(err.value)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty") as err:
        load_audio(path)
    assert name in str(err.value)
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError) as err:
        load_audio(path)
    assert name in str(err.value)


def test_wav_with_zero_samples(tmp_path: Path) -> None:
    path = tmp_path / "zero.wav"
    sf.write(path, np.zeros((0,), np.float32), 16000)
    assert os.path.getsize(path) > 0
    with pytest.raises(DataError, match="no samples") as err:
        load_audio(path)
    assert "zero.wav" in str(err.value)


# ---------------------------------------------------------------- frame_audio


def test_frames_are_slices_starting_at_label_times() -> None:
    sr, F = 22050, 2205
    x = np.arange(sr * 2, dtype=np.float32) / (sr * 2)
    times = frame_times(15, start=0.3)
    frames, ok = frame_audio(x, times, sample_rate=sr, frame_samples=F)
    assert frames.shape == (15, F) and frames.dtype == np.float32
    assert ok.all()
    for i in (0, 7, 14):
        s = int(round(times[i] * sr))
        np.testing.assert_array_equal(frames[i], x[s : s + F])


def test_slightly_short_audio_is_padded_and_masked() -> None:
    sr, F = 1000, 100
    x = np.ones(950, np.float32)  # 0.95 s; frames up to 1.0 s → 0.05 s short
    frames, ok = frame_audio(x, frame_times(10), sample_rate=sr, frame_samples=F, max_short=0.1)
    assert ok.tolist() == [True] * 9 + [False]
    np.testing.assert_array_equal(frames[9, :50], 1.0)
    np.testing.assert_array_equal(frames[9, 50:], 0.0)


def test_audio_shorter_than_labels_is_an_error() -> None:
    sr, F = 1000, 100
    x = np.ones(700, np.float32)
    with pytest.raises(DataError, match="audio shorter than the labels") as err:
        frame_audio(x, frame_times(10), sample_rate=sr, frame_samples=F, max_short=0.1, path="rec.wav")
    msg = str(err.value)
    assert msg.startswith("rec.wav")
    assert "0.700 s" in msg and "1.000 s" in msg


def test_negative_times_rejected() -> None:
    with pytest.raises(DataError, match="negative"):
        frame_audio(np.ones(1000, np.float32), [-0.1, 0.0], sample_rate=1000, frame_samples=100)


# ---------------------------------------------------------------- target_frames


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        ((0.06, 0.24), [0.1, 0.2]),  # both ends round to the grid
        ((0.1, 0.3), [0.1, 0.2, 0.3]),  # end frame included
        ((0.15, 0.25), [0.2, 0.3]),  # halves round up
        ((0.14, 0.14), [0.1]),  # a very short turn still marks its frame
        ((0.0, 0.04), [0.0]),
        ((0.86, 5.0), [0.9]),  # beyond the last frame
    ],
)
def test_target_frames_rounding(turn: tuple[float, float], expected: list[float]) -> None:
    times = np.arange(10) * 0.1  # 0.30000000000000004 etc.: float noise must not matter
    got = times[target_frames(times, [turn], rounding=0.1)]
    np.testing.assert_allclose(got, expected)


def test_target_frames_turn_objects_none_and_errors() -> None:
    times = frame_times(10)
    mask = target_frames(times, [Turn(0.0, 0.1, "hallo"), Turn(0.52, 0.61)])
    assert np.flatnonzero(mask).tolist() == [0, 1, 5, 6]
    assert target_frames(times, None).all()
    assert not target_frames(times, []).any()
    with pytest.raises(DataError, match="end before start"):
        target_frames(times, [(0.5, 0.2)])


# ---------------------------------------------------------------- interlocutor vector, PCM


def test_interlocutor_vector_halves_numpy_and_torch() -> None:
    frames = np.arange(1, 13, dtype=np.float32).reshape(4, 3)
    target = np.array([True, False, False, True])
    v = interlocutor_vector(frames, target)
    assert v.shape == (4, 6)
    np.testing.assert_array_equal(v[0], [1, 2, 3, 0, 0, 0])
    np.testing.assert_array_equal(v[1], [0, 0, 0, 4, 5, 6])
    np.testing.assert_array_equal(v[:, :3][target], frames[target])
    np.testing.assert_array_equal(v[:, 3:][~target], frames[~target])
    tv = interlocutor_vector(torch.from_numpy(frames)[None], torch.from_numpy(target)[None])
    assert isinstance(tv, torch.Tensor) and tv.shape == (1, 4, 6)
    np.testing.assert_array_equal(tv[0].numpy(), v)
    iv = interlocutor_vector(to_pcm16(frames / 20), target)
    assert iv.dtype == np.int16


@settings(max_examples=50, deadline=None)
@given(arrays(np.float32, (3, 17), elements=st.floats(-1, 1, width=32)))
def test_pcm16_round_trip(x: np.ndarray) -> None:
    pcm = to_pcm16(x)
    assert pcm.dtype == np.int16
    back = from_pcm16(pcm)
    assert back.dtype == np.float32
    inside = x < 32767.5 / 32768  # +1.0 is one step above the largest int16 and clips to it
    assert np.max(np.abs(back - x)[inside], initial=0.0) <= 0.5 / 32768 + 1e-7
    assert np.max(np.abs(back - x)) <= 1 / 32768 + 1e-7


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 50),
    n=st.integers(1, 40),
    rate=st.sampled_from([8000, 16000, 22050]),
    extra=st.integers(0, 3000),
)
def test_frame_alignment_property(start: int, n: int, rate: int, extra: int) -> None:
    """Frame i holds exactly the samples [round(t_i * sr), +F) of the signal."""
    frame = rate // 10
    times = (start + np.arange(n)) / 10.0
    length = int(round(times[-1] * rate)) + frame + extra
    signal = (np.arange(length) % 30000).astype(np.float32) / 32768.0
    frames, valid = frame_audio(signal, times, sample_rate=rate, frame_samples=frame)
    assert frames.shape == (n, frame) and valid.all()
    for i, t in enumerate(times):
        first = int(round(t * rate))
        np.testing.assert_array_equal(frames[i], signal[first:first + frame])


def test_streaming_decode_matches_load_audio(tmp_path) -> None:
    """decode_audio_to_file (flat memory, used by predict) ≈ load_audio, for wav and for a video track."""
    import soundfile as sf

    from mmaffect.preprocess.audio import decode_audio_to_file, load_audio

    rng = np.random.default_rng(0)
    sr = 16000
    t = np.arange(int(2.5 * sr)) / sr
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * rng.standard_normal(len(t))], axis=1)
    src = tmp_path / "in.wav"
    sf.write(src, stereo.astype(np.float32), sr, subtype="FLOAT")
    n = decode_audio_to_file(src, tmp_path / "out.wav", sample_rate=22050, block=5000)
    got, rate = sf.read(tmp_path / "out.wav", dtype="float32")
    ref = load_audio(src, sample_rate=22050)
    assert rate == 22050 and n == len(got) == len(ref)
    assert np.max(np.abs(got - ref)) < 1e-3
    assert np.corrcoef(got, ref)[0, 1] > 0.9999
    assert not list(tmp_path.glob(".out.*")), "no temporary file is left behind"
    with pytest.raises(DataError, match="missing.wav"):
        decode_audio_to_file(tmp_path / "missing.wav", tmp_path / "x.wav")
