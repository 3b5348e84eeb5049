"""Loudness normalisation, speech activity and training-time audio augmentation."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from mmaffect.errors import ConfigError
from mmaffect.preprocess.audio import apply_gain
from mmaffect.preprocess.loudness import LoudnessMeter, integrated_loudness, normalisation_gain_db
from mmaffect.preprocess.vad import energy_frames, segments_to_frames, silero_segments, speech_frames
from mmaffect.training.augment_audio import AudioAugment, AudioAugmentConfig, encode_decode, telephone

SR = 22050
EMODB = Path(os.environ.get("MMAFFECT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "emodb"


def _utterances(n: int) -> list[np.ndarray]:
    files = sorted((EMODB / "wav").glob("*.wav"))[:n]
    return [sf.read(str(f), dtype="float32")[0] for f in files]


needs_emodb = pytest.mark.skipif(not (EMODB / "wav").is_dir(), reason="EmoDB not in ../shared/data")


# --------------------------------------------------------------------------- loudness


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_loudness_equals_the_pyloudnorm_reference(rate: int) -> None:
    import pyloudnorm

    rng = np.random.default_rng(rate)
    # a level that changes over time, so that the gates matter
    x = rng.standard_normal(rate * 6) * np.repeat([0.2, 0.001, 0.05, 0.3, 0.0001, 0.1], rate)
    ref = pyloudnorm.Meter(rate).integrated_loudness(x)
    meter = LoudnessMeter(sample_rate=rate)
    for block in np.array_split(x, 7):  # blocks of odd sizes: the filter state carries over
        meter.add(block)
    assert meter.loudness() == pytest.approx(ref, abs=0.02)


@needs_emodb
def test_loudness_of_real_speech_equals_the_reference() -> None:
    import pyloudnorm

    for x in _utterances(5):
        assert integrated_loudness(x, sample_rate=SR) == pytest.approx(
            pyloudnorm.Meter(SR).integrated_loudness(x.astype(np.float64)), abs=1e-3)


def test_normalisation_removes_the_recording_gain() -> None:
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(SR * 3)).astype(np.float32)
    gain, lufs = normalisation_gain_db([x], sample_rate=SR, target=-23.0)
    quiet = apply_gain(x, -20.0)
    gain_q, lufs_q = normalisation_gain_db([quiet], sample_rate=SR, target=-23.0)
    assert lufs_q == pytest.approx(lufs - 20.0, abs=0.01) and gain_q == pytest.approx(gain + 20.0, abs=0.01)
    np.testing.assert_allclose(apply_gain(quiet, gain_q), apply_gain(x, gain), atol=2e-6)
    assert integrated_loudness(apply_gain(x, gain), sample_rate=SR) == pytest.approx(-23.0, abs=0.01)


def test_silence_and_too_short_audio_have_no_loudness() -> None:
    assert normalisation_gain_db([np.zeros(SR * 2, np.float32)], sample_rate=SR, target=-23.0) == (0.0, -math.inf)
    assert integrated_loudness(np.ones(SR // 4), sample_rate=SR) == -math.inf  # shorter than one 0.4-s block
    gain, lufs = normalisation_gain_db([np.ones(SR)], sample_rate=SR, target=None)  # off
    assert gain == 0.0 and math.isnan(lufs)
    # a faint hum (-67.5 LUFS) is not blown up by more than the limit; one below the -70 LUFS gate not at all
    hum = 6e-4 * np.sin(2 * np.pi * 1000 * np.arange(SR * 2) / SR)
    assert normalisation_gain_db([hum], sample_rate=SR, target=-23.0)[0] == 40.0
    assert normalisation_gain_db([hum / 100], sample_rate=SR, target=-23.0)[0] == 0.0


# --------------------------------------------------------------------------- speech activity


def test_digital_silence_is_no_speech_for_every_method() -> None:
    times = np.arange(30) / 10
    x = np.zeros(SR * 3, np.float32)
    frames = x.reshape(30, -1)
    assert not speech_frames("silero", times=times, blocks=[x], sample_rate=SR).any()
    assert not speech_frames("energy", times=times, frames=frames, sample_rate=SR, vad_db=-60.0).any()
    assert speech_frames("none", times=times, sample_rate=SR).all()
    with pytest.raises(ConfigError, match="audio.vad must be one of"):
        speech_frames("webrtc", times=times, sample_rate=SR)


def test_frames_need_half_their_length_inside_a_segment() -> None:
    t = np.arange(5) / 10
    assert segments_to_frames(t, [(0.05, 0.15)]).tolist() == [True, True, False, False, False]
    assert segments_to_frames(t, [(0.06, 0.14)]).tolist() == [False, False, False, False, False]
    assert segments_to_frames(t, [(0.0, 0.03), (0.07, 0.1)]).tolist()[0] is True  # two pieces, 0.06 s in all
    assert energy_frames(np.full((2, 10), 0.1), vad_db=-21.0).tolist() == [True, True]


@needs_emodb
def test_silero_finds_real_speech_between_silences_and_noise() -> None:
    rng = np.random.default_rng(1)
    voice = np.concatenate(_utterances(3))
    voice = voice[np.abs(voice) > 0][: SR * 4]  # the utterances without their zero padding
    noise = (0.003 * rng.standard_normal(SR * 2)).astype(np.float32)
    x = np.concatenate([np.zeros(SR * 2, np.float32), voice, noise])
    times = np.arange(len(x) // 2205) / 10
    # fed in small blocks, as predict reads a file
    speech = speech_frames("silero", times=times, blocks=np.array_split(x, 13), sample_rate=SR)
    assert not speech[:18].any()  # digital silence
    assert speech[22:58].mean() > 0.8  # the voice (2.0-6.0 s)
    assert not speech[62:].any()  # low noise
    # one block or many: the same segments
    assert silero_segments([x], sample_rate=SR) == silero_segments(np.array_split(x, 13), sample_rate=SR)


# --------------------------------------------------------------------------- augmentation


def _voice_like(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t))
    return (0.2 * env * np.sin(2 * np.pi * 180 * t + 3 * np.sin(2 * np.pi * 5 * t))).astype(np.float32)


@pytest.mark.parametrize("codec", ["aac", "mp3"])
def test_codec_round_trip_keeps_length_and_alignment(codec: str) -> None:
    x = _voice_like()
    y = encode_decode(x, sample_rate=SR, codec=codec, kbps=64)
    assert y.shape == x.shape and y.dtype == np.float32
    assert np.corrcoef(x, y)[0, 1] > 0.98  # aligned: the codec's delay is removed
    assert not np.array_equal(x, y)


def test_augmentation_is_reproducible_and_changes_the_signal() -> None:
    every = {"enabled": True, "p_room": 1.0, "p_noise": 1.0, "p_eq": 1.0, "p_gain": 1.0, "p_band": 1.0,
             "p_phone": 1.0, "p_codec": 1.0}
    aug = AudioAugment(config=AudioAugmentConfig.from_mapping(every), sample_rate=SR)
    x = _voice_like()
    a = aug(x, np.random.default_rng(5))
    b = aug(x, np.random.default_rng(5))
    c = aug(x, np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == x.shape and np.abs(a).max() <= 1.0 and not np.allclose(a, x, atol=1e-3)
    assert np.array_equal(aug(np.zeros(SR, np.float32), np.random.default_rng(0)), np.zeros(SR))  # silence stays


def test_telephone_keeps_the_voice_band_only() -> None:
    t = np.arange(SR * 2) / SR
    tones = {f: (0.2 * np.sin(2 * np.pi * f * t)).astype(np.float32) for f in (100, 1000, 6000)}
    out = {f: telephone(x, sample_rate=SR) for f, x in tones.items()}
    level = {f: float(np.sqrt(np.mean(y[SR // 4: -SR // 4] ** 2)) / np.sqrt(np.mean(tones[f] ** 2)))
             for f, y in out.items()}
    assert level[1000] > 0.9 and level[100] < 0.2 and level[6000] < 0.05, level  # 300-3400 Hz at 8 kHz
    assert all(y.shape == tones[f].shape and y.dtype == np.float32 for f, y in out.items())
    mid = slice(SR // 4, -SR // 4)
    assert 0 < np.abs(out[1000][mid] - tones[1000][mid]).max() < 0.05  # µ-law: 8-bit steps, in phase


def test_augmentation_config_errors_name_the_key() -> None:
    assert AudioAugmentConfig.from_mapping(None).enabled is False
    for bad, key in [({"p_noise": 2}, "p_noise"), ({"snr_db": [30, 10]}, "snr_db"), ({"codecs": ["ogg"]}, "codecs"),
                     ({"reverb": 1}, "reverb"), ({"gain_db": -3}, "gain_db"), ({"p_phone": 1.5}, "p_phone")]:
        with pytest.raises(ConfigError, match=key):
            AudioAugmentConfig.from_mapping(bad)


def test_dataset_augments_training_audio_only_and_keeps_masks(tmp_path: Path) -> None:
    from mmaffect.data.cache import Cache, write_stream
    from mmaffect.data.dataset import SessionWindows
    from mmaffect.preprocess.audio import to_pcm16

    n = 40
    frames = to_pcm16(_voice_like(n / 10).reshape(n, 2205))
    mask = np.arange(n) % 5 != 0
    root = tmp_path / "cache"
    cache = Cache(root)
    root.mkdir()
    audio = cache.stream_path("s", "audio", "k")
    labels = cache.stream_path("s", "labels", "l")
    times = np.arange(n) / 10
    write_stream(audio, {"times": times, "audio": frames, "audio_mask": mask, "audio_target": mask}, {})
    write_stream(labels, {"times": times, "labels": np.zeros((n, 2), np.float32),
                          "label_names": np.array(["arousal", "valence"], dtype=object)}, {})
    cache.write_manifest({"format_version": 1, "config": {}, "sessions": {"s": {"partition": "train", "n_frames": n, "streams": {
        "audio": str(audio.relative_to(root)), "labels": str(labels.relative_to(root)),
        "faces": None, "text": None}, "report": {}}}})
    session = cache.sessions()[0]
    aug = AudioAugment(config=AudioAugmentConfig.from_mapping({"enabled": True, "p_noise": 1.0}), sample_rate=SR)
    plain = SessionWindows([session], modalities=("audio",), window=20, seed=0)
    noisy = SessionWindows([session], modalities=("audio",), window=20, seed=0, audio_augment=aug)
    p, q = plain[0], noisy[0]
    assert not np.allclose(p["audio"].numpy(), q["audio"].numpy())
    assert np.array_equal(p["audio_mask"].numpy(), q["audio_mask"].numpy())
    np.testing.assert_array_equal(q["audio"].numpy(), noisy[0]["audio"].numpy())  # same epoch, same draw
    noisy.set_epoch(1)
    plain.set_epoch(1)
    assert not np.allclose(noisy[0]["audio"].numpy(), plain[0]["audio"].numpy())


def test_silero_leaves_torch_threads_alone() -> None:
    """silero_vad's import sets torch to one thread for the whole process; the networks that run after
    the speech detector (predict's models) must keep the thread count the caller chose."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(3)\n"
        "from mmaffect.preprocess.vad import speech_frames\n"
        "x = np.zeros(16000, np.float32)\n"
        "speech_frames('silero', times=np.arange(10) * 0.1, blocks=[x], sample_rate=16000)\n"
        "print(torch.get_num_threads())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "3", out.stderr


def test_silero_onnx_session_run_directly_equals_the_wrapper() -> None:
    """The ONNX session run directly gives the wrapper's probabilities and segments (same network, state and
    context), on a signal with speech-like bursts between noise."""
    pytest.importorskip("onnxruntime")
    import torch

    from mmaffect.preprocess import vad

    model = vad._silero_model()
    if not hasattr(model, "session"):
        pytest.skip("the TorchScript model is in use")
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 6) / 16000
    voiced = (np.sin(2 * np.pi * 3 * t) > 0.2) * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * t))
    x = (0.3 * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)[: 16000 * 6 - 100]
    model.reset_states()
    ref = [model(torch.from_numpy(x[i:i + 512]) if i + 512 <= len(x)
                 else torch.nn.functional.pad(torch.from_numpy(x[i:]), (0, i + 512 - len(x))), 16000).item()
           for i in range(0, len(x), 512)]
    np.testing.assert_allclose(vad._onnx_probs(model, x), ref, atol=1e-6)
    stamps = vad._silero().get_speech_timestamps(torch.from_numpy(x), model, sampling_rate=16000)
    assert vad._segments_16k(x, 0.5) == [(int(s["start"]), int(s["end"])) for s in stamps]
