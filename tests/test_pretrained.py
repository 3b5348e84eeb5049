"""Shipped pretrained models: index, model card, pack, offline loading, default of `mmaffect predict`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import mmaffect
from mmaffect.cli import main
from mmaffect.errors import ConfigError
from mmaffect import checkpoints
from mmaffect.checkpoints import PREFIX, available, default_model, pack_checkpoint, resolve
from mmaffect.inference.pretrained import card_section
from mmaffect.inference.predictor import PRESENCE_COLUMNS, frames_without_input

SHIPPED = available()
PREDICT = sorted(n for n, m in SHIPPED.items() if m.kind == "predict")
BRANCH = sorted(n for n, m in SHIPPED.items() if m.kind == "branch")


def test_index_files_and_cards_agree():
    assert SHIPPED, "the package ships pretrained models"
    defaults = [m for m in SHIPPED.values() if m.default]
    assert len(defaults) == 1 and default_model() == defaults[0]
    for name, model in SHIPPED.items():
        assert model.path.is_file(), model.path
        assert model.path.stat().st_size < 8 * 2**20, "small enough to ship"
        card = card_section(name)
        assert "research" in card.lower() and "CCC" in card
        ckpt = torch.load(model.path, weights_only=True)
        assert ckpt["config"]["model_name"] == model.model_name and ckpt["optimizer"] is None
        if model.kind == "predict":
            assert ckpt["prepare_config"], "preprocessing parameters travel with the weights"


@pytest.mark.parametrize("name", BRANCH)
def test_shipped_branch_initialises_a_model(name):
    from mmaffect.checkpoints import load_branch_weights
    from mmaffect.models.registry import create_model

    model = SHIPPED[name]
    options = torch.load(model.path, weights_only=True)["config"]["model_options"]
    unimodal = create_model(model.model_name, **options)
    assert load_branch_weights(unimodal, {model.modalities[0]: PREFIX + name})
    # the whole-recording Predictor refuses it; mmaffect.load gives the face predictor (a classifier)
    from mmaffect.inference.faces import FacePredictor
    from mmaffect.inference.predictor import Predictor

    with pytest.raises(ConfigError, match=f"{name}.*branch model.*init_from"):
        Predictor.from_checkpoint(PREFIX + name)
    face = mmaffect.load(PREFIX + name, device="cpu")
    assert isinstance(face, FacePredictor) and face.classes is not None and len(face.classes) == 8


@pytest.mark.parametrize("name", PREDICT)
def test_shipped_model_predicts_offline(name, predict_media, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    predictor = mmaffect.load(PREFIX + name, device="cpu")
    video = predict_media["mp4"] if "visual" in predictor.modalities or "audio" in predictor.modalities else None
    frame = predictor.predict(video, audio=None if video else predict_media["wav"],
                              transcript=predict_media["transcript"])
    # values wherever the model had input (empty only before the first and > 2 s after the last)
    present = frame[[PRESENCE_COLUMNS[m] for m in predictor.modalities]].to_numpy().astype(bool).any(axis=1)
    values = frame[["arousal", "valence"]].to_numpy()
    empty = frames_without_input(present, 20)
    assert len(frame) > 50 and present.sum() > 20
    assert np.isfinite(values[~empty]).all() and np.isnan(values[empty]).all()


def test_predict_without_checkpoint_uses_the_default(predict_media, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MMAFFECT_CHECKPOINT", raising=False)
    out = tmp_path / "o"
    rc = main(["predict", str(predict_media["mp4"]), "--transcript", str(predict_media["transcript"]),
               "--out", str(out), "--no-figures", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(next(out.rglob("report.json")).read_text())
    assert report["checkpoint"] == str(default_model().path)
    assert mmaffect.load(device="cpu").source == str(default_model().path)


def test_a_transcript_alone_takes_its_own_default(predict_media, tmp_path, monkeypatch, capsys):
    """Without --checkpoint, a transcript alone is read by the model marked default_for transcript
    (on EmoBank's dev sentences CCC 0.433 / 0.645 where the fusion reads 0.086 / 0.152;
    docs/predict.md). Media, with or without the transcript, and a checkpoint chosen
    ($MMAFFECT_CHECKPOINT included): the multimodal default or the user's choice."""
    text_default = default_model("transcript")
    assert text_default.default_for == ("transcript",) and "text" in text_default.modalities
    assert text_default != default_model()
    monkeypatch.delenv("MMAFFECT_CHECKPOINT", raising=False)
    wav, words = str(predict_media["wav"]), ["--transcript", str(predict_media["transcript"])]
    runs = {"audio": [wav], "words": words, "both": [wav, *words]}
    used = {}
    for name, args in runs.items():
        out = tmp_path / name
        assert main(["predict", *args, "--out", str(out), "--no-figures", "--quiet"]) == 0
        used[name] = json.loads((out / "report.json").read_text())["checkpoint"]
    printed = capsys.readouterr().out
    assert used == {"audio": str(default_model().path), "words": str(text_default.path),
                    "both": str(default_model().path)}
    assert printed.count(f"a transcript alone: pretrained:{text_default.name}, its default model") == 1
    monkeypatch.setenv("MMAFFECT_CHECKPOINT", "pretrained:" + default_model().name)
    assert main(["predict", *words, "--out", str(tmp_path / "env"), "--no-figures", "--quiet"]) == 0
    assert json.loads((tmp_path / "env" / "report.json").read_text())["checkpoint"] == str(default_model().path)
    assert "its default model" not in capsys.readouterr().out


