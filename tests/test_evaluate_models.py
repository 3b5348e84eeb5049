"""`mmaffect evaluate` on checkpoint files, shipped models and labelled face images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mmaffect.cli import main
from mmaffect.errors import DataError
from mmaffect.inference.faces import evaluate_face_images, load_face_model, read_labelled_images

from conftest import one_line_error
from mmaffect.training.evaluate import evaluate_checkpoint, evaluate_run
from mmaffect.training.faces import FERPLUS_CATEGORIES, _proxy_points
from mmaffect.training.metrics import ccc

from test_predict_modalities import feat_data, needs_feat, tiny_checkpoint


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A labelled cache (2 devel recordings of 6 s) of the synthetic corpus, audio only (fast to prepare)."""
    from mmaffect.data.readers import read_corpus
    from mmaffect.data.writers.synthetic import synthesize
    from mmaffect.preprocess.pipeline import prepare

    root = tmp_path_factory.mktemp("evalcache")
    synthesize(root / "corpus", n_train=0, n_devel=2, n_test=0, duration=6.0, seed=5, progress=False)
    prepare(read_corpus(root / "corpus"), root / "cache",
            config={"faces": {"enabled": False}, "text": {"enabled": False}}, progress=False)
    return root / "cache"


def test_a_checkpoint_file_scores_like_its_run_folder(cache: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tiny_checkpoint(tmp_path / "audio.pt", "audio-tzirakis2018", seed=3)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(ckpt, run / "best.pt")
    from_file = evaluate_checkpoint(ckpt, cache=cache, partitions=["devel"], device="cpu")
    from_run = evaluate_run(run, cache=cache, partitions=["devel"], device="cpu", write=False)
    assert from_file.scores == from_run.scores and np.isfinite(from_file.scores["devel"]["mean"])
    capsys.readouterr()
    assert main(["evaluate", str(ckpt), "--cache", str(cache), "--partition", "devel", "--out",
                 str(tmp_path / "eval")]) == 0
    printed = capsys.readouterr().out
    s = from_file.scores["devel"]
    assert f"| devel | {s['arousal']:.3f} | {s['valence']:.3f} | {s['mean']:.3f} |" in printed
    scores = pd.read_csv(tmp_path / "eval" / "scores-audio.csv")
    assert set(scores["partition"]) == {"devel"} and len(scores) == 3
    assert len(list((tmp_path / "eval" / "predictions-audio" / "devel").glob("*.csv"))) == 2


def test_a_shipped_model_on_your_own_cache(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["evaluate", "pretrained:emodb-audio", "--cache", str(cache), "--partition", "devel"]) == 0
    out = capsys.readouterr().out
    assert "emodb_audio.pt" in out and "| devel |" in out
    report = evaluate_checkpoint("pretrained:emodb-audio", cache=cache, partitions=["devel"], device="cpu")
    pred = np.concatenate([p.pred for p in report.predictions["devel"]])
    gold = np.concatenate([p.gold for p in report.predictions["devel"]])
    assert report.scores["devel"]["arousal"] == pytest.approx(ccc(pred[:, 0], gold[:, 0]))


def test_evaluate_errors_are_one_line(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, ["evaluate", "pretrained:emodb-audio"])
    assert "give --cache" in err
    fusion = tiny_checkpoint(tmp_path / "fusion.pt", "fusion-hierarchical")
    err = one_line_error(capsys, ["evaluate", str(fusion), "--cache", str(cache)])
    assert "faces.size" in err  # tiny fusion: 32-pixel faces; the cache: 96
    err = one_line_error(capsys, ["evaluate", "pretrained:composite-fusion", "--cache", str(cache)])
    assert "faces.grey=True" in err  # the default model's face branch reads grey crops; the cache: colour
    err = one_line_error(capsys, ["evaluate", "pretrained:emobank-text", "--cache", str(cache)])
    assert "none of the inputs" in err and "text" in err
    err = one_line_error(capsys, ["evaluate", "pretrained:ferplus-hrnet3", "--cache", str(cache)])
    assert "--images" in err
    err = one_line_error(capsys, ["evaluate", "pretrained:emodb-audio", "--cache", str(cache),
                                   "--partition", "test"])
    assert "'test'" in err


@pytest.fixture()
def labelled(tmp_path: Path) -> Path:
    data = feat_data()
    assert data is not None
    root = tmp_path / "labelled"
    for category, files in {"happy": ["0-f15-hao-ph.jpg", "single_face.jpg"], "surprise": ["0-f1-su-ph.jpg"],
                            "anger": ["15-f13-anc-ph.jpg", "free-mountain-vector-01.jpg"]}.items():
        (root / category).mkdir(parents=True)
        for name in files:
            shutil.copy(data / name, root / category / name)
    return root


@needs_feat
def test_face_model_on_an_image_folder(labelled: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = load_face_model("pretrained:ferplus-hrnet3", device="cpu")
    result = evaluate_face_images(model, labelled)
    assert result.n_images == 5 and result.n_scored == 4  # the mountain has no face: counted, not scored
    frame = result.prediction.frame
    found = frame["face"].to_numpy().astype(bool)
    truth = [Path(f).parent.name for f in frame["file"]]
    truth = [{"happy": "happiness"}.get(t, t) for t in truth]
    hits = [t == e for t, e, m in zip(truth, frame["expression"], found) if m]
    assert result.scores["accuracy"] == pytest.approx(np.mean(hits))
    gold = np.array([_proxy_points()[FERPLUS_CATEGORIES.index(t)] for t, m in zip(truth, found) if m])
    va = frame.loc[found, ["arousal", "valence"]].to_numpy()
    assert result.scores["ccc_valence"] == pytest.approx(ccc(va[:, 1], gold[:, 1]))
    assert result.recall["happiness"] == (2, 1.0) and result.recall["surprise"] == (1, 1.0)
    assert set(result.recall) == {"happiness", "surprise", "anger"}
    capsys.readouterr()
    assert main(["evaluate", "pretrained:ferplus-hrnet3", "--images", str(labelled), "--out",
                 str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "| happiness | 2 | 1.000 |" in out and "1 without a face" in out
    saved = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert saved["accuracy"] == pytest.approx(result.scores["accuracy"])
    # a visual-only training run has no categories: its own arousal/valence against the proxy
    run = load_face_model(tiny_checkpoint(tmp_path / "visual.pt", "visual-hrnet3-attpool"), device="cpu")
    scored = evaluate_face_images(run, labelled)
    assert set(scored.scores) == {"ccc_arousal", "ccc_valence"} and not scored.recall and scored.n_scored == 4


@needs_feat
def test_face_model_on_a_votes_csv(labelled: Path, capsys: pytest.CaptureFixture[str]) -> None:
    votes = labelled / "votes.csv"
    votes.write_text("file,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF\n"
                     "happy/0-f15-hao-ph.jpg,1,9,0,0,0,0,0,0,0,0\n"
                     "surprise/0-f1-su-ph.jpg,0,0,7,0,0,0,3,0,0,0\n"
                     "happy/single_face.jpg,0,0,0,0,0,0,0,0,8,2\n")  # majority unknown: left out
    images = read_labelled_images(votes)
    assert len(images.paths) == 2 and images.dropped == 1
    result = evaluate_face_images(load_face_model("pretrained:ferplus-hrnet3", device="cpu"), votes)
    assert result.n_scored == 2 and result.scores["accuracy"] == 1.0
    # the gold proxy is vote-weighted: 0.7 surprise + 0.3 fear
    bad = labelled / "bad.csv"
    bad.write_text("file,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt\n"
                   "happy/0-f15-hao-ph.jpg,1,lots,0,0,0,0,0,0\n")
    with pytest.raises(DataError, match=r"bad\.csv: row 2: vote 'happiness' is 'lots'"):
        read_labelled_images(bad)
    (labelled / "pride").mkdir()
    shutil.copy(labelled / "surprise" / "0-f1-su-ph.jpg", labelled / "pride" / "x.jpg")
    err = one_line_error(capsys, ["evaluate", "pretrained:ferplus-hrnet3-demo", "--images", str(labelled)])
    assert "pride" in err and "not a FER+ category" in err
