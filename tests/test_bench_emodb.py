"""Smoke test of benchmarks/bench_emodb_audio.py --quick on the real EmoDB (skipped without it or opensmile).

Runs the whole benchmark path on a tiny subset (110 utterances, folds 08 and
10, one epoch of tiny networks): `mmaffect adapt` + `prepare`, the eGeMAPS
ridge / SVR baseline in its own process, `mmaffect train` / `mmaffect
evaluate` per fold and model, per-utterance scoring, and checks the printed
Markdown table (three rows of ours, two baseline rows, finite CCCs) and
results.json; a second invocation reuses every finished run.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmaffect.data.sources import shared_data_root

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_emodb_audio.py"
SPEAKER_NORM = SCRIPT.with_name("bench_emodb_speaker_norm.py")


def _bench_module(script: Path = SCRIPT):
    spec = importlib.util.spec_from_file_location(script.stem, script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_folds_never_select_on_the_test_speaker() -> None:
    folds = _bench_module().make_folds(["16", "08", "10", "11", "12", "13", "14", "15"], None)
    assert [f["test"] for f in folds] == ["08", "10", "11", "12", "13", "14", "15", "16"]
    assert [f["devel"] for f in folds] == ["10", "11", "12", "13", "14", "15", "16", "08"]
    for f in folds:
        assert f["test"] not in f["train"] and f["devel"] not in f["train"] and len(f["train"]) == 6


@pytest.fixture(scope="module")
def emodb() -> Path:
    root = shared_data_root()
    if root is None or not (root / "emodb" / "labels.csv").is_file():
        pytest.skip("shared research data (emodb/) not found "
                    "(set MMAFFECT_SHARED_DATA or place it at ../shared/data)")
    pytest.importorskip("opensmile")
    pytest.importorskip("sklearn")
    return root / "emodb"


def _tables(out: str) -> list[list[list[str]]]:
    """Every Markdown table of the output, as rows of cells (header and rule lines dropped)."""
    tables, current = [], None
    for line in out.splitlines():
        if line.startswith("|"):
            if current is None:
                current = []
                tables.append(current)
            elif not line.startswith("|---"):
                current.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            current = None
    return tables


def _rows(out: str) -> list[list[str]]:
    """The main table's rows of models (the goal row dropped)."""
    return [r for r in _tables(out)[0] if "goal" not in r[0]]


def _summary(pooled: dict[int, tuple[float, float]], folds: dict[int, dict[str, tuple[float, float]]]) -> dict:
    """A model's entry of results.json with the given per-seed pooled and per-fold (arousal, valence) CCCs."""
    per_seed = [{"arousal": {"pooled": pooled[s][0]}, "valence": {"pooled": pooled[s][1]},
                 "folds": {f: {"arousal": a, "valence": v} for f, (a, v) in folds[s].items()}} for s in sorted(pooled)]
    return {"seeds": sorted(pooled), "per_seed": per_seed} if len(per_seed) > 1 else {**per_seed[0], "seeds": [0]}