def test_resolve_and_errors(monkeypatch):
    assert resolve("runs/x/best.pt") == Path("runs/x/best.pt")
    with pytest.raises(ConfigError, match="no pretrained model 'nope'"):
        resolve("pretrained:nope")
    monkeypatch.setattr(checkpoints, "pretrained_folder", lambda: Path("/nonexistent"))
    assert available() == {} and default_model() is None



def test_default_for_is_checked(tmp_path, monkeypatch):
    entry = {"file": "x.pt", "kind": "predict", "model_name": "m", "modalities": ["audio"], "summary": "s",
             "default_for": ["podcast"]}
    (tmp_path / "index.json").write_text(json.dumps({"models": {"x": entry}}))
    monkeypatch.setattr(checkpoints, "pretrained_folder", lambda: tmp_path)
    with pytest.raises(ConfigError, match=r"x: default_for may list \('transcript',\), not \['podcast'\]"):
        available()


def test_cli_lists_and_prints_cards(capsys):
    assert main(["pretrained"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in SHIPPED) and "Research use only" in out
    name = default_model().name
    assert main(["pretrained", name]) == 0
    out = capsys.readouterr().out
    assert f"## {name}" in out and str(default_model().path) in out
    assert main(["pretrained", "nope"]) == 2


def test_pack_drops_optimizer_state_and_keeps_predictions(tmp_path):
    from mmaffect.models.registry import create_model
    from mmaffect.checkpoints import load_checkpoint, save_checkpoint

    model = create_model("audio-tzirakis2018", channels=(4, 4, 4), head_hidden=8)
    optimizer = torch.optim.Adam(model.parameters())
    model(  # one step so that the optimizer holds state
        {"audio": torch.randn(1, 3, 4410), "mask": torch.ones(1, 3, dtype=torch.bool)}
    ).pred.sum().backward()
    optimizer.step()
    cfg = {"model_name": "audio-tzirakis2018", "model_options": {"channels": [4, 4, 4], "head_hidden": 8}}
    save_checkpoint(tmp_path / "best.pt", model=model, optimizer=optimizer, scheduler=None, epoch=1, step=1,
                    best_score=0.5, best_epoch=1, stale_epochs=0, history=[], config=cfg,
                    prepare_config={"label_rate": 10.0})
    info = pack_checkpoint(tmp_path, tmp_path / "slim.pt")
    slim = load_checkpoint(tmp_path / "slim.pt")
    full = load_checkpoint(tmp_path / "best.pt")
    assert slim["optimizer"] is None and "rng" not in slim and info["bytes"] < (tmp_path / "best.pt").stat().st_size
    for k, v in full["model"].items():
        torch.testing.assert_close(slim["model"][k], v)
    save_checkpoint(tmp_path / "bare.pt", model=model, optimizer=None, scheduler=None, epoch=1, step=1,
                    best_score=0.5, best_epoch=1, stale_epochs=0, history=[], config=cfg, prepare_config=None)
    with pytest.raises(ConfigError, match="bare.pt.*preprocessing"):
        pack_checkpoint(tmp_path / "bare.pt", tmp_path / "x.pt")
