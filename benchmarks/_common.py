"""Helpers shared by the benchmark scripts: run the toolkit's CLI, describe the machine, format times."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], *, log: Path, env: dict[str, str] | None = None) -> tuple[str, float]:
    """Run ``python -m mmaffect.cli ARGS`` from the repository root; return its stdout and wall time.

    Stderr (progress, per-epoch lines) is appended to ``log``; a failure ends the
    benchmark with the last lines of that log.
    """
    cmd = [sys.executable, "-m", "mmaffect.cli", *args]
    t0 = time.perf_counter()
    with open(log, "a", encoding="utf-8") as err:
        err.write("$ mmaffect " + " ".join(args) + "\n")
        err.flush()
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, cwd=REPO, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8").splitlines()[-15:]
        raise SystemExit(f"`mmaffect {' '.join(args)}` failed (exit {proc.returncode}); see {log}:\n"
                         + "\n".join(tail))
    return proc.stdout, wall


def hardware() -> str:
    """CPU model, core count, GPU if any, torch and Python versions."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    dev = "CPU only" if not torch.cuda.is_available() else f"GPU {torch.cuda.get_device_name(0)}"
    return f"{cpu}, {os.cpu_count()} cores, {dev}, torch {torch.__version__}, Python {platform.python_version()}"


def fmt_time(seconds: float) -> str:
    """``95 s`` below two minutes, else ``3.4 min``."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def corpus_dir(explicit: str | Path | None, name: str, label: str) -> Path:
    """``explicit`` if given, else ``<shared data>/<name>`` (``$MMAFFECT_SHARED_DATA`` or ../shared/data)."""
    if explicit:
        return Path(explicit)
    from mmaffect.data.sources import shared_data_root

    root = shared_data_root()
    if root is None:
        raise SystemExit(f"{label} not found: pass --data or set MMAFFECT_SHARED_DATA")
    return root / name


def work_dir(explicit: str | Path | None, default: Path, *, info: dict | None = None) -> Path:
    """The benchmark's work folder, created: ``explicit`` or ``default``, refused inside the
    repository (it holds research-only data). With ``info``, the folder's ``bench.json``
    must match it (a folder made by another kind of run is refused) and is written."""
    import json

    from mmaffect.utils.io import atomic_write_text

    work = Path(explicit or default).resolve()
    if work == REPO or REPO in work.parents:
        raise SystemExit(f"{work}: the work folder holds research-only data; choose one outside the repository")
    work.mkdir(parents=True, exist_ok=True)
    if info is not None:
        marker = work / "bench.json"
        if marker.is_file() and json.loads(marker.read_text()) != info:
            raise SystemExit(f"{work} was made by another run ({marker.read_text().strip()}); "
                             "choose another --workdir")
        atomic_write_text(marker, json.dumps(info))
    return work
