"""The README's main job, end to end on a tiny corpus: synth → prepare → train → Table-6-like comparison."""

from __future__ import annotations

import json
import math

import yaml

from mmaffect.cli import build_parser
from mmaffect.demo import DEMO_MODEL, QUICK_CORPUS, run_demo
from mmaffect.training.study import FUSIONS, UNIMODAL_MODELS, run_study


def test_demo_runs_the_study_and_prints_the_comparison(tmp_path, capsys):
    summary = run_demo(tmp_path, quick=True)
    out = capsys.readouterr().out
    assert summary["sessions"] == 4
    study = summary["study"]
    assert list(study.scores) == [*UNIMODAL_MODELS, *FUSIONS]
    for model, scores in study.scores.items():
        assert set(scores) == {"devel", "test"}, model
        assert all(len(v) == 1 and math.isfinite(v[0]) for d in scores.values() for v in d.values()), model
        assert f"| {model} |" in out
    assert "devel arousal" in out and "test valence" in out and "(a) " in out
    assert out.count("(b) fusion-") == len(FUSIONS) - 1  # each attention fusion against concatenation
    for model in (*UNIMODAL_MODELS, *FUSIONS):
        run = tmp_path / "runs" / "seed0" / model
        assert (run / "best.pt").exists() and (run / "config.yaml").exists() and (run / "log.csv").exists()
    # every fusion was initialised from the unimodal checkpoints of the same seed (Section 5.3)
    cfg = yaml.safe_load((tmp_path / "runs" / "seed0" / "fusion-concat" / "config.yaml").read_text())
    assert cfg["init_from"]["visual"].endswith("seed0/visual-hrnet3-attpool/best.pt")

    # A second seed: seed 0's runs are reused (same scores), seed 1's are trained; mean ± std over seeds.
    fusions = ("fusion-concat", "fusion-crossmodal-hierarchical")
    kwargs = dict(cache=tmp_path / "cache", out=tmp_path / "runs", fusions=fusions, seeds=(0, 1),
                  partitions=("devel",), overrides=["optim.epochs=1", "log.plot=false"], log=lambda *_: None)
    two = run_study(**kwargs)
    assert list(two.scores) == [*UNIMODAL_MODELS, *fusions]
    for m in two.scores:
        assert len(two.scores[m]["devel"]["mean"]) == 2
        assert two.scores[m]["devel"]["mean"][0] == study.scores[m]["devel"]["mean"][0], m
    assert (tmp_path / "runs" / "seed1" / "fusion-concat" / "best.pt").exists()
    table = two.comparison(("devel",))
    assert "mean ± std over seeds 0, 1" in table and " ± " in table.splitlines()[4]
    verdict = two.verdict("devel")
    assert verdict[0].startswith("(a) ") and verdict[1].startswith("(b) fusion-crossmodal-hierarchical")
    assert verdict[1].endswith(("yes", "no"))


def test_demo_single_model_and_corpus_of_another_size_is_rewritten(tmp_path, capsys):
    run_demo(tmp_path, quick=True, train=False)
    meta = json.loads((tmp_path / "corpus" / "synth.json").read_text())
    assert meta["parameters"]["duration"] == QUICK_CORPUS["duration"]
    # a stale corpus (other generator version) is rewritten and its runs are removed
    meta["version"] = 0
    (tmp_path / "corpus" / "synth.json").write_text(json.dumps(meta))
    (tmp_path / "runs" / "seed0" / "text-paper").mkdir(parents=True)
    capsys.readouterr()
    summary = run_demo(tmp_path, quick=True, single=True)
    out = capsys.readouterr().out
    assert "rewriting it" in out and not (tmp_path / "runs" / "seed0").exists()
    assert json.loads((tmp_path / "corpus" / "synth.json").read_text())["version"] != 0
    assert list(summary["study"].scores) == [DEMO_MODEL]
    assert (tmp_path / "runs" / "single" / "seed0" / DEMO_MODEL / "best.pt").exists()
    assert f"| {DEMO_MODEL} |" in out
    # a second call reuses the corpus
    run_demo(tmp_path, quick=True, train=False)
    assert "reusing the synthetic corpus" in capsys.readouterr().out


def test_demo_command_line_options():
    args = build_parser().parse_args(["demo", "--seeds", "0", "1", "2", "--workdir", "w"])
    assert args.seeds == [0, 1, 2] and not args.single and args.workdir == "w"
    assert build_parser().parse_args(["demo", "--single"]).single
    assert build_parser().parse_args(["demo"]).seeds == [0]