def test_compare_pairs_runs_by_seed_and_fold() -> None:
    mod = _bench_module()
    folds = ["08", "10", "11"]
    this = _summary({0: (0.7, 0.4), 1: (0.6, 0.2), 2: (0.9, 0.9)},
                    {0: {"08": (0.7, 0.5), "10": (0.8, 0.3), "11": (0.6, 0.1)},
                     1: {"08": (0.5, 0.3), "10": (0.6, 0.1), "11": (0.4, 0.3)},
                     2: {"08": (0.9, 0.9), "10": (0.9, 0.9), "11": (0.9, 0.9)}})
    other = _summary({0: (0.5, 0.3), 1: (0.5, 0.1)},  # seed 2 missing: compared on seeds 0 and 1 only
                     {0: {"08": (0.4, 0.5), "10": (0.6, 0.2), "11": (0.5, 0.2)},
                      1: {"08": (0.4, 0.1), "10": (0.5, 0.2), "11": (0.3, 0.2)}})
    cmp = mod.compare_runs(this, other, folds)
    assert cmp["seeds"] == [0, 1]
    assert cmp["this"]["arousal"]["pooled"] == pytest.approx(0.65)
    assert cmp["this"]["arousal"]["pooled_seed_std"] == pytest.approx(np.std([0.7, 0.6], ddof=1))
    assert {f: v["arousal"] for f, v in cmp["this"]["folds"].items()} == pytest.approx({"08": 0.6, "10": 0.7, "11": 0.5})
    assert {f: v["arousal"] for f, v in cmp["other"]["folds"].items()} == pytest.approx(
        {"08": 0.4, "10": 0.55, "11": 0.4})
    assert cmp["arousal"]["mean_diff"] == pytest.approx(np.mean([0.2, 0.15, 0.1]))
    assert cmp["arousal"]["higher"] == 3 and cmp["arousal"]["lower"] == 0
    assert cmp["arousal"]["pooled_diff"] == pytest.approx(0.15)
    # valence per fold: this 0.4, 0.2, 0.2; other 0.3, 0.2, 0.2 -> one higher, two ties
    assert (cmp["valence"]["higher"], cmp["valence"]["lower"]) == (1, 0)
    lines = mod.comparison_lines("audio-li2019", cmp, "long", "short")
    text = "\n".join(lines)
    assert "seeds 0, 1, 3 folds" in text and "higher on 3 and lower on 0 of 3 folds" in text
    tables = _tables(text)
    assert [r[0] for r in tables[0]] == ["long", "short"] and tables[0][0][1] == "0.650 ± 0.071"
    assert tables[1][0] == ["long", "0.600 / 0.400", "0.700 / 0.200", "0.500 / 0.200"]
    with pytest.raises(SystemExit, match="no seed in common"):
        mod.compare_runs(this, _summary({0: (0.1, 0.1)}, {0: {f: (0.1, 0.1) for f in folds}}) | {"seeds": [5]},
                         folds)


def test_recipe_option_names_each_models_training_yaml(tmp_path: Path) -> None:
    mod = _bench_module()
    models = ["audio-li2019", "audio-tzirakis2018"]
    default = mod.recipe_paths([], models)
    assert default == {m: mod.RECIPES / f"{m}.yaml" for m in models} and all(p.is_file() for p in default.values())
    speaker = mod.RECIPES / "audio-li2019-speaker.yaml"
    chosen = mod.recipe_paths([str(speaker)], models)
    assert chosen == {"audio-li2019": speaker, "audio-tzirakis2018": default["audio-tzirakis2018"]}
    assert mod._shown(speaker) == "recipes/emodb/audio-li2019-speaker.yaml"
    both = [str(speaker), str(mod.RECIPES / "audio-tzirakis2018-speaker.yaml")]
    assert mod.recipe_paths(both, models) == {m: mod.RECIPES / f"{m}-speaker.yaml" for m in models}
    with pytest.raises(SystemExit, match="not one of --models"):
        mod.recipe_paths([str(speaker)], ["audio-tzirakis2018"])
    with pytest.raises(SystemExit, match="no such file"):
        mod.recipe_paths([str(tmp_path / "none.yaml")], models)


@pytest.mark.parametrize(("model", "extra"), [("audio-li2019", []),
                                             ("audio-tzirakis2018", ["model_options.dropout=0.2"])])
def test_speaker_recipe_is_the_measured_configuration(model: str, extra: list[str]) -> None:
    """recipes/emodb/<model>-speaker.yaml = the 3-seed run of its README table (the base recipe + the
    measured command's overrides), so the table reproduces from the recipe."""
    from mmaffect.training.trainer import load_train_config

    base = SCRIPT.parents[1] / "recipes" / "emodb"
    measured = ["optim.epochs=12", "model_options.audio_reference=32", "model_options.audio_reference_prior=300",
                "model_options.audio_reference_self=0.3", "optim.scheduler=warmup-cosine", *extra]
    assert load_train_config(base / f"{model}-speaker.yaml", []) == load_train_config(
        base / f"{model}.yaml", measured)


