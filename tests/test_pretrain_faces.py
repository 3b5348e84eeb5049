"""`mmaffect pretrain-faces`: FER+ reading, augmentation, training that learns, init of a multimodal branch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mmaffect.cli import main
from mmaffect.data.sources import shared_data_root
from mmaffect.errors import ConfigError, DataError
from mmaffect.training.faces import (
    FERPLUS_CATEGORIES,
    augment_faces,
    evaluate_faces,
    load_ferplus_split,
    load_pretrain_config,
    pretrain_faces,
    resize_faces,
)

COLUMNS = [*FERPLUS_CATEGORIES, "unknown", "NF"]
TINY = ["model_options.widths=[4,8,16]", "model_options.stem_channels=8", "model_options.blocks=1",
        "model_options.n_attention_classes=16", "model_options.image_size=32"]


def _faces(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable toy faces: happiness = a bright upper half, sadness = a bright lower half."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, size=(n, 48, 48)).astype(np.uint8)
    votes = np.zeros((n, len(COLUMNS)), dtype=np.uint8)
    happy = np.arange(n) % 2 == 0
    images[happy, :20] += 150
    images[~happy, 28:] += 150
    votes[happy, 1] = 8
    votes[~happy, 3] = 8
    votes[:, 0] = 2  # a minority of neutral votes everywhere
    return images, votes


def _write(folder: Path, n_train: int = 96, n_valid: int = 48) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", n_train, 0), ("valid", n_valid, 1)):
        images, votes = _faces(n, seed)
        np.savez(folder / f"ferplus_{split}.npz", images=images, votes=votes, columns=np.array(COLUMNS),
                 names=np.array([f"{split}{i:05d}.png" for i in range(n)]))
    return folder


def test_load_drops_unknown_and_nf_majorities(tmp_path):
    images, votes = _faces(6, 0)
    votes[2] = 0
    votes[2, 8] = 5  # majority unknown
    votes[3, 9] = 9  # majority NF
    votes[4, 1] = 4
    votes[4, 4] = 4  # a tie happiness / anger: kept, both count as right
    np.savez(tmp_path / "f.npz", images=images, votes=votes, columns=np.array(COLUMNS))
    faces = load_ferplus_split(tmp_path / "f.npz")
    assert len(faces) == 4 and faces.dropped == 2
    np.testing.assert_allclose(faces.target.sum(axis=1), 1.0, rtol=1e-6)
    tie = faces.top[2]  # the 5th face is the 3rd kept
    assert tie[1] and tie[4] and tie.sum() == 2
    # proxy = vote-weighted mean of the table's points, in (arousal, valence) order
    np.testing.assert_allclose(faces.proxy[0], [0.8 * 0.5 + 0.2 * 0.0, 0.8 * 0.8], atol=1e-9)
    assert load_ferplus_split(tmp_path / "f.npz", limit=2).images.shape == (2, 48, 48)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.npz"):
        load_ferplus_split(tmp_path / "missing.npz")
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 32, 32), np.uint8), votes=np.zeros((2, 10), np.uint8),
             columns=np.array(COLUMNS))
    with pytest.raises(DataError, match=r"bad.npz.*\(N, 48, 48\)"):
        load_ferplus_split(tmp_path / "bad.npz")
    np.savez(tmp_path / "cols.npz", images=np.zeros((2, 48, 48), np.uint8), votes=np.ones((2, 2), np.uint8),
             columns=np.array(["neutral", "happiness"]))
    with pytest.raises(DataError, match="cols.npz.*lack surprise"):
        load_ferplus_split(tmp_path / "cols.npz")


def test_resize_and_augment():
    images = torch.from_numpy(_faces(4, 0)[0])
    x = resize_faces(images, 48)
    assert x.shape == (4, 3, 48, 48) and float(x.min()) >= 0 and float(x.max()) <= 1
    # identity sampling at the same size reproduces the pixels
    torch.testing.assert_close(x[:, 0], images.float() / 255, atol=1e-5, rtol=0)
    still = augment_faces(images, 48, rotate=0, scale=0, translate=0, flip=False)
    torch.testing.assert_close(still, x)
    gen = torch.Generator().manual_seed(0)
    moved = augment_faces(images, 96, rotate=10, scale=0.1, translate=0.1, flip=True, generator=gen)
    assert moved.shape == (4, 3, 96, 96) and not torch.allclose(moved, resize_faces(images, 96))


def test_config_errors():
    with pytest.raises(ConfigError, match="visual model"):
        load_pretrain_config(None, ["model_name=audio-tzirakis2018"])
    with pytest.raises(ConfigError, match="unknown configuration key .model_options.nonsense"):
        load_pretrain_config(None, ["model_options.nonsense=1"])
    with pytest.raises(ConfigError, match="unknown configuration key"):
        load_pretrain_config({"epochs": 3})
    cfg = load_pretrain_config(None, ["model_name=visual-mobilenet", "optim.epochs=2"])
    assert cfg["optim"]["epochs"] == 2 and "head_hidden" not in cfg["model_options"]


def test_pretraining_learns_and_initialises_a_fusion_branch(tmp_path, capsys):
    data = _write(tmp_path / "ferplus")
    run = tmp_path / "run"
    code = main(["pretrain-faces", "--out", str(run), f"data.root={data}", "optim.epochs=6",
                 "optim.batch_size=16", "optim.lr=3e-3", "augment.rotate=0", *TINY])
    assert code == 0
    res = json.loads((run / "results.json").read_text())
    # 2 balanced classes: chance is 50 %; the toy faces are easy
    assert res["accuracy"] >= 0.9, res
    assert res["ccc_valence"] > 0.5 and res["epochs"] == 6 and res["train_faces"] == 96
    history = json.loads((run / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert "majority accuracy" in capsys.readouterr().out
    # a second run into the same folder is refused
    assert main(["pretrain-faces", "--out", str(run), f"data.root={data}", *TINY]) == 2

    from mmaffect.checkpoints import load_branch_weights
    from mmaffect.models.registry import create_model

    fusion = create_model("fusion-concat", embed_dim=16, image_size=32,
                          visual_options={"widths": (4, 8, 16), "stem_channels": 8, "blocks": 1,
                                          "n_attention_classes": 16})
    loaded = load_branch_weights(fusion, {"visual": run / "model.pt"})
    assert "visual-hrnet3-attpool" in loaded["visual"]
    state = torch.load(run / "model.pt", weights_only=True)["model"]
    torch.testing.assert_close(fusion.branches["visual"].stem[0][0].weight, state["branch.stem.0.0.weight"])
    # ... and the branch of a unimodal visual model, as `mmaffect train ... init_from.visual=` does
    from mmaffect.training.trainer import load_train_config

    options = [f"model_options.{k}" for k in ("widths=[4,8,16]", "stem_channels=8", "blocks=1",
                                               "n_attention_classes=16", "image_size=32")]
    cfg = load_train_config(None, ["model_name=visual-hrnet3-attpool", f"init_from.visual={run / 'model.pt'}",
                                   *options])
    visual = create_model("visual-hrnet3-attpool", **cfg["model_options"])
    load_branch_weights(visual, cfg["init_from"] and {"visual": cfg["init_from"]["visual"]})
    torch.testing.assert_close(visual.branch.stem[0][0].weight, state["branch.stem.0.0.weight"])
    with pytest.raises(ConfigError, match="has only visual"):
        load_train_config(None, ["model_name=visual-hrnet3-attpool", f"init_from.audio={run / 'model.pt'}"])


def test_time_budget_ends_the_schedule(tmp_path):
    data = _write(tmp_path / "ferplus", n_train=64, n_valid=16)
    cfg = load_pretrain_config(None, [f"data.root={data}", "optim.epochs=1000", "optim.budget_minutes=0.05",
                                      "optim.batch_size=16", *TINY])
    res = pretrain_faces(cfg, out=tmp_path / "run", progress=False)
    assert res["schedule_done"] == 1.0 and res["epochs"] < 1000 and res["wall_seconds"] < 30


def test_evaluate_counts_ties_as_right():
    class Fixed(torch.nn.Module):
        def forward(self, x):  # always "happiness"
            return torch.tensor([[0.0, 5.0, 0, 0, 0, 0, 0, 0]]).repeat(len(x), 1)

    from mmaffect.training.faces import FaceSet

    top = np.zeros((3, 8), bool)
    top[0, 1] = True
    top[1, [1, 4]] = True
    top[2, 3] = True
    faces = FaceSet(images=np.zeros((3, 48, 48), np.uint8), target=top / top.sum(1, keepdims=True),
                    top=top, proxy=np.zeros((3, 2)), names=["a", "b", "c"], dropped=0)
    scores = evaluate_faces(Fixed(), faces, size=48, device=torch.device("cpu"))
    assert scores["accuracy"] == pytest.approx(2 / 3)


@pytest.mark.skipif(shared_data_root() is None, reason="shared FER+ data absent")
def test_real_ferplus_files_load():
    root = shared_data_root() / "ferplus"
    faces = load_ferplus_split(root / "ferplus_valid.npz")
    assert len(faces) + faces.dropped == 3579 and faces.dropped > 0
    assert np.isfinite(faces.proxy).all() and faces.top.any(axis=1).all()


def test_benchmark_script_prints_the_table(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_ferplus_faces.py"
    data = _write(tmp_path / "ferplus")
    cmd = [sys.executable, str(script), "--quick", "--data", str(data), "--models", "visual-hrnet3-attpool"]
    proc = subprocess.run([*cmd, "--workdir", str(tmp_path / "work")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "work" / "results.json").read_text())
    assert rows[0]["model_name"] == "visual-hrnet3-attpool" and 0 <= rows[0]["accuracy"] <= 1
    assert "| visual-hrnet3-attpool |" in proc.stdout and "Goal (issue #6)" in proc.stdout
    inside = subprocess.run([*cmd, "--workdir", str(script.parents[1] / "runs-here")], capture_output=True, text=True)
    assert inside.returncode != 0 and "research-only data" in inside.stderr
    assert not (script.parents[1] / "runs-here").exists()
