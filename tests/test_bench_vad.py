"""Smoke test of benchmarks/bench_vad.py: both Silero paths on the same signal, same segments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_vad.py"


def test_bench_vad_prints_the_ratio_on_the_synthetic_signal(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out_json = tmp_path / "vad.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--seconds", "8", "--rounds", "1",
                           "--data", str(tmp_path / "none"), "--json", str(out_json)],
                          capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "synthetic" in proc.stdout and "identical for both" in proc.stdout and "speed-up" in proc.stdout
    r = json.loads(out_json.read_text())
    assert r["seconds"] == pytest.approx(8.0) and r["ratio"] > 0
