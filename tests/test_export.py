"""ONNX export: parity of ONNX Runtime with eager PyTorch, streaming, dynamic axes, errors, CLI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mmaffect.errors import ConfigError
from mmaffect.inference.export import MODALITY_INPUTS, add_export_parser, export_onnx, onnx_feed
from mmaffect.models import create_model, get_spec, list_models, tiny_overrides
from mmaffect.models.summary import example_batch
from mmaffect.models.zoo import tiny_inputs
from mmaffect.checkpoints import build_model_from_checkpoint, save_checkpoint

ort = pytest.importorskip("onnxruntime")

PREPARE = {"label_rate": 10.0, "text": {"max_words": 5, "delay": 0.5}, "faces": {"size": 32}}
TOL = 1e-5
# Every registered variant (no list to edit: a newly registered network is tested here too).
BRANCHES = [n for n in list_models() if get_spec(n).kind == "branch"]
FUSIONS = [n for n in list_models() if get_spec(n).kind == "fusion"]
# Fixed-size ImageNet architectures (no tiny options): seconds each to trace and check.
HEAVY = {"visual-vgg16", "visual-resnet50", "visual-densenet121"}


def _shipped_predict_models() -> list[str]:
    from mmaffect.checkpoints import available

    return sorted(n for n, m in available().items() if m.kind == "predict")


def _marked(names, heavy):
    return [pytest.param(n, marks=pytest.mark.slow) if n in heavy else n for n in names]


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(1)


def _checkpoint(path: Path, name: str, **options) -> Path:
    """A tiny registered model with non-trivial batch-norm statistics, saved as a training checkpoint."""
    torch.manual_seed(0)
    opts = {**tiny_overrides(name), **options}
    model = create_model(name, **opts)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    config = {"model_name": name, "model_options": opts, "data": {"annotation_delay": 0.2}}
    save_checkpoint(path, model=model, optimizer=None, scheduler=None, epoch=3, step=30, best_score=0.25,
                    best_epoch=2, stale_epochs=1, history=[], config=config, prepare_config=PREPARE)
    return path


def _batch(name: str, *, batch: int, frames: int, seed: int, words: int | None = None) -> dict[str, torch.Tensor]:
    sizes = tiny_inputs(name)
    b = example_batch(sizes["modalities"], batch=batch, frames=frames, embed_dim=sizes["embed_dim"],
                      image_size=sizes["image_size"], words=words or sizes["words"],
                      frame_samples=sizes["frame_samples"], padded=True, seed=seed)
    if "audio" in sizes["modalities"]:
        b["audio_mask"] = torch.rand(batch, frames, generator=torch.Generator().manual_seed(seed)) > 0.3
    if "visual" in sizes["modalities"]:
        b.setdefault("face_mask", torch.ones(batch, frames, dtype=torch.bool))
    if "text" in sizes["modalities"] and frames > 3 and batch > 1:
        slots = b["word_mask"].shape[-1]
        b["word_mask"][1, 2] = torch.arange(slots) % 2 == 1  # real words that are not a prefix
        b["words"][1, 2] = torch.randn(slots, sizes["embed_dim"]) * b["word_mask"][1, 2, :, None]
        b["words"][1, 3], b["word_mask"][1, 3] = b["words"][1, 2], b["word_mask"][1, 2]  # a repeated turn
    # A frame with no modality at all (no words, no face, no audio).
    for key in ("audio_mask", "face_mask", "word_mask"):
        if key in b and frames > 1:
            b[key][0, 1] = False
    return b


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, batch) -> dict[str, np.ndarray]:
    names = [o.name for o in session.get_outputs()]
    feed = onnx_feed(batch, [i.name for i in session.get_inputs()])
    return dict(zip(names, session.run(names, feed)))


def _zeros(session, batch: int) -> tuple[np.ndarray, np.ndarray]:
    layers, _, hidden = next(i.shape for i in session.get_inputs() if i.name == "h0")
    z = np.zeros((layers, batch, hidden), dtype=np.float32)
    return z, z.copy()


def _eager(model, batch, state=None):
    with torch.no_grad():
        out, (h, c) = model.forward_frames(dict(batch), state)
    return {"pred": out.pred.numpy(), "h_n": h.numpy(), "c_n": c.numpy(),
            **{f"attention.{k}": v.numpy() for k, v in out.attention.items()}}


def _assert_close(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k].shape == v.shape, k
        np.testing.assert_allclose(got[k], v, atol=TOL, rtol=0, err_msg=k)


@pytest.mark.parametrize("name", _marked(BRANCHES, HEAVY))
def test_unimodal_model_and_branch_parity(tmp_path, name):
    ckpt = _checkpoint(tmp_path / "best.pt", name)
    report = export_onnx(ckpt, tmp_path / "onnx", parts=["all"])
    modality = tiny_inputs(name)["modalities"][0]
    assert set(report.files) == {"model", modality}
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        ["model.onnx", f"{modality}.onnx", "preprocessing.json"])  # no temporary files left behind
    assert report.max_abs_diff("model") < TOL and report.max_abs_diff(modality) < TOL

    model = build_model_from_checkpoint(torch.load(ckpt, weights_only=True)).eval()
    batch = _batch(name, batch=2, frames=6, seed=3)
    sess = _session(report.files["model"])
    h0, c0 = _zeros(sess, 2)
    _assert_close(_run(sess, {**batch, "h0": h0, "c0": c0}), _eager(model, batch))

    # The branch file: features, presence and attention of the eager branch.
    got = _run(_session(report.files[modality]), batch)
    with torch.no_grad():
        ref = model.branch(dict(batch))
    assert got["present"].dtype == np.bool_ and (got["present"] == ref.present.numpy()).all()
    np.testing.assert_allclose(got["features"], ref.features.numpy(), atol=TOL, rtol=0)
    assert (got["features"][~got["present"]] == 0).all()
    for k, v in ref.attention.items():
        np.testing.assert_allclose(got[f"attention.{k}"], v.numpy(), atol=TOL, rtol=0)

    meta = json.loads((tmp_path / "onnx" / "preprocessing.json").read_text())
    assert meta["model_name"] == name and meta["prepare_config"] == PREPARE
    assert meta["annotation_delay_s"] == pytest.approx(0.2) and meta["text_delay_s"] == 0.5
    assert meta["modalities"] == [modality] and meta["mmaffect_version"]
    inputs = meta["parts"]["model"]["inputs"]
    assert [i["name"] for i in inputs] == [i.name for i in sess.get_inputs()]
    assert [i["name"] for i in inputs] == [*MODALITY_INPUTS[modality], "mask", "h0", "c0"]
    assert {i["name"]: i["dtype"] for i in inputs}[MODALITY_INPUTS[modality][1]] == "bool"
    assert meta["parts"]["model"]["verification"]["max_abs_diff"]["pred"] < TOL


@pytest.mark.parametrize("name", FUSIONS)
def test_multimodal_parity(tmp_path, name):
    ckpt = _checkpoint(tmp_path / "best.pt", name)
    parts = ["all"] if name == "fusion-hierarchical" else ["model"]
    report = export_onnx(ckpt, tmp_path / "onnx", parts=parts)
    assert report.max_abs_diff("model") < TOL
    model = build_model_from_checkpoint(torch.load(ckpt, weights_only=True)).eval()
    batch = _batch(name, batch=2, frames=5, seed=5)
    sess = _session(report.files["model"])
    assert [i.name for i in sess.get_inputs()] == [
        "words", "word_mask", "audio", "audio_mask", "faces", "face_mask", "mask", "h0", "c0"]
    got = _run(sess, {**batch, **dict(zip(("h0", "c0"), _zeros(sess, 2)))})
    ref = _eager(model, batch)
    _assert_close(got, ref)
    assert any(k.startswith("attention.fusion.") for k in got) == (name != "fusion-concat")
    if name == "fusion-hierarchical":
        assert set(report.files) == {"model", "text", "audio", "visual"}
        for modality in ("text", "audio", "visual"):
            assert report.max_abs_diff(modality) < TOL
            branch_out = _run(_session(report.files[modality]), batch)
            with torch.no_grad():
                eager = model.branches[modality](dict(batch))
            np.testing.assert_allclose(branch_out["features"], eager.features.numpy(), atol=TOL, rtol=0)


@pytest.mark.parametrize("name", _shipped_predict_models())
def test_shipped_pretrained_model_parity(tmp_path, name):
    """Every shipped predict model (src/mmaffect/pretrained) exports with ONNX Runtime matching PyTorch."""
    report = export_onnx(f"pretrained:{name}", tmp_path / "onnx", parts=["all"], example_frames=3,
                         verify_batch=2, verify_frames=4)
    for part in report.files:
        assert report.max_abs_diff(part) < 1e-4, (part, report.parity[part])


def test_branch_choice_exports(tmp_path):
    """A fusion variant with other branches chosen by config (a non-default audio branch) exports too."""
    name = "fusion-hierarchical"
    options = tiny_overrides(name, {"audio_branch": "audio-li2019"})
    ckpt = _checkpoint(tmp_path / "best.pt", name, **options)
    report = export_onnx(ckpt, tmp_path / "onnx", parts=["model", "audio"])
    assert report.max_abs_diff("model") < TOL and report.max_abs_diff("audio") < TOL


def test_streaming_chunks_equal_one_pass(tmp_path):
    """Two chunks with the state carried through h0/c0 = one pass, in ONNX Runtime as in PyTorch."""
    name = "fusion-self-attention"
    ckpt = _checkpoint(tmp_path / "best.pt", name, head_layers=2)
    report = export_onnx(ckpt, tmp_path / "onnx", verify=False)
    assert report.parity == {}
    model = build_model_from_checkpoint(torch.load(ckpt, weights_only=True)).eval()
    sess = _session(report.files["model"])
    batch = _batch(name, batch=3, frames=9, seed=11)
    batch["mask"][:] = True
    batch["mask"][1, 7:] = False  # padding inside the second chunk
    batch["mask"][2, 5:] = False  # a sequence that ends with the first chunk: its state must be kept
    h0, c0 = _zeros(sess, 3)
    whole = _run(sess, {**batch, "h0": h0, "c0": c0})
    first = _run(sess, {**{k: v[:, :5] for k, v in batch.items()}, "h0": h0, "c0": c0})
    second = _run(sess, {**{k: v[:, 5:] for k, v in batch.items()}, "h0": first["h_n"], "c0": first["c_n"]})
    np.testing.assert_allclose(np.concatenate([first["pred"], second["pred"]], 1), whole["pred"], atol=TOL, rtol=0)
    np.testing.assert_allclose(second["h_n"], whole["h_n"], atol=TOL, rtol=0)
    np.testing.assert_allclose(second["c_n"], whole["c_n"], atol=TOL, rtol=0)
    np.testing.assert_array_equal(second["h_n"][:, 2], first["h_n"][:, 2])
    assert (whole["pred"][1, 7:] == 0).all() and whole["h_n"].shape == (2, 3, 8)
    ref = _eager(model, batch)
    np.testing.assert_allclose(whole["pred"], ref["pred"], atol=TOL, rtol=0)
    np.testing.assert_allclose(second["h_n"], ref["h_n"], atol=TOL, rtol=0)


def test_dynamic_batch_time_and_slots(tmp_path):
    """Traced on 2 × 3 frames with 5 word slots, run on other batch sizes, lengths and slot counts."""
    name = "text-paper"
    ckpt = _checkpoint(tmp_path / "best.pt", name)
    report = export_onnx(ckpt, tmp_path / "onnx", example_batch=2, example_frames=3, verify=False)
    model = build_model_from_checkpoint(torch.load(ckpt, weights_only=True)).eval()
    sess = _session(report.files["model"])
    for b, t, words in ((1, 12, 5), (4, 2, 3), (3, 1, 7)):
        batch = _batch(name, batch=b, frames=t, seed=b + t, words=words)
        h0, c0 = _zeros(sess, b)
        _assert_close(_run(sess, {**batch, "h0": h0, "c0": c0}), _eager(model, batch))


def test_bad_inputs_raise_config_error(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="not found"):
        export_onnx(tmp_path / "missing.pt", tmp_path / "out")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="junk.pt"):
        export_onnx(junk, tmp_path / "out")
    bare = tmp_path / "bare.pt"
    torch.save({"weight": torch.zeros(2)}, bare)
    with pytest.raises(ConfigError, match="not an mmaffect training checkpoint"):
        export_onnx(bare, tmp_path / "out")
    with pytest.raises(ConfigError, match="not an mmaffect training checkpoint"):
        export_onnx({"model": {}, "config": {}}, tmp_path / "out")

    ckpt = _checkpoint(tmp_path / "best.pt", "audio-tzirakis2018")
    with pytest.raises(ConfigError, match="no visual branch"):
        export_onnx(ckpt, tmp_path / "out", parts=["model", "visual"])
    with pytest.raises(ConfigError, match="unknown export part"):
        export_onnx(ckpt, tmp_path / "out", parts=["head"])
    state = torch.load(ckpt, weights_only=True)
    state["config"]["model_options"]["channels"] = [4, 6, 10]
    with pytest.raises(ConfigError, match="do not fit"):
        export_onnx(state, tmp_path / "out")
    with pytest.raises(ConfigError, match="differs from PyTorch"):
        export_onnx(ckpt, tmp_path / "out", tolerance=-1.0)  # a check that compares nothing would pass
    with pytest.raises(ConfigError, match="opset 3"):
        export_onnx(ckpt, tmp_path / "out", opset=3)
    assert list((tmp_path / "out").iterdir()) == []  # nothing unverified, no partial files

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"pip install mmaffect\[export\]"):
        export_onnx(ckpt, tmp_path / "out")


def test_cli_export(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="mmaffect")
    add_export_parser(parser.add_subparsers(dest="command", required=True))
    _checkpoint(tmp_path / "best.pt", "audio-tzirakis2018")
    # A run folder stands for its best.pt.
    args = parser.parse_args(["export", str(tmp_path), "--out", str(tmp_path / "onnx"), "--parts", "model,audio",
                              "--opset", "17"])
    args.func(args)
    out = capsys.readouterr().out
    assert "model.onnx" in out and "audio.onnx" in out and "preprocessing.json" in out
    assert out.count("max abs diff") == 2
    assert json.loads((tmp_path / "onnx" / "preprocessing.json").read_text())["opset"] == 17
    args = parser.parse_args(["export", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")])
    with pytest.raises(ConfigError, match="nope.pt"):
        args.func(args)
