"""Benchmark `mmaffect prepare`: speed (multiple of real time), peak memory, cache size.

Two workloads, each prepared in a fresh subprocess (so peak RSS is the
prepare's own, embedder loading included):

1. the synthetic corpus at 320x240 (SEWA-like),
2. one 3-minute 640x480 30 fps video session.

Usage::

    python benchmarks/bench_prepare.py [--workdir DIR] [--workers 1] [--quick]
    python benchmarks/bench_prepare.py --reference /tmp/before/src --rounds 3

``--reference SRC`` times another mmaffect source tree side by side (e.g. a
``git worktree`` of an earlier commit, ``SRC`` = its ``src`` folder): each
round prepares each workload into a fresh cache with the reference and then
with this checkout; the table gives the medians and their ratio (on a shared
machine the ratio is the figure).

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


def _run_prepare(corpus: Path, cache: Path, workers: int, src: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", str(corpus), "--out", str(cache), "--workers", str(workers)]
    env = dict(os.environ)
    if src:  # another mmaffect source tree, imported first
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
    ap.add_argument("--reference", help="another mmaffect source tree (its src folder), timed side by side")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds with --reference")
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

    workloads = [("synthetic 320x240, 25 fps", small), ("one 640x480 30 fps session", big)]
    if args.reference:
        _side_by_side(args, work, workloads)
        return
    for name, corpus in workloads:
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


def _side_by_side(args: argparse.Namespace, work: Path, workloads: list[tuple[str, Path]]) -> None:
    """Alternate the reference tree and this checkout, each into a fresh cache; medians and their ratio."""
    import shutil
    import statistics

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"workers={args.workers}; {args.rounds} rounds; reference {args.reference}")
    print("| workload | media (s) | reference (s) | this (s) | × real time, reference | × real time, this | "
          "speed-up | peak RSS reference / this (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, corpus in workloads:
        runs: dict[str, list[dict]] = {"reference": [], "this": []}
        for r in range(args.rounds):
            for tag, src in (("reference", args.reference), ("this", None)):
                cache = work / f"{corpus.name}_cache_{tag}"
                shutil.rmtree(cache, ignore_errors=True)
                runs[tag].append(_run_prepare(corpus, cache, args.workers, src))
                print(f"  {name} round {r + 1} {tag}: {runs[tag][-1]['wall_s']:.1f} s", file=sys.stderr)
        med = {k: statistics.median(x["wall_s"] for x in v) for k, v in runs.items()}
        media = runs["this"][0]["media_s"]
        peak = {k: max(x["peak_mib"] for x in v) for k, v in runs.items()}
        print(f"| {name} | {media:.0f} | {med['reference']:.1f} | {med['this']:.1f} | {media / med['reference']:.1f} | "
              f"{media / med['this']:.1f} | {med['reference'] / med['this']:.2f} | "
              f"{peak['reference']:.0f} / {peak['this']:.0f} |")


if __name__ == "__main__":
    main()
