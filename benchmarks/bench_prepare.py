"""Benchmark `mmaffect prepare`: speed (multiple of real time), peak memory, cache size.

Two workloads, each prepared in a fresh subprocess (so peak RSS is the
prepare's own, embedder loading included):

1. the synthetic corpus at 320x240 (SEWA-like),
2. one 3-minute 640x480 30 fps video session.

Usage::

    python benchmarks/bench_prepare.py [--workdir DIR] [--workers 1] [--quick]

Prints a Markdown table; copy it into docs/benchmarks.md with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _child(argv: list[str]) -> None:
    """Run `mmaffect prepare` in this process; print its wall time and peak RSS as JSON."""
    from mmaffect.cli import main as cli_main

    t0 = time.perf_counter()
    rc = cli_main(["prepare", *argv, "--quiet"])
    wall = time.perf_counter() - t0
    peak = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
               resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)  # KiB on Linux
    print(json.dumps({"rc": rc, "wall_s": wall, "peak_mib": peak / 1024}))


def _run_prepare(corpus: Path, cache: Path, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(corpus), "--out", str(cache), "--workers", str(workers)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"prepare failed:\n{proc.stderr}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    if r["rc"] != 0:
        raise SystemExit(f"prepare failed:\n{proc.stderr}")
    manifest = json.loads((cache / "manifest.json").read_text())
    media = sum(e["n_frames"] for e in manifest["sessions"].values()) / 10.0
    return {**r, "media_s": media, "rtf": media / r["wall_s"], "cache_mib": _du(cache) / 2**20,
            "sessions": len(manifest["sessions"])}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default="bench_prepare_work")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="short sessions, for a smoke run")
    args = ap.parse_args()
    from mmaffect.data.writers.synthetic import synthesize

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    dur_small = 20.0 if args.quick else 60.0
    dur_big = 20.0 if args.quick else 180.0
    rows = []

    small = work / "synth_320x240"
    if not (small / "synth.json").exists():
        synthesize(small, n_train=4, n_devel=1, n_test=1, duration=dur_small, width=320, height=240, fps=25,
                   seed=0, progress=False)
    big = work / "synth_640x480_30fps"
    if not (big / "synth.json").exists():
        synthesize(big, n_train=1, n_devel=0, n_test=0, duration=dur_big, width=640, height=480, fps=30,
                   seed=1, progress=False)

    for name, corpus in [("synthetic 320x240, 25 fps", small), ("one 640x480 30 fps session", big)]:
        cache = work / (corpus.name + "_cache")
        if cache.exists():
            subprocess.run(["rm", "-rf", str(cache)], check=True)
        r = _run_prepare(corpus, cache, args.workers)
        r_again = _run_prepare(corpus, cache, args.workers)  # everything reused
        per3min = r["cache_mib"] / (r["media_s"] / 180.0)
        rows.append((name, r, r_again["wall_s"], per3min))

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"workers={args.workers}")
    print("| workload | sessions | media (s) | prepare (s) | × real time | peak RSS (MiB) | cache (MiB) | "
          "cache per 3 min (MiB) | second prepare, all reused (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r, again, per3 in rows:
        print(f"| {name} | {r['sessions']} | {r['media_s']:.0f} | {r['wall_s']:.1f} | {r['rtf']:.1f} | "
              f"{r['peak_mib']:.0f} | {r['cache_mib']:.1f} | {per3:.1f} | {again:.1f} |")


if __name__ == "__main__":
    main()