def test_wilcoxon_paired_matches_scipy_and_counts_folds() -> None:
    from scipy.stats import wilcoxon

    mod = _bench_module()
    a = [0.8, 0.7, 0.9, 0.6, 0.75, 0.85, 0.65, 0.5]
    b = [0.7, 0.75, 0.6, 0.5, 0.7, 0.6, 0.6, 0.45]
    w = mod.wilcoxon_paired(a, b)
    ref = wilcoxon(a, b)
    assert w["statistic"] == pytest.approx(ref.statistic) and w["p"] == pytest.approx(ref.pvalue)
    assert (w["higher"], w["lower"], w["n"]) == (7, 1, 8)
    assert w["median_diff"] == pytest.approx(np.median(np.subtract(a, b)))
    same = mod.wilcoxon_paired(a, a)  # every difference zero: no test, not an error
    assert math.isnan(same["p"]) and same["higher"] == same["lower"] == 0


def test_speaker_normalisations_use_each_speakers_own_statistics() -> None:
    mod = _bench_module(SPEAKER_NORM)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(5.0, 2.0, (30, 3)), rng.normal(-1.0, 0.5, (20, 3))])
    x[30:, 2] = 4.0  # constant within speaker b
    groups = np.asarray(["a"] * 30 + ["b"] * 20)
    z = mod.zscore_per_group(x, groups)
    for g in ("a", "b"):
        rows = groups == g
        assert z[rows, :2].mean(axis=0) == pytest.approx([0, 0], abs=1e-12)
        assert z[rows, :2].std(axis=0) == pytest.approx([1, 1])
    assert z[30:, 2].tolist() == [0.0] * 20 and z[:30, 2].std() == pytest.approx(1.0)

    pred = np.stack([rng.normal(0.6, 0.05, 40), np.full(40, 0.3)], axis=1)  # a squeezed, offset speaker
    out = mod.standardise_per_speaker(pred, np.array([0.1, -0.2]), np.array([0.5, 0.4]))
    assert out[:, 0].mean() == pytest.approx(0.1) and out[:, 0].std() == pytest.approx(0.5)
    assert np.array_equal(np.argsort(out[:, 0]), np.argsort(pred[:, 0]))  # the order within the speaker is kept
    assert out[:, 1].tolist() == pytest.approx([-0.2] * 40)  # constant: nothing to rank, the target mean


