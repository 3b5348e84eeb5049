"""The README's main job, end to end on a tiny corpus: synth → prepare → train → tables."""

from __future__ import annotations

import math

from mmaffect.demo import DEMO_MODEL, run_demo
from mmaffect.training.study import run_study


def test_demo_runs_end_to_end(tmp_path, capsys):
    summary = run_demo(tmp_path, quick=True)
    out = capsys.readouterr().out
    assert summary["sessions"] == 4
    scores = summary["study"].scores[DEMO_MODEL]
    assert set(scores) == {"devel", "test"}
    assert all(math.isfinite(v) for d in scores["devel"].values() for v in d)
    assert f"| {DEMO_MODEL} |" in out and "CCC on the devel partition" in out
    run = tmp_path / "runs" / DEMO_MODEL
    assert (run / "best.pt").exists() and (run / "config.yaml").exists() and (run / "log.csv").exists()


def test_study_trains_unimodal_then_fusions_and_reuses_runs(tmp_path):
    run_demo(tmp_path, quick=True, train=False)
    fusions = ("fusion-crossmodal-hierarchical",)
    kwargs = dict(cache=tmp_path / "cache", out=tmp_path / "runs", fusions=fusions, partitions=("devel", "test"),
                  overrides=["optim.epochs=1"], log=lambda *_: None)
    study = run_study(**kwargs)
    assert list(study.scores) == ["text-paper", "audio-tzirakis2018", "visual-hrnet3-attpool", *fusions]
    assert "| fusion-crossmodal-hierarchical |" in study.table("devel")
    # the fusion run was initialised from the unimodal checkpoints (Section 5.3)
    import yaml

    cfg = yaml.safe_load((tmp_path / "runs" / "seed0" / fusions[0] / "config.yaml").read_text())
    assert cfg["init_from"]["audio"].endswith("audio-tzirakis2018/best.pt")
    # a second call reuses the finished runs and gives the same scores
    assert run_study(**kwargs).scores == study.scores
