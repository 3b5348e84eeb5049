"""One streaming preprocessor for ``prepare`` and ``predict`` (mmaffect.preprocess.stream, issue #14 item 3).

``prepare`` caches what :class:`AudioFrames` reads over the whole grid;
``predict`` reads the same frames a chunk at a time. Whatever the chunking,
the arrays are the same, so the two commands cannot drift.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmaffect.data.session import Session, Turn, frame_times
from mmaffect.errors import DataError
from mmaffect.preprocess.audio import decode_audio_to_file
from mmaffect.preprocess.pipeline import build_audio, resolve_prepare_config
from mmaffect.preprocess.stream import AudioFrames, face_options


def _recording(path: Path, rate: int = 16000, seconds: float = 4.0) -> Path:
    """Speech-like bursts between silences, at a rate that must be resampled."""
    t = np.arange(int(rate * seconds)) / rate
    on = (t % 2.0) < 1.2
    x = 0.3 * on * np.sin(2 * np.pi * 160 * t + 2 * np.sin(2 * np.pi * 4 * t))
    sf.write(path, x.astype(np.float32), rate)
    return path


@pytest.mark.parametrize("vad", ["energy", "silero"])
def test_prepare_and_chunked_predict_read_the_same_audio_arrays(tmp_path: Path, vad: str) -> None:
    cfg = resolve_prepare_config({"audio": {"vad": vad}})
    wav = _recording(tmp_path / "talk.wav")
    times = frame_times(40)
    turns = [Turn(0.2, 1.1, "")]
    cached, report = build_audio(Session("s", audio=wav, target_turns=turns), times, cfg, workdir=tmp_path)
    decoded = tmp_path / "decoded.wav"
    decode_audio_to_file(wav, decoded, sample_rate=cfg["audio"]["sample_rate"])
    with AudioFrames(decoded, times=times, audio=cfg["audio"], source=wav) as reader:
        parts = [reader.frames(s, min(40, s + 7), turns) for s in range(0, 40, 7)]  # predict's chunks
        summary = reader.summary(target_turns_known=True)
    for key in ("audio", "audio_mask", "audio_target", "audio_speech"):
        assert np.array_equal(np.concatenate([p[key] for p in parts]), cached[key]), key
    assert summary == report
    if vad == "energy":  # (Silero, a real speech detector, hears no speech in this tone)
        assert 0.3 < report["speech_fraction"] < 0.9  # the silences are heard as such
    assert not list(tmp_path.glob(".*.wav"))  # the decoded temporary file is gone


def test_audio_shorter_than_the_grid_is_refused_naming_the_recording(tmp_path: Path) -> None:
    cfg = resolve_prepare_config({"audio": {"vad": "energy"}})
    wav = _recording(tmp_path / "short.wav", seconds=2.0)
    with pytest.raises(DataError, match="audio shorter than the labels") as err:
        build_audio(Session("s", audio=wav), frame_times(30), cfg, workdir=tmp_path)
    assert str(wav) in str(err.value)


def test_face_options_read_every_tracker_setting_once() -> None:
    faces = resolve_prepare_config({"faces": {"size": 64, "grey": True}})["faces"]
    options = face_options(faces)
    assert options["size"] == 64 and options["grey"] is True
    import inspect

    from mmaffect.preprocess.faces import iter_faces

    assert set(options) <= set(inspect.signature(iter_faces).parameters)