@pytest.mark.shared_data
@pytest.mark.slow
def test_quick_benchmark_prints_table(emodb: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    cmd = [sys.executable, str(SCRIPT), "--quick", "--data", str(emodb), "--workdir", str(work)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = _rows(out)
    assert len(rows) == 5, out
    assert all("(ours)" in r[0] for r in rows[:3]) and all("baseline" in r[0] for r in rows[3:])
    assert "tzirakis2018" in rows[0][0] and "SVR" in rows[4][0]
    for r in rows:
        for cell in (r[1], r[3]):
            assert math.isfinite(float(cell)) and -1.0 <= float(cell) <= 1.0, r
        for cell in (r[2], r[4]):
            mean, std = (float(x) for x in cell.split("±"))
            assert math.isfinite(mean) and math.isfinite(std), r
    assert "2 folds (test speakers 08, 10)" in out
    assert "goal (issue #6)" in out and "hardware:" in out and "beats the SVR on valence" in out
    results = json.loads((work / "results.json").read_text())
    assert results["finite"] and set(results["summary"]) == {
        "audio-tzirakis2018", "audio-trigeorgis2016", "audio-li2019", "ridge", "svr"}
    assert (work / "results.md").read_text().strip() == out.strip()
    # the per-utterance scores come from the predictions `mmaffect evaluate` wrote
    run = work / "runs" / "audio-tzirakis2018" / "fold-spk08"
    assert (run / "best.pt").is_file() and (run / "eval" / "predictions-best" / "spk08").is_dir()
    assert (work / "corpus" / "adapter.json").is_file()  # the research data stay in the work folder

    assert "Per-fold CCC" in out and [r[0] for r in _tables(out)[1]] == [
        "audio-tzirakis2018", "audio-trigeorgis2016", "audio-li2019", "ridge", "svr"]

    # a second invocation reuses every finished run and prints the same figures; compared with
    # itself (--compare), every paired difference is zero
    again = subprocess.run([*cmd, "--compare", str(work)], capture_output=True, text=True, check=False, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "training ->" not in again.stderr
    assert [r[1:5] for r in _rows(again.stdout)] == [r[1:5] for r in rows]
    assert again.stdout.count("Paired comparison") == 3
    assert "pooled +0.000; per fold mean +0.000, higher on 0 and lower on 0 of 2 folds" in again.stdout
    assert json.loads((work / "results.json").read_text())["compare"]["dir"] == str(work)

    # speaker-level normalisation re-scores the same runs: its raw rows equal the benchmark's figures
    # (--single: the same per-utterance work folder, so "each utterance alone" re-scores the same inputs)
    norm = subprocess.run([sys.executable, str(SPEAKER_NORM), "--workdir", str(work), "--models", "audio-li2019",
                           "--single", str(work)], capture_output=True, text=True, check=False, timeout=300)
    assert norm.returncode == 0, norm.stderr[-3000:]
    table = {r[0]: r for r in _tables(norm.stdout)[0]}
    li, svr = next(r for r in rows if "li2019" in r[0]), next(r for r in rows if "SVR" in r[0])
    assert table["audio-li2019, raw"][1] == li[1] and table["audio-li2019, raw"][3] == li[3]
    assert table["eGeMAPS + SVR, raw"][1] == svr[1] and table["eGeMAPS + SVR, raw"][3] == svr[3]
    assert table["audio-li2019, each utterance alone"][1:5] == table["audio-li2019, raw"][1:5]
    assert (work / "runs" / "audio-li2019" / "fold-spk08" / "eval-single" / "predictions-best" / "spk08").is_dir()
    assert {"audio-li2019, outputs per speaker", "eGeMAPS + SVR, features per speaker",
            "eGeMAPS + SVR, features and outputs per speaker"} <= set(table)
    saved = json.loads((work / "speaker-norm.json").read_text())
    assert saved["folds"] == ["08", "10"] and "audio-li2019: outputs per speaker vs raw, arousal" in saved["tests"]


def test_refuses_workdir_inside_repository(emodb: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emodb),
                           "--workdir", str(SCRIPT.parents[1] / "runs" / "emodb-bench-test")],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode != 0 and "outside the repository" in proc.stderr


def test_baseline_loudness_input_matches_prepare_gain(tmp_path: Path) -> None:
    """--baseline-loudness feeds eGeMAPS the wav scaled by prepare's gain: two copies of one
    utterance 20 dB apart become the same signal; without it they stay 20 dB apart."""
    import soundfile as sf

    mod = _bench_module()
    rng = np.random.default_rng(0)
    t = np.arange(16000 * 2) / 16000
    x = (0.05 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
         + 0.005 * rng.standard_normal(t.size)).astype(np.float32)
    loud, quiet = tmp_path / "loud.wav", tmp_path / "quiet.wav"
    sf.write(loud, x, 16000, subtype="FLOAT")
    sf.write(quiet, x * 0.1, 16000, subtype="FLOAT")
    raw_l, sr = mod.egemaps_input(loud, None)
    raw_q, _ = mod.egemaps_input(quiet, None)
    assert sr == 16000 and np.allclose(raw_q, 0.1 * raw_l, atol=1e-7)
    norm_l, _ = mod.egemaps_input(loud, -23.0)
    norm_q, _ = mod.egemaps_input(quiet, -23.0)
    assert np.allclose(norm_l, norm_q, rtol=1e-4, atol=1e-6)
    from mmaffect.preprocess.loudness import integrated_loudness

    assert integrated_loudness(norm_q, sample_rate=16000) == pytest.approx(-23.0, abs=0.05)


def test_work_folder_is_tied_to_the_prepare_overrides(emodb: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "bench.json").write_text(json.dumps(
        {"mode": "quick", "source": str(emodb.resolve()), "prepare": ["text.enabled=false", "faces.enabled=false"]}))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emodb), "--workdir", str(work),
                           "--prepare", "audio.loudness=null"], capture_output=True, text=True, check=False,
                          timeout=120)
    assert proc.returncode != 0 and "made by another run" in proc.stderr, proc.stderr[-2000:]
