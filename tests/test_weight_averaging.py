"""Weight averaging (``optim.ema_decay``): an exponential moving average of the weights is what
devel scores, ``best.pt`` holds and ``predict`` uses; training itself is unchanged; a resumed run
continues both the trained and the averaged weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mmaffect.checkpoints import load_checkpoint
from mmaffect.cli import main as cli_main
from mmaffect.errors import ConfigError
from mmaffect.training.trainer import _averaged_model, train

from test_training import cache, plugin_dir, tiny_config  # noqa: F401  (fixtures)


def test_the_average_is_the_textbook_one() -> None:
    """e_1 = w_1, then e_t = d e_(t-1) + (1 - d) w_t, for parameters and buffers alike."""
    net = nn.BatchNorm1d(3)
    ema = _averaged_model(net, 0.75, None)
    assert ema is not None and _averaged_model(net, None, None) is None
    expected = None
    for t in range(5):
        with torch.no_grad():
            net.weight.copy_(torch.tensor([1.0, 2.0, 3.0]) * (t + 1))
            net.running_mean.fill_(float(t))
        ema.update_parameters(net)
        w = torch.cat([net.weight.detach().clone(), net.running_mean.clone()])
        expected = w if expected is None else 0.75 * expected + 0.25 * w
        got = torch.cat([ema.module.weight.detach(), ema.module.running_mean])
        assert torch.allclose(got, expected), t


def test_config_is_checked(plugin_dir: Path, cache: Path) -> None:  # noqa: F811
    for bad in ("1.0", "0", "-0.5", "fast"):
        with pytest.raises(ConfigError, match="optim.ema_decay"):
            tiny_config(cache, f"optim.ema_decay={bad}")
    assert tiny_config(cache)["optim"]["ema_decay"] is None


def test_training_is_unchanged_and_the_average_is_scored(plugin_dir: Path, cache: Path,  # noqa: F811
                                                        tmp_path: Path) -> None:
    plain = train(tiny_config(cache), out=tmp_path / "plain", progress=False)
    averaged = train(tiny_config(cache, "optim.ema_decay=0.9"), out=tmp_path / "ema", progress=False)
    a, b = load_checkpoint(tmp_path / "plain" / "last.pt"), load_checkpoint(tmp_path / "ema" / "last.pt")
    assert "training_model" not in a
    for k in a["model"]:  # the optimizer saw the same weights and batches
        assert torch.equal(a["model"][k], b["training_model"][k]), k
    assert any(not torch.equal(b["model"][k], b["training_model"][k]) for k in b["model"])
    assert b["ema_updates"] == plain.step == averaged.step
    assert [r["dev_mean"] for r in plain.history] != [r["dev_mean"] for r in averaged.history]
    # evaluate (hence predict) reads the averaged weights: its devel score is the one training logged
    run = tmp_path / "ema"
    assert cli_main(["evaluate", str(run), "--partition", "devel", "--checkpoint", "last"]) == 0
    import csv

    with open(run / "eval" / "scores-last.csv") as f:
        got = {r["dimension"]: float(r["ccc"]) for r in csv.DictReader(f) if r["partition"] == "devel"}
    assert got["mean"] == pytest.approx(averaged.history[-1]["dev_mean"], abs=1e-5)


def test_resume_continues_the_average(plugin_dir: Path, cache: Path, tmp_path: Path) -> None:  # noqa: F811
    full = train(tiny_config(cache, "optim.ema_decay=0.8"), out=tmp_path / "full", progress=False)
    stopped = tmp_path / "stopped"
    train(tiny_config(cache, "optim.ema_decay=0.8", "optim.epochs=1"), out=stopped, progress=False)
    with pytest.raises(ConfigError, match="optim.ema_decay"):
        train(tiny_config(cache, "optim.epochs=3"), out=stopped, resume=True, progress=False)
    resumed = train(tiny_config(cache, "optim.ema_decay=0.8", "optim.epochs=3"), out=stopped, resume=True,
                    progress=False)
    a, b = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(stopped / "last.pt")
    for key in ("model", "training_model"):
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), (key, k)
    assert a["ema_updates"] == b["ema_updates"]
    assert [r["dev_mean"] for r in full.history] == [r["dev_mean"] for r in resumed.history]
