"""The README's main job, end to end on a tiny corpus: synth → prepare → study → tables."""

from __future__ import annotations

import math

from mmaffect.demo import run_demo
from mmaffect.training.study import run_study


def test_demo_runs_end_to_end_and_resumes(tmp_path, capsys):
    fusions = ("fusion-concat", "fusion-crossmodal-hierarchical")
    summary = run_demo(tmp_path, quick=True, fusions=fusions)
    out = capsys.readouterr().out
    assert summary["sessions"] == 4
    study = summary["study"]
    assert list(study.scores) == ["text-paper", "audio-tzirakis2018", "visual-hrnet3-attpool", *fusions]
    for model, parts in study.scores.items():
        assert set(parts) == {"devel", "test"}
        assert all(math.isfinite(v) for d in parts["devel"].values() for v in d), model
    assert "| fusion-crossmodal-hierarchical |" in out and "CCC on the devel partition" in out
    # every run kept its resolved config and checkpoints
    for model in study.scores:
        run = tmp_path / "runs" / "seed0" / model
        assert (run / "best.pt").exists() and (run / "config.yaml").exists()
    # a second study call reuses the finished runs (no retraining) and gives the same scores
    again = run_study(cache=tmp_path / "cache", out=tmp_path / "runs", fusions=fusions,
                      partitions=("devel", "test"), overrides=["optim.epochs=1"], log=lambda *_: None)
    assert again.scores == study.scores
